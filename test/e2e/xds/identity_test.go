package xds

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/token"
	"github.com/weftmesh/weft/weft-dp/agent"
)

// runAgent runs weft-dp's certificate loop for name with tok; the returned
// channel gets its result when it stops.
func (e *env) runAgent(t *testing.T, ctx context.Context, cp, name, tok string) (*agent.Config, <-chan error) {
	cfg := &agent.Config{CP: cp, Mesh: "default", Name: name, Token: tok,
		ProxyType: agent.ProxyGRPC, Workdir: t.TempDir(), CertRefresh: 500 * time.Millisecond, CPCAFile: e.cpRoot,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))}
	done := make(chan error, 1)
	go func() { done <- agent.RunCertificates(ctx, cfg, nil) }()
	return cfg, done
}

// certURIs reads the URI SANs of the agent's current certificate.
func certURIs(cfg *agent.Config) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(cfg.CertDir(), "cert.pem"))
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("cert.pem: not PEM")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, u := range c.URIs {
		out = append(out, u.String())
	}
	slices.Sort(out)
	return out, nil
}

func waitURIs(t *testing.T, cfg *agent.Config, want ...string) {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
		got, err := certURIs(cfg)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("certificate URI SANs %q, want %q", got, want)
		}
		return nil
	})
}

const gatewayYAML = `
type: Dataplane
mesh: default
name: web-1
networking:
  address: 127.0.0.1
  gateway:
    tags:
      weft.io/service: backend
`

// Issue 10's two holes, end to end through xds-server and the real
// ca-service: web-1's Dataplane rewritten to claim backend and admin-api
// (inbounds), or re-registered as a gateway of backend, does not get a
// certificate for those services with web-1's token (bound to web: by the
// API's default, or by the legacy weft.io/service tag). The API refuses
// such writes by that token (api-server/app TestDataplaneTokenIsBoundToItsServices);
// here the Dataplane is written directly, as a compromised or careless
// writer could, and xds-server and ca-service still hold the line.
func TestWorkloadCanOnlyBeItself(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := e.startReplica(t, "replica-a")
	e.apply(meshYAML + "---" + dataplaneYAML("web-1", "web", freePort(t)))

	for _, tc := range []struct {
		name string
		tok  string
	}{
		{"bound by default", e.dataplaneToken("default", "web-1", time.Hour)},
		{"tag-bound", e.issueToken("web-1", token.Claims{Mesh: "default", Tags: map[string]string{"weft.io/service": "web"}}, time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.apply(dataplaneYAML("web-1", "web", freePort(t)))
			actx, acancel := context.WithCancel(ctx)
			defer acancel()
			cfg, _ := e.runAgent(t, actx, r.addr, "web-1", tc.tok)
			waitURIs(t, cfg, "spiffe://default/web")

			refusals := strings.Count(r.Output(), "not requesting a certificate")
			waitRefusal := func(svc string) {
				t.Helper()
				eventually(t, 30*time.Second, func() error {
					out := r.Output()
					if strings.Count(out, "not requesting a certificate") > refusals && strings.Contains(out, `\"`+svc+`\"`) {
						refusals = strings.Count(out, "not requesting a certificate")
						return nil
					}
					return fmt.Errorf("xds-server has not refused the certificate for %s yet", svc)
				})
			}
			// Hole 1: the inbound rewritten to backend and admin-api.
			e.apply(strings.Replace(dataplaneYAML("web-1", "backend", freePort(t)), "  inbound:\n", "  inbound:\n  - port: 9999\n    tags:\n      weft.io/service: admin-api\n", 1))
			waitRefusal("admin-api")
			if got, _ := certURIs(cfg); !slices.Equal(got, []string{"spiffe://default/web"}) {
				t.Fatalf("after claiming backend/admin-api the certificate names %q", got)
			}
			// Hole 2: re-registered as a gateway of backend.
			e.apply(dataplaneYAML("web-1", "web", freePort(t)))
			waitURIs(t, cfg, "spiffe://default/web")
			e.apply(gatewayYAML)
			waitRefusal("backend")
			if got, _ := certURIs(cfg); !slices.Equal(got, []string{"spiffe://default/web"}) {
				t.Fatalf("as a gateway of backend the certificate names %q", got)
			}
		})
	}

	// An explicitly unbound token may be anything (documented escape hatch).
	e.apply(gatewayYAML)
	actx, acancel := context.WithCancel(ctx)
	defer acancel()
	cfg, _ := e.runAgent(t, actx, r.addr, "web-1", e.issueToken("web-1", token.Claims{Mesh: "default", Unbound: true}, time.Hour))
	waitURIs(t, cfg, "spiffe://default/backend")
}

var cutRe = regexp.MustCompile(`closing xDS stream.*reason="?([^"]*)`)

// A stream whose token expires, or is revoked, is closed within seconds
// with Unauthenticated; weft-dp then stops with the reason (the token is
// refused on reconnect).
func TestStreamsCutOnExpiryAndRevocation(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := e.startReplica(t, "replica-a")
	e.apply(meshYAML + "---" + dataplaneYAML("web-1", "web", freePort(t)) + "---" + dataplaneYAML("web-2", "web", freePort(t)))

	// Expiry: a 6 s token (the leeway for clock skew adds 30 s on the
	// verifying side, but the stream is cut at the token's own expiry).
	short := e.dataplaneToken("default", "web-1", 6*time.Second)
	cfg, done := e.runAgent(t, ctx, r.addr, "web-1", short)
	waitURIs(t, cfg, "spiffe://default/web")
	start := time.Now()
	m := r.WaitLine(t, regexp.MustCompile(`closing xDS stream.*node=default\.web-1.*token expired`), 60*time.Second)
	t.Logf("expired stream cut %s after the certificate arrived: %s", time.Since(start).Round(time.Millisecond), m[0])

	// Revocation.
	tok := e.dataplaneToken("default", "web-2", time.Hour)
	cfg2, done2 := e.runAgent(t, ctx, r.addr, "web-2", tok)
	waitURIs(t, cfg2, "spiffe://default/web")
	c, err := e.keys.Verify(e.ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.keys.Revoke(e.ctx, c.ID, c.ExpiresAt.Time); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	r.WaitLine(t, regexp.MustCompile(`closing xDS stream.*node=default\.web-2.*revoked`), 30*time.Second)
	t.Logf("revoked stream cut after %s", time.Since(revoked).Round(time.Millisecond))
	select {
	case err := <-done2:
		if err == nil || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("weft-dp with a revoked token: %v, want it to stop saying revoked", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("weft-dp kept running with a revoked token")
	}
	_ = done
}
