package app

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

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
