package reconcile

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	"github.com/weftmesh/weft/xds-server/internal/generator"
	"github.com/weftmesh/weft/xds-server/internal/model"
)

type genCounter struct{ n atomic.Int64 }

func (g *genCounter) Generated(string, string, time.Duration, error) { g.n.Add(1) }
func (g *genCounter) Pushed(string, string, string)                  {}
func (g *genCounter) ConnectedChanged(string, int)                   {}

// BenchmarkReconcile measures, with 1000 connected Envoy proxies of one
// mesh (100 services), the time from a store write to the cache holding
// the result: a TrafficPermission change (10 proxies affected) and a Mesh
// change (every proxy regenerated). Real etcd, no network to proxies.
func BenchmarkReconcile(b *testing.B) {
	const n, services = 1000, 100
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := store.New(etcdtest.Client(b, nil))
	mesh := resource.New(resource.MeshType, "", "m")
	mtls := &meshv1.Mesh_Mtls{EnabledBackend: "ca", Backends: []*meshv1.CertificateAuthorityBackend{{Name: "ca", Type: "builtin"}}}
	mesh.Spec = &meshv1.Mesh{Mtls: mtls}
	if _, err := st.Create(ctx, mesh); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i++ {
		r := resource.New(resource.DataplaneType, "m", fmt.Sprintf("dp-%d", i))
		r.Spec = &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{
			Address:  fmt.Sprintf("10.0.%d.%d", i>>8, i&255),
			Inbound:  []*meshv1.Dataplane_Networking_Inbound{{Port: 8080, Tags: map[string]string{resource.ServiceTag: fmt.Sprintf("svc-%d", i%services)}}},
			Outbound: []*meshv1.Dataplane_Networking_Outbound{{Port: 9000, Tags: map[string]string{resource.ServiceTag: fmt.Sprintf("svc-%d", (i+1)%services)}}},
		}}
		if _, err := st.Create(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	cache := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	obs := &genCounter{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := model.New(st, log)
	rec := New(m, cache, noCerts{}, obs, log)
	go func() { _ = m.Run(ctx) }()
	go rec.Run(ctx)
	for i := 0; i < n; i++ {
		rec.Connect(fmt.Sprintf("m.dp-%d", i), "m", fmt.Sprintf("dp-%d", i), generator.KindEnvoy, nil)
	}
	for obs.n.Load() < n {
		time.Sleep(time.Millisecond)
	}
	lds := func(id string) string {
		s, err := cache.GetSnapshot(id)
		if err != nil {
			return ""
		}
		return s.GetVersion(resourcev3.ListenerType)
	}
	seq := 0
	b.Run("permission-change/affected=10", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			seq++
			svc := seq % services
			before := lds(fmt.Sprintf("m.dp-%d", svc))
			tp := resource.New(resource.TrafficPermissionType, "m", fmt.Sprintf("tp-%d", seq))
			tp.Spec = &meshv1.TrafficPermission{
				Sources:      []*meshv1.Selector{{Match: map[string]string{resource.ServiceTag: "*"}}},
				Destinations: []*meshv1.Selector{{Match: map[string]string{resource.ServiceTag: fmt.Sprintf("svc-%d", svc)}}},
			}
			start := obs.n.Load()
			if _, err := st.Create(ctx, tp); err != nil {
				b.Fatal(err)
			}
			// Every dataplane of svc (dp-svc, dp-svc+100, ...) gets new RBAC.
			deadline := time.Now().Add(30 * time.Second)
			for lds(fmt.Sprintf("m.dp-%d", svc)) == before || obs.n.Load()-start < n/services {
				if time.Now().After(deadline) {
					b.Fatalf("not updated: %d regenerated", obs.n.Load()-start)
				}
				time.Sleep(50 * time.Microsecond)
			}
			if got := obs.n.Load() - start; got > n/services {
				b.Fatalf("%d proxies regenerated for a change affecting %d", got, n/services)
			}
		}
	})
	b.Run("mesh-change/affected=1000", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			start := obs.n.Load()
			mesh.Spec = &meshv1.Mesh{Mtls: mtls, Logging: &meshv1.Logging{DefaultBackend: fmt.Sprint(i)}}
			if _, _, err := st.Upsert(ctx, &resource.Resource{Meta: &meshv1.Meta{Type: "Mesh", Name: "m"}, Spec: mesh.Spec}); err != nil {
				b.Fatal(err)
			}
			deadline := time.Now().Add(60 * time.Second)
			for obs.n.Load()-start < n {
				if time.Now().After(deadline) {
					b.Fatalf("only %d regenerated", obs.n.Load()-start)
				}
				time.Sleep(100 * time.Microsecond)
			}
		}
	})
}
