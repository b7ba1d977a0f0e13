package ingress

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	ingressapp "github.com/weftmesh/weft/ingress-manager/app"
	"github.com/weftmesh/weft/ingress-manager/proxy"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/sni"
	"github.com/weftmesh/weft/pkg/token"
	"github.com/weftmesh/weft/zone-sync/apptest"
)

// syncBuffer is a log sink tests read while the app writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// backend accepts connections and reports each one (the ingress pipes
// the caller's ClientHello to it: proof of the route).
func backend(t *testing.T) (port int, accepted <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan struct{}, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case ch <- struct{}{}:
			default:
			}
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, ch
}

// hello sends a ClientHello for name through the ingress; the handshake
// itself fails (the backend is no TLS server, or the ingress closes).
func hello(addr, name string) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, InsecureSkipVerify: true})
	if err == nil {
		c.Close()
	}
}

func rejected(t *testing.T, a *ingressapp.App, reason string) float64 {
	t.Helper()
	mfs, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "weft_ingress_rejected_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestIngressOverADS: the built-in ingress's routes are the xds-server's
// ingress configuration, fed over ADS (a real xds-server on etcd): a local
// service and the subset a TrafficRoute names are routed, a subset no
// route names, an unknown service, plaintext and a foreign mesh are closed
// and counted with the ingress staying up; an ingress presenting a
// dataplane token gets nothing.
func TestIngressOverADS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c := apptest.Start(t, apptest.Options{Zones: 1, Log: log})
	startServices(t, ctx, log, "global", c.Global, "global")
	z := startServices(t, ctx, log, "zone-1", c.Zones[0], "zone")
	apply(t, c.Global, `
type: Mesh
name: default
---
type: TrafficRoute
mesh: default
name: backend-v1
sources:
- match:
    weft.io/service: '*'
destinations:
- match:
    weft.io/service: backend
conf:
  destination:
    weft.io/service: backend
    version: v1
`)
	apptest.Eventually(t, time.Minute, func() error {
		_, err := z.CP.Store.Get(ctx, resource.TrafficRouteType, "default", "backend-v1")
		return err
	})
	port, accepted := backend(t)
	apply(t, z.CP, fmt.Sprintf(`
type: Dataplane
mesh: default
name: backend-1
networking:
  address: 127.0.0.1
  inbound:
  - port: %d
    tags:
      weft.io/service: backend
      version: v1
      env: prod
`, port))
	select {
	case <-z.Ingress.RoutesSynced():
	case <-ctx.Done():
		t.Fatal("the ingress got no configuration from the xds-server")
	}
	addr := z.Ingress.Addr()
	routedTo := func(name string) {
		t.Helper()
		apptest.Eventually(t, time.Minute, func() error {
			for len(accepted) > 0 { // earlier connections' signals
				<-accepted
			}
			hello(addr, name)
			select {
			case <-accepted:
				return nil
			case <-time.After(2 * time.Second):
				return fmt.Errorf("%s not routed to the backend", name)
			}
		})
	}
	routedTo(sni.Service("default", "backend"))
	v1, err := sni.Format("default", "backend", map[string]string{"version": "v1"})
	if err != nil {
		t.Fatal(err)
	}
	routedTo(v1)

	// A full tag set no TrafficRoute names has no filter chain, as in Envoy.
	full, _ := sni.Format("default", "backend", map[string]string{"version": "v1", "env": "prod"})
	for _, tc := range []struct{ name, reason string }{
		{full, proxy.ReasonUnknownService},
		{sni.Service("default", "nothing"), proxy.ReasonUnknownService},
		{sni.Service("other", "backend"), proxy.ReasonForeignMesh},
	} {
		before := rejected(t, z.Ingress, tc.reason)
		hello(addr, tc.name)
		apptest.Eventually(t, 30*time.Second, func() error {
			if rejected(t, z.Ingress, tc.reason) <= before {
				return fmt.Errorf("%s: not counted as %s", tc.name, tc.reason)
			}
			return nil
		})
	}
	before := rejected(t, z.Ingress, proxy.ReasonNotTLS)
	if pc, err := net.Dial("tcp", addr); err == nil {
		_, _ = pc.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _ = pc.Read(make([]byte, 1)) // closed by the ingress
		pc.Close()
	}
	apptest.Eventually(t, 30*time.Second, func() error {
		if rejected(t, z.Ingress, proxy.ReasonNotTLS) <= before {
			return fmt.Errorf("plaintext not counted")
		}
		return nil
	})
	routedTo(sni.Service("default", "backend")) // still up

	// An ingress presenting a dataplane token (of a Dataplane named like
	// the ingress) is refused by the xds-server and routes nothing.
	logs := &syncBuffer{}
	cfg := ingressapp.Default()
	cfg.Zone, cfg.Name, cfg.Address, cfg.AdminAddress = "zone-1", "forged", "127.0.0.1:0", ""
	cfg.Etcd.Client, cfg.XDSServer = z.CP.Client, z.XDS
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	dc := token.Claims{Kind: token.KindDataplane, Mesh: "default", Services: []string{"backend"}}
	dc.Subject = "forged"
	if cfg.Token, _, err = token.New(z.CP.Store).Issue(ctx, dc, time.Hour); err != nil {
		t.Fatal(err)
	}
	forged, err := ingressapp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fctx, fstop := context.WithCancel(ctx)
	fdone := make(chan error, 1)
	go func() { fdone <- forged.Run(fctx) }()
	defer func() { fstop(); <-fdone }()
	apptest.Eventually(t, time.Minute, func() error {
		if !strings.Contains(logs.String(), "a dataplane token is not an ingress token") {
			return fmt.Errorf("no refusal logged yet")
		}
		return nil
	})
	select {
	case <-forged.RoutesSynced():
		t.Fatal("an ingress with a dataplane token got routes")
	default:
	}
}
