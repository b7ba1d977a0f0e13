package app

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/weftmesh/weft/ingress-manager/internal/xdstest"
	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/sni"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/xdsnames"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConfigValidate(t *testing.T) {
	c := Default()
	c.Zone, c.Name, c.Dataplane, c.Address, c.MaxConnections = "Zone_1", "", "nginx", "nope", 0
	err := c.Validate()
	for _, want := range []string{"--zone", "--name", "--dataplane", "--address", "--max-connections"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want mention of %s", err, want)
		}
	}
	c = Default()
	c.Zone = "zone-1"
	err = c.Validate()
	for _, want := range []string{"--xds-server", "--token-file"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("builtin without an xds-server: Validate() = %v, want mention of %s", err, want)
		}
	}
	c.XDSServer, c.TokenFile = "127.0.0.1:5678", "ingress.token"
	if err := c.Validate(); err != nil {
		t.Errorf("defaults with a zone, xds-server and token: %v", err)
	}
	c = Default()
	c.Zone, c.Dataplane = "zone-1", DataplaneEnvoy
	if err := c.Validate(); err != nil {
		t.Errorf("envoy data path needs no xds-server here: %v", err)
	}
}

// TestTwoInstancesBehindOneAddress: two instances of a zone's ingress share
// one ZoneIngress (same name and advertised address); both route, and one
// stopping leaves the other routing and the ZoneIngress in place.
func TestTwoInstancesBehindOneAddress(t *testing.T) {
	cli := etcdtest.Client(t, etcdtest.Start(t))
	st := store.New(cli)
	ctx := context.Background()
	if _, err := st.Create(ctx, resource.New(resource.MeshType, "", "default")); err != nil {
		t.Fatal(err)
	}
	dp := resource.New(resource.DataplaneType, "default", "greeter-1")
	dp.Spec = &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: "127.0.0.1",
		Inbound: []*meshv1.Dataplane_Networking_Inbound{{Port: 1, Tags: map[string]string{resource.ServiceTag: "greeter"}}}}}
	if _, err := st.Create(ctx, dp); err != nil {
		t.Fatal(err)
	}
	// The routes come over ADS (xds-server's ingress configuration; the
	// real xds-server is in test/e2e/ingress).
	xds := xdstest.Start(t)
	xds.Set(t, xdsnames.IngressNodeID("zone-1", "ingress"), xdstest.Snapshot("1", xdstest.Route{Name: sni.Service("default", "greeter"), Endpoints: []string{"127.0.0.1:1"}}))
	start := func() (*App, context.CancelFunc, chan error) {
		cfg := Default()
		cfg.Zone, cfg.Address, cfg.AdminAddress = "zone-1", "127.0.0.1:0", "127.0.0.1:0"
		cfg.XDSServer, cfg.Token = xds.Addr, "ingress-token"
		cfg.AdvertisedAddress, cfg.AdvertisedPort = "ingress.zone-1.example", 443
		cfg.Etcd.Client = cli
		a, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		return a, cancel, done
	}
	a, stopA, doneA := start()
	b, stopB, doneB := start()
	defer func() { stopB(); <-doneB }()
	for _, x := range []*App{a, b} {
		select {
		case <-x.Synced():
		case <-time.After(time.Minute):
			t.Fatal("ZoneIngress not written within a minute")
		}
		waitFor(t, "ready", func() bool {
			resp, err := http.Get("http://" + x.AdminAddr() + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		})
	}
	zi, err := st.Get(ctx, resource.ZoneIngressType, "", "ingress")
	if err != nil {
		t.Fatal(err)
	}
	spec := zi.Spec.(*meshv1.ZoneIngress)
	if spec.GetZone() != "zone-1" || spec.GetNetworking().GetAdvertisedAddress() != "ingress.zone-1.example" ||
		spec.GetNetworking().GetAdvertisedPort() != 443 || len(spec.GetAvailableServices()) != 1 {
		t.Fatalf("ZoneIngress %v", spec)
	}
	// Both instances know the greeter (its endpoint refuses: dial_failed,
	// not unknown_service, proves the table).
	routes := func(x *App) bool {
		c, err := tls.Dial("tcp", x.Addr(), &tls.Config{ServerName: sni.Service("default", "greeter"), InsecureSkipVerify: true})
		if err == nil {
			c.Close()
		}
		return counter(t, x, "weft_ingress_rejected_total", "dial_failed") > 0
	}
	waitFor(t, "instance a routes", func() bool { return routes(a) })
	waitFor(t, "instance b routes", func() bool { return routes(b) })
	stopA()
	if err := <-doneA; err != nil {
		t.Fatalf("instance a: %v", err)
	}
	before := counter(t, b, "weft_ingress_rejected_total", "dial_failed")
	waitFor(t, "instance b still routes", func() bool {
		return routes(b) && counter(t, b, "weft_ingress_rejected_total", "dial_failed") > before
	})
	if _, err := st.Get(ctx, resource.ZoneIngressType, "", "ingress"); err != nil {
		t.Fatalf("ZoneIngress after one instance stopped: %v", err)
	}
}

func counter(t *testing.T, a *App, name, reason string) float64 {
	t.Helper()
	mfs, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
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

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
