package app

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/weft-dp/agent"
)

// TestIngressBootstrapCommand: `weft-dp bootstrap --proxy-type ingress
// --zone Z --name N` prints the Envoy ingress bootstrap; a mesh, a missing
// zone or a --dataplane-file are bad flags (exit 2).
func TestIngressBootstrapCommand(t *testing.T) {
	dir := t.TempDir()
	tok := write(t, dir, "token", "ing-token\n")
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"bootstrap", "--cp", "127.0.0.1:5678", "--proxy-type", "ingress", "--zone", "zone-2", "--name", "ingress",
		"--token-file", tok, "--workdir", dir, "--envoy-admin-port", "9902"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{`"id": "_ingress.zone-2.ingress"`, `"kind": "ingress"`, `"value": "Bearer ing-token"`, `"port_value": 9902`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("bootstrap lacks %s:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "access-log") {
		t.Errorf("ingress bootstrap has the access-log sink:\n%s", out.String())
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--proxy-type", "ingress", "--name", "ingress", "--token-file", tok}, "--zone"},
		{[]string{"--proxy-type", "ingress", "--zone", "z", "--mesh", "default", "--name", "ingress", "--token-file", tok}, "--mesh"},
		{[]string{"--proxy-type", "ingress", "--zone", "z", "--name", "ingress"}, "ingress token"},
		{[]string{"--proxy-type", "ingress", "--zone", "z", "--name", "ingress", "--token-file", tok, "--dataplane-file", "dp.yaml"}, "--dataplane-file"},
	} {
		errb.Reset()
		if code := Main(context.Background(), append([]string{"bootstrap"}, tc.args...), &out, &errb); code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %s", tc.args, code, errb.String(), tc.want)
		}
	}
}

// TestIngressRunNeedsEnvoy: `run --proxy-type ingress` runs Envoy, and says
// so when there is none.
func TestIngressRunNeedsEnvoy(t *testing.T) {
	dir := t.TempDir()
	cfg := Default()
	cfg.ProxyType, cfg.Zone, cfg.Name, cfg.TokenFile, cfg.Workdir = agent.ProxyIngress, "zone-2", "ingress", write(t, dir, "token", "t"), dir
	cfg.EnvoyBinary = "weft-no-such-envoy"
	log := slog.New(slog.DiscardHandler)
	ac, err := cfg.agentConfig(log)
	if err != nil {
		t.Fatal(err)
	}
	if err := Run(context.Background(), &cfg, ac, log); !errors.Is(err, ErrEnvoyNotFound) {
		t.Fatalf("Run = %v, want ErrEnvoyNotFound", err)
	}
}

// TestIngressRunsEnvoy: `run --proxy-type ingress` writes the ingress
// bootstrap to D/envoy.json (mode 0600: it holds the token), runs Envoy on
// it (a stand-in script here: no Envoy is installed) and starts no
// access-log service; SIGTERM (ctx) stops it cleanly.
func TestIngressRunsEnvoy(t *testing.T) {
	dir := t.TempDir()
	runs := filepath.Join(dir, "runs")
	script := "#!/bin/sh\necho \"$@\" >> " + runs + "\nexec sleep 60\n"
	if err := os.WriteFile(filepath.Join(dir, "envoy"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	code := make(chan int, 1)
	var errb bytes.Buffer
	go func() {
		code <- Main(ctx, []string{"run", "--proxy-type", "ingress", "--zone", "zone-1", "--name", "ingress", "--workdir", dir,
			"--token-file", write(t, dir, "token", "ing-token"), "--log-level", "error"}, &bytes.Buffer{}, &errb)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(runs)
		if strings.Contains(string(b), "\n") {
			if !strings.Contains(string(b), "-c "+filepath.Join(dir, "envoy.json")) {
				t.Fatalf("envoy args: %s", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("envoy not started: %q %s", b, errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	path := filepath.Join(dir, "envoy.json")
	b, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(b), `"id": "_ingress.zone-1.ingress"`) || !strings.Contains(string(b), "Bearer ing-token") {
		t.Fatalf("bootstrap: %v %s", err, b)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("envoy.json mode: %v %v", fi.Mode(), err)
	}
	if _, err := os.Stat(filepath.Join(dir, "access-log.sock")); !os.IsNotExist(err) {
		t.Errorf("an ingress started the access-log service: %v", err)
	}
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("exit %d: %s", c, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not stop")
	}
}
