package app_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/pkg/cptls"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/token"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	syncv1 "github.com/weftmesh/weft/proto/gen/go/weft/sync/v1"

	"github.com/weftmesh/weft/zone-sync/app"
	"github.com/weftmesh/weft/zone-sync/apptest"
	"github.com/weftmesh/weft/zone-sync/internal/protocol"
)

// outage is how long global stays down in TestGlobalAndTwoZones. CI keeps
// it short; ZONESYNC_OUTAGE=30s runs the issue's scenario unchanged.
func outage(t *testing.T) time.Duration {
	if v := os.Getenv("ZONESYNC_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("ZONESYNC_OUTAGE: %v", err)
		}
		return d
	}
	return 2 * time.Second
}

const wait = 20 * time.Second

func permission(name, src string) *resource.Resource {
	r := resource.New(resource.TrafficPermissionType, "default", name)
	r.Spec = &meshv1.TrafficPermission{
		Sources:      []*meshv1.Selector{{Match: map[string]string{resource.ServiceTag: src}}},
		Destinations: []*meshv1.Selector{{Match: map[string]string{resource.ServiceTag: "*"}}},
	}
	return r
}

func source(r *resource.Resource) string {
	return r.Spec.(*meshv1.TrafficPermission).GetSources()[0].GetMatch()[resource.ServiceTag]
}

// has waits until st holds mesh/name of t with origin and check passing.
func has(t *testing.T, st *store.Store, typ *resource.Type, mesh, name, origin string, check func(*resource.Resource) error) {
	t.Helper()
	apptest.Eventually(t, wait, func() error {
		r, err := st.Get(context.Background(), typ, mesh, name)
		if err != nil {
			return err
		}
		if r.Meta.GetOrigin() != origin {
			return fmt.Errorf("%s origin %q, want %q", r.Key(), r.Meta.GetOrigin(), origin)
		}
		if check != nil {
			return check(r)
		}
		return nil
	})
}

func gone(t *testing.T, st *store.Store, typ *resource.Type, mesh, name string) {
	t.Helper()
	apptest.Eventually(t, wait, func() error {
		_, err := st.Get(context.Background(), typ, mesh, name)
		if store.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("%s/%s/%s still there (err %v)", typ.Name, mesh, name, err)
	})
}

