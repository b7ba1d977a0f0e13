// Package readmecheck runs every command block of the repository's
// README.md marked runnable, as a user would, against a real `weftctl up`.
package readmecheck

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Marker is the info string of a runnable block: a fence opened with
// "```sh runnable" (GitHub still highlights it as sh).
const Marker = "sh runnable"

// Block is one runnable block and the README line it starts on.
type Block struct {
	Line int
	Text string
}

// RunnableBlocks returns the blocks of a Markdown document fenced with
// "```sh runnable", in order.
func RunnableBlocks(md string) []Block {
	var out []Block
	var cur *Block
	var body strings.Builder
	sc := bufio.NewScanner(strings.NewReader(md))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && strings.HasPrefix(trimmed, "```") && strings.TrimSpace(strings.TrimPrefix(trimmed, "```")) == Marker:
			cur = &Block{Line: n}
			body.Reset()
		case cur != nil && trimmed == "```":
			cur.Text = body.String()
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			body.WriteString(line)
			body.WriteByte('\n')
		}
	}
	return out
}

func TestRunnableBlocksParse(t *testing.T) {
	md := "intro\n```sh\nnot me\n```\n```sh runnable\necho a\necho b\n```\n```sh runnable\necho c\n```\n"
	got := RunnableBlocks(md)
	if len(got) != 2 || got[0].Line != 5 || got[0].Text != "echo a\necho b\n" || got[1].Text != "echo c\n" {
		t.Fatalf("blocks = %+v", got)
	}
}

// TestREADMERunnableBlocks: with `weftctl` on PATH and `weftctl up` running
// (on free ports, its data in ~/.weft/up of an empty HOME), every runnable
// block of README.md runs, in order, each in its own bash with -euo
// pipefail (a block is self-contained, as a reader copies it), from the
// repository root. A block that fails fails the test with its output.
func TestREADMERunnableBlocks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds weftctl and runs a control plane")
	}
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("README.md's runnable blocks need %s: apt-get install %s (CI: .ci/install-test-deps)", tool, tool)
		}
	}
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := RunnableBlocks(string(md))
	if len(blocks) == 0 {
		t.Fatal("README.md has no block marked runnable (```" + Marker + ")")
	}
	tmp := t.TempDir()
	bin, home := filepath.Join(tmp, "bin"), filepath.Join(tmp, "home")
	for _, d := range []string{bin, home} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "weftctl"), "github.com/weftmesh/weft/weftctl/cmd/weftctl")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build weftctl: %v\n%s", err, out)
	}
	env := append(os.Environ(), "HOME="+home, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	env = slicesDeleteEnv(env, "WEFT_CP", "WEFT_TOKEN", "WEFT_CA_CERT_FILE", "WEFTCTL_CONFIG")

	up := exec.Command(filepath.Join(bin, "weftctl"), "up", "--ephemeral-ports")
	up.Env, up.Dir = env, tmp
	up.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logFile, err := os.Create(filepath.Join(tmp, "up.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	up.Stdout, up.Stderr = logFile, logFile
	upOut := func() string { b, _ := os.ReadFile(logFile.Name()); return string(b) }
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- up.Wait() }()
	t.Cleanup(func() {
		_ = up.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(time.Minute):
			_ = syscall.Kill(-up.Process.Pid, syscall.SIGKILL)
			<-exited
			t.Errorf("weftctl up did not stop within a minute of SIGINT:\n%s", upOut())
		}
	})
	deadline := time.Now().Add(5 * time.Minute)
	for !strings.Contains(upOut(), "weftctl config: control planes local-* added") {
		select {
		case err := <-exited:
			t.Fatalf("weftctl up exited: %v\n%s", err, upOut())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("weftctl up not ready within 5 minutes:\n%s", upOut())
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for _, b := range blocks {
		sh := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", b.Text)
		sh.Env, sh.Dir = env, root
		out, err := sh.CombinedOutput()
		if err != nil {
			t.Fatalf("README.md:%d: the runnable block failed: %v\n--- block ---\n%s--- output ---\n%s", b.Line, err, b.Text, out)
		}
		t.Logf("README.md:%d: ok\n%s", b.Line, out)
	}
}

// slicesDeleteEnv drops the named variables from env: the README is run
// as a fresh user would, with only what `weftctl up` set up.
func slicesDeleteEnv(env []string, names ...string) []string {
	out := env[:0:0]
	for _, kv := range env {
		keep := true
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}
