package app

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, dir, name, content string) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBootstrapCommand(t *testing.T) {
	dir := t.TempDir()
	tok := write(t, dir, "token", "dp-token\n")
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"bootstrap", "--cp", "127.0.0.1:5678", "--mesh", "default", "--name", "backend-1",
		"--token-file", tok, "--proxy-type", "grpc", "--workdir", dir}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var b map[string]any
	if err := json.Unmarshal(out.Bytes(), &b); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if b["server_listener_resource_name_template"] != "grpc/server?xds.resource.listening_address=%s" ||
		!strings.Contains(out.String(), `"dataplane.token": "dp-token"`) ||
		!strings.Contains(out.String(), filepath.Join(dir, "certs", "cert.pem")) {
		t.Fatalf("bootstrap:\n%s", out.String())
	}
	out.Reset()
	if code := Main(context.Background(), []string{"bootstrap", "--mesh", "default", "--name", "web-1", "--token-file", tok, "--workdir", dir}, &out, &errb); code != 0 {
		t.Fatalf("envoy bootstrap exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), `"dynamic_resources"`) || !strings.Contains(out.String(), "Bearer dp-token") {
		t.Fatalf("envoy bootstrap:\n%s", out.String())
	}
}

func TestBadFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main(context.Background(), []string{"run", "--mesh", "default", "--proxy-type", "nginx", "--token-file", "/nonexistent"}, &out, &errb); code != 2 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(errb.String(), "--token-file") {
		t.Fatalf("stderr: %s", errb.String())
	}
	errb.Reset()
	tok := write(t, t.TempDir(), "token", "$ weftctl generate dataplane-token\neyJ.token\n")
	if code := Main(context.Background(), []string{"run", "--mesh", "default", "--name", "b", "--proxy-type", "grpc", "--token-file", tok}, &out, &errb); code != 2 ||
		!strings.Contains(errb.String(), "more than one word") {
		t.Fatalf("token file with a stray line: exit %d: %s", code, errb.String())
	}
	if code := Main(context.Background(), []string{"launch"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "unknown command") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}

func TestEnvoyNotInstalled(t *testing.T) {
	dir := t.TempDir()
	tok := write(t, dir, "token", "dp-token")
	t.Setenv("PATH", dir) // no envoy here
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"run", "--mesh", "default", "--name", "web-1", "--token-file", tok, "--workdir", dir}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "envoy is not installed") || !strings.Contains(errb.String(), "--proxy-type grpc") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "envoy.json")); err == nil {
		t.Fatal("a bootstrap was written although Envoy cannot run")
	}
}

func TestDataplaneFileMismatch(t *testing.T) {
	dir := t.TempDir()
	var errb bytes.Buffer
	code := Main(context.Background(), []string{"run", "--mesh", "default", "--name", "vm-1", "--proxy-type", "grpc", "--workdir", dir,
		"--token-file", write(t, dir, "token", "t"), "--api-token-file", write(t, dir, "admin", "a"),
		"--dataplane-file", write(t, dir, "dp.yaml", "type: Dataplane\nname: other\n")}, &bytes.Buffer{}, &errb)
	if code != 1 || !strings.Contains(errb.String(), `name "other" differs from --name "vm-1"`) {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}

// TestEnvoyRestarted runs a stand-in "envoy" (a script that records its
// arguments and dies) and checks weft-dp restarts it and wrote the bootstrap
// it points at.
func TestEnvoyRestarted(t *testing.T) {
	dir := t.TempDir()
	runs := filepath.Join(dir, "runs")
	script := "#!/bin/sh\necho \"$@\" >> " + runs + "\nexit 1\n"
	if err := os.WriteFile(filepath.Join(dir, "envoy"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	var errb bytes.Buffer
	go func() {
		code <- Main(ctx, []string{"run", "--mesh", "default", "--name", "web-1", "--workdir", dir,
			"--token-file", write(t, dir, "token", "t"), "--log-level", "error"}, &bytes.Buffer{}, &errb)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(runs)
		if strings.Count(string(b), "\n") >= 2 {
			if !strings.Contains(string(b), "-c "+filepath.Join(dir, "envoy.json")) {
				t.Fatalf("envoy args: %s", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("envoy not restarted: %q", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if c := <-code; c != 0 {
		t.Fatalf("exit %d: %s", c, errb.String())
	}
	if b, err := os.ReadFile(filepath.Join(dir, "envoy.json")); err != nil || !strings.Contains(string(b), `"id": "default.web-1"`) {
		t.Fatalf("bootstrap: %v %s", err, b)
	}
}

// A relative --cp-ca-file or --workdir must not break an application
// started from another directory: the bootstrap holds absolute paths.
func TestBootstrapPathsAreAbsolute(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "token", "dp-token")
	write(t, dir, "cp-ca.pem", "-----BEGIN CERTIFICATE-----\n")
	t.Chdir(dir)
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"bootstrap", "--cp", "127.0.0.1:5678", "--cp-ca-file", "cp-ca.pem", "--mesh", "default",
		"--name", "backend-1", "--token-file", "token", "--proxy-type", "grpc", "--workdir", "wd"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var b struct {
		Servers []struct {
			Creds []struct {
				Config map[string]string `json:"config"`
			} `json:"channel_creds"`
		} `json:"xds_servers"`
		Providers map[string]struct {
			Config map[string]string `json:"config"`
		} `json:"certificate_providers"`
	}
	if err := json.Unmarshal(out.Bytes(), &b); err != nil {
		t.Fatal(err)
	}
	paths := []string{b.Servers[0].Creds[0].Config["ca_certificate_file"]}
	for _, k := range []string{"certificate_file", "private_key_file", "ca_certificate_file"} {
		paths = append(paths, b.Providers["default"].Config[k])
	}
	for _, p := range paths {
		if !filepath.IsAbs(p) || !strings.HasPrefix(p, dir) {
			t.Errorf("path %q in the bootstrap is not absolute under %s", p, dir)
		}
	}
	// A missing CA file is a flag error, not a silent bad bootstrap.
	errb.Reset()
	if code := Main(context.Background(), []string{"bootstrap", "--cp-ca-file", "nope.pem", "--mesh", "default", "--name", "b",
		"--token-file", "token", "--proxy-type", "grpc"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--cp-ca-file") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}