func TestGlobalAndTwoZones(t *testing.T) {
	ctx := context.Background()
	c := apptest.Start(t, apptest.Options{Zones: 2, LeaseTTL: time.Second})
	g, z1, z2 := c.Global, c.Zones[0], c.Zones[1]

	// global → zones: a policy, a mesh secret (sealed at rest again with
	// each zone's own key), and never a control-plane-local GlobalSecret.
	if _, err := g.Store.Create(ctx, permission("allow-web", "web")); err != nil {
		t.Fatal(err)
	}
	sec := resource.New(resource.SecretType, "default", "mesh-ca")
	sec.Spec = &meshv1.Secret{Data: []byte("-----BEGIN CA-----")}
	if _, err := g.Store.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	for _, z := range c.Zones {
		has(t, z.Store, resource.MeshType, "", "default", "global", nil)
		has(t, z.Store, resource.TrafficPermissionType, "default", "allow-web", "global", nil)
		has(t, z.Store, resource.SecretType, "default", "mesh-ca", "global", func(r *resource.Resource) error {
			if string(r.Spec.(*meshv1.Secret).GetData()) != "-----BEGIN CA-----" {
				return errors.New("secret data differs")
			}
			return nil
		})
		for _, name := range []string{token.SigningKeySecret, cptls.SecretName} {
			if _, err := z.Store.Get(ctx, resource.GlobalSecretType, "", name); !store.IsNotFound(err) {
				t.Errorf("%s holds global's %s (err %v): cp-* secrets must never sync", z.Name, name, err)
			}
		}
	}

	// zone-1 → global: a Dataplane and the zone's ingress; zone-2 sees the
	// ingress, and global lists the mesh's dataplanes across zones.
	if _, err := z1.Store.Create(ctx, apptest.Dataplane("web-1", "web", 8080), store.WithoutMeshCheck()); err != nil {
		t.Fatal(err)
	}
	zi := resource.New(resource.ZoneIngressType, "", "ingress")
	zi.Spec = &meshv1.ZoneIngress{Zone: "zone-1", Networking: &meshv1.ZoneIngress_Networking{Address: "10.1.0.1", Port: 10001,
		AdvertisedAddress: "203.0.113.1", AdvertisedPort: 10001}}
	if _, err := z1.Store.Create(ctx, zi); err != nil {
		t.Fatal(err)
	}
	has(t, g.Store, resource.DataplaneType, "default", "zone-1.web-1", "zone-1", nil)
	has(t, g.Store, resource.ZoneIngressType, "", "zone-1.ingress", "zone-1", nil)
	has(t, z2.Store, resource.ZoneIngressType, "", "zone-1.ingress", "zone-1", nil)
	dps, _, err := g.Store.ListAll(ctx, resource.DataplaneType, "default")
	if err != nil || len(dps) != 1 {
		t.Fatalf("global lists %d dataplanes in default (err %v), want 1", len(dps), err)
	}
	if _, err := z2.Store.Get(ctx, resource.DataplaneType, "default", "zone-1.web-1"); !store.IsNotFound(err) {
		t.Errorf("zone-2 got zone-1's Dataplane (err %v): Dataplanes only go up", err)
	}
	if _, err := z1.Store.Get(ctx, resource.ZoneIngressType, "", "zone-1.ingress"); !store.IsNotFound(err) {
		t.Errorf("zone-1 got its own ingress back (err %v)", err)
	}
	// A zone deleting its Dataplane removes it from global.
	if err := z1.Store.Delete(ctx, resource.DataplaneType, "default", "web-1", 0); err != nil {
		t.Fatal(err)
	}
	gone(t, g.Store, resource.DataplaneType, "default", "zone-1.web-1")
	// Lag is measured for the create and for the removal.
	apptest.Eventually(t, wait, func() error {
		if n := lagSamples(t, g.App, "zone-1", "Dataplane", "up"); n < 2 {
			return fmt.Errorf("lag samples for zone-1's Dataplanes on global = %d, want >= 2", n)
		}
		if n := lagSamples(t, z2.App, "zone-2", "ZoneIngress", "down"); n < 1 {
			return fmt.Errorf("lag samples for ZoneIngresses in zone-2 = %d, want >= 1", n)
		}
		return nil
	})
	if _, err := z1.Store.Create(ctx, apptest.Dataplane("web-1", "web", 8080), store.WithoutMeshCheck()); err != nil {
		t.Fatal(err)
	}
	has(t, g.Store, resource.DataplaneType, "default", "zone-1.web-1", "zone-1", nil)

	// Status: ZoneInsight with the subscription, online from the lease.
	apptest.Eventually(t, wait, func() error {
		r, err := g.Store.Get(ctx, resource.ZoneInsightType, "", "zone-1")
		if err != nil {
			return err
		}
		subs := r.Spec.(*meshv1.ZoneInsight).GetSubscriptions()
		if len(subs) == 0 || subs[len(subs)-1].GetZoneInstanceId() != "zone-1-1" || subs[len(subs)-1].GetConnectTime() == nil {
			return fmt.Errorf("subscriptions %v", subs)
		}
		if on, err := app.Online(ctx, g.Client, "zone-1"); !on {
			return fmt.Errorf("zone-1 not online (err %v)", err)
		}
		return nil
	})

	// Global goes away. Zones keep everything; edits made on global in the
	// meantime arrive after it restarts, without a full resend.
	c.Global.Stop(t)
	d := outage(t)
	t.Logf("global down for %s", d)
	if _, err := g.Store.Create(ctx, permission("allow-api", "api")); err != nil {
		t.Fatal(err)
	}
	cur, err := g.Store.Get(ctx, resource.TrafficPermissionType, "default", "allow-web")
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec = permission("allow-web", "frontend").Spec
	if _, err := g.Store.Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	if err := g.Store.Delete(ctx, resource.SecretType, "default", "mesh-ca", 0); err != nil {
		t.Fatal(err)
	}
	apptest.Eventually(t, wait, func() error {
		if on, _ := app.Online(ctx, g.Client, "zone-1"); on {
			return errors.New("zone-1 still online with global down")
		}
		return nil
	})
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, z := range c.Zones {
			r, err := z.Store.Get(ctx, resource.TrafficPermissionType, "default", "allow-web")
			if err != nil || source(r) != "web" {
				t.Fatalf("%s lost its policy while global is down: %v", z.Name, err)
			}
			if z.App.Connected() {
				t.Fatalf("%s claims to be connected to a stopped global", z.Name)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.StartGlobal(t)
	for _, z := range c.Zones {
		has(t, z.Store, resource.TrafficPermissionType, "default", "allow-web", "global", func(r *resource.Resource) error {
			if source(r) != "frontend" {
				return fmt.Errorf("allow-web source %q, want frontend", source(r))
			}
			return nil
		})
		has(t, z.Store, resource.TrafficPermissionType, "default", "allow-api", "global", nil)
		gone(t, z.Store, resource.SecretType, "default", "mesh-ca")
	}
	// The restarted global sent only what changed: two permissions per
	// zone, no Mesh, and it took nothing from the zones again.
	for _, z := range []string{"zone-1", "zone-2"} {
		if n := testutil.ToFloat64(g.App.Metrics().SentResources.WithLabelValues(z, "TrafficPermission", "down")); n != 2 {
			t.Errorf("after reconnect global sent %v TrafficPermissions to %s, want 2", n, z)
		}
		if n := testutil.ToFloat64(g.App.Metrics().SentResources.WithLabelValues(z, "Mesh", "down")); n != 0 {
			t.Errorf("after reconnect global sent %v Meshes to %s, want 0", n, z)
		}
	}
	if n := testutil.ToFloat64(z1.App.Metrics().SentResources.WithLabelValues("zone-1", "Dataplane", "up")); n != 2 {
		t.Errorf("zone-1 sent %v Dataplanes in all, want 2 (create, re-create; none again after the reconnect)", n)
	}
	has(t, g.Store, resource.DataplaneType, "default", "zone-1.web-1", "zone-1", nil)
}

// rawStream opens a sync stream to global as zone with tok.
func rawStream(t *testing.T, c *apptest.Cluster, zone, tok string) (syncv1.ZoneSyncService_SyncClient, context.CancelFunc) {
	t.Helper()
	conn, err := grpc.NewClient(c.GlobalAddress, grpc.WithTransportCredentials(credentials.NewTLS(c.ClientTLS())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	s, err := syncv1.NewZoneSyncServiceClient(conn).Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&syncv1.SyncMessage{Message: &syncv1.SyncMessage_Hello{Hello: &syncv1.Hello{Zone: zone, InstanceId: "raw"}}}); err != nil {
		t.Fatal(err)
	}
	return s, cancel
}

func TestRefusedStreams(t *testing.T) {
	ctx := context.Background()
	c := apptest.Start(t, apptest.Options{Zones: 0})
	for _, z := range []string{"zone-1", "zone-2"} {
		if _, err := c.Global.Store.Create(ctx, resource.New(resource.ZoneType, "", z)); err != nil {
			t.Fatal(err)
		}
	}
	off := resource.New(resource.ZoneType, "", "zone-off")
	off.Spec = &meshv1.Zone{Enabled: wrapperspb.Bool(false)}
	if _, err := c.Global.Store.Create(ctx, off); err != nil {
		t.Fatal(err)
	}
	// A token signed by another control plane.
	other := apptest.Start(t, apptest.Options{Zones: 0})
	expired, _, err := token.New(c.Global.Store).WithClock(func() time.Time { return time.Now().Add(-2 * time.Hour) }).
		Issue(ctx, token.Claims{Kind: token.KindZone, Zone: "zone-1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, zone, tok string
		code            codes.Code
	}{
		{"foreign signature", "zone-1", other.ZoneToken(t, "zone-1"), codes.Unauthenticated},
		{"garbage", "zone-1", "not-a-token", codes.Unauthenticated},
		{"expired", "zone-1", expired, codes.Unauthenticated},
		{"token for another zone", "zone-1", c.ZoneToken(t, "zone-2"), codes.PermissionDenied},
		{"unknown zone", "zone-9", c.ZoneToken(t, "zone-9"), codes.PermissionDenied},
		{"disabled zone", "zone-off", c.ZoneToken(t, "zone-off"), codes.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, cancel := rawStream(t, c, tc.zone, tc.tok)
			defer cancel()
			_, err := s.Recv()
			if status.Code(err) != tc.code {
				t.Fatalf("got %v, want %s", err, tc.code)
			}
			t.Logf("refused: %v", err)
		})
	}
	// The zone app itself reports the refusal and does not connect.
	if testutil.ToFloat64(c.Global.App.Metrics().Rejected.WithLabelValues("zone-2", "token_for_other_zone")) != 1 {
		t.Error("refusal not counted")
	}
}

func TestForgedResourcesRejected(t *testing.T) {
	ctx := context.Background()
	c := apptest.Start(t, apptest.Options{Zones: 0})
	for _, z := range []string{"zone-1", "zone-2"} {
		if _, err := c.Global.Store.Create(ctx, resource.New(resource.ZoneType, "", z)); err != nil {
			t.Fatal(err)
		}
	}
	s, cancel := rawStream(t, c, "zone-1", c.ZoneToken(t, "zone-1"))
	defer cancel()
	if m, err := s.Recv(); err != nil || m.GetWelcome() == nil {
		t.Fatalf("no welcome: %v %v", m, err)
	}
	forge := func(name string, mutate func(*resource.Resource)) *syncv1.SyncResource {
		r := apptest.Dataplane(name, "web", 8080)
		mutate(r)
		spec, _ := protocol.MarshalSpec(r.Spec)
		w := protocol.WireName(resource.DataplaneType, "default", name)
		return &syncv1.SyncResource{Name: w, Version: protocol.Version(w, r.Meta.GetLabels(), spec), Meta: r.Meta, Spec: spec}
	}
	for i, tc := range []struct {
		name   string
		res    *syncv1.SyncResource
		reason string
	}{
		{"origin zone-2", forge("web-2", func(r *resource.Resource) { r.Meta.Origin = "zone-2" }), "foreign_origin"},
		{"zone tag zone-2", forge("web-3", func(r *resource.Resource) {
			r.Spec.(*meshv1.Dataplane).Networking.Inbound[0].Tags[resource.ZoneTag] = "zone-2"
		}), "foreign_zone"},
		{"mesh not on global", func() *syncv1.SyncResource {
			r := apptest.Dataplane("web-4", "web", 8080)
			r.Meta.Mesh = "nowhere"
			spec, _ := protocol.MarshalSpec(r.Spec)
			w := protocol.WireName(resource.DataplaneType, "nowhere", "web-4")
			return &syncv1.SyncResource{Name: w, Version: protocol.Version(w, r.Meta.GetLabels(), spec), Meta: r.Meta, Spec: spec}
		}(), "unknown_mesh"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nonce := fmt.Sprintf("forged-%d", i)
			ok := forge("fine", func(*resource.Resource) {})
			resp := &syncv1.DeltaResponse{TypeUrl: protocol.TypeURL(resource.DataplaneType), Nonce: nonce,
				Resources: []*syncv1.SyncResource{ok, tc.res}}
			if err := s.Send(&syncv1.SyncMessage{Message: &syncv1.SyncMessage_Response{Response: resp}}); err != nil {
				t.Fatal(err)
			}
			for {
				m, err := s.Recv()
				if err != nil {
					t.Fatal(err)
				}
				if r := m.GetRequest(); r != nil && r.GetResponseNonce() == nonce {
					if r.GetErrorDetail() == nil || codes.Code(r.GetErrorDetail().GetCode()) != codes.PermissionDenied {
						t.Fatalf("want a PermissionDenied NACK, got %v", r)
					}
					t.Logf("NACK: %s", r.GetErrorDetail().GetMessage())
					break
				}
			}
			if n := testutil.ToFloat64(c.Global.App.Metrics().Rejected.WithLabelValues("zone-1", tc.reason)); n != 1 {
				t.Errorf("rejected{%s} = %v, want 1", tc.reason, n)
			}
		})
	}
	// Nothing of either message was written, not even the valid resource.
	dps, _, err := c.Global.Store.ListAll(ctx, resource.DataplaneType, "")
	if err != nil || len(dps) != 0 {
		t.Fatalf("global holds %d dataplanes (err %v), want none", len(dps), err)
	}
}

func lagSamples(t *testing.T, a *app.App, zone, typ, dir string) uint64 {
	t.Helper()
	var m dto.Metric
	if err := a.Metrics().Lag.WithLabelValues(zone, typ, dir).(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// Token-less Hellos with made-up zone names: refused, counted under
// zone="" (a claimed name is never a label), so /metrics does not grow.
func TestUnauthenticatedZoneNamesAreNotLabels(t *testing.T) {
	c := apptest.Start(t, apptest.Options{Zones: 0})
	for i := range 30 {
		s, cancel := rawStream(t, c, fmt.Sprintf("made-up-%d", i), "")
		if _, err := s.Recv(); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("got %v, want Unauthenticated", err)
		}
		cancel()
	}
	rejected := c.Global.App.Metrics().Rejected
	if n := testutil.CollectAndCount(rejected); n != 1 {
		t.Fatalf("%d rejected series, want 1", n)
	}
	if n := testutil.ToFloat64(rejected.WithLabelValues("", "bad_token")); n != 30 {
		t.Fatalf("rejected{zone=\"\",bad_token} = %v, want 30", n)
	}
}
