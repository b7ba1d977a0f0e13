// Package greeter tests the README's walkthrough exactly as a user runs it:
// `weftctl up` in one terminal, examples/greeter/run.sh in another (the
// script builds weftctl, weft-dp and the example, registers the mesh and the
// Dataplanes, starts weft-dp and the apps, and calls the greeter: denied,
// then allowed with mTLS).
package greeter

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/test/e2e/internal/proc"
)

// upPorts are the default ports of a standalone `weftctl up` (docs: README,
// docs/weftctl.md); --port-offset shifts them all.
var upPorts = []int{5678, 5679, 5680, 5681, 5682, 5653, 5654, 5688, 5689}

// freeOffset finds a --port-offset whose ports are all free on loopback
// (TCP, and UDP for DNS), the way a user picks one when the defaults are
// taken.
func freeOffset(t *testing.T) int {
	t.Helper()
	return freeOffsetOf(t, upPorts)
}

// freePort is a loopback port no listener on port 0 or outgoing connection
// can take before the example binds it (see proc.FreePort).
func freePort(t *testing.T) int { return proc.FreePort(t) }

// lines collects a process's output.
type lines struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// goEnv keeps the Go caches when HOME is a temporary directory.
func goEnv(t *testing.T) []string {
	t.Helper()
	var env []string
	for _, k := range []string{"GOCACHE", "GOMODCACHE", "GOPATH"} {
		out, err := exec.Command("go", "env", k).Output()
		if err != nil {
			t.Fatalf("go env %s: %v", k, err)
		}
		env = append(env, k+"="+strings.TrimSpace(string(out)))
	}
	return env
}

func TestREADMEWalkthrough(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("the walkthrough uses curl: install it (apt-get install curl)")
	}
	repo, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin")
	// The user's HOME: weftctl up writes the weftctl config there.
	env := append(os.Environ(), "HOME="+filepath.Join(tmp, "home"))
	env = append(env, goEnv(t)...)

	build := exec.Command("go", "build", "-o", bin+"/", "./weftctl/cmd/weftctl")
	build.Dir, build.Env = repo, env
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build weftctl: %v\n%s", err, out)
	}

	// Terminal 1: weftctl up (ports shifted to free ones).
	offset := freeOffset(t)
	upOut := &lines{}
	ctx, cancel := context.WithCancel(context.Background())
	up := exec.CommandContext(ctx, filepath.Join(bin, "weftctl"), "up", "--data-dir", filepath.Join(tmp, "up"), "--port-offset", fmt.Sprint(offset))
	up.Dir, up.Env, up.Stdout, up.Stderr = repo, env, upOut, upOut
	up.Cancel = func() error { return up.Process.Signal(os.Interrupt) }
	up.WaitDelay = 30 * time.Second
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := up.Wait(); err != nil && ctx.Err() == nil {
			t.Errorf("weftctl up: %v", err)
		}
		if t.Failed() {
			t.Logf("weftctl up output:\n%s", upOut.String())
		}
	})
	deadline := time.Now().Add(3 * time.Minute)
	for !strings.Contains(upOut.String(), "Weft is up.") {
		if time.Now().After(deadline) {
			t.Fatalf("weftctl up not ready within 3 minutes:\n%s", upOut.String())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Terminal 2: the example, as the README gives it.
	run := exec.Command("examples/greeter/run.sh")
	run.Dir = repo
	run.Env = append(env, "PORT_OFFSET="+fmt.Sprint(offset), "BIN="+bin, "WORKDIR="+filepath.Join(tmp, "work"),
		"GREETER_PORT="+fmt.Sprint(freePort(t)), "CLIENT_PORT="+fmt.Sprint(freePort(t)))
	outb, err := run.CombinedOutput()
	out := string(outb)
	if err != nil {
		t.Fatalf("run.sh: %v\n%s", err, out)
	}
	// The calls are denied until the permission exists, then allowed with
	// mTLS: the greeter saw the client's SPIFFE ID from its certificate.
	want := []string{
		"spiffeID=spiffe://example/greeter",
		"spiffeID=spiffe://example/client",
		"got PermissionDenied: ",
		"created TrafficPermission example/client-to-greeter",
		"got OK from greeter-1 in standalone: hello client, from greeter-1 in standalone; you are spiffe://example/client",
		"calls to xds:///greeter.mesh: served by standalone: 3; failed: 0",
	}
	rest := out
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Fatalf("run.sh output lacks %q (in this order):\n%s", w, out)
		}
		rest = rest[i+len(w):]
	}
	// Every command the script ran is printed for the user to copy.
	sc := bufio.NewScanner(strings.NewReader(out))
	n := 0
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "$ ") {
			n++
		}
	}
	if n < 10 {
		t.Errorf("run.sh printed %d commands, want every step:\n%s", n, out)
	}
}
