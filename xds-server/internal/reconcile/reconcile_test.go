package reconcile

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.opentelemetry.io/otel/trace"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/xds-server/internal/generator"
	"github.com/weftmesh/weft/xds-server/internal/meshview"
	"github.com/weftmesh/weft/xds-server/internal/model"
)

type noCerts struct{}

func (noCerts) Acquire(string, string, string, trace.SpanContext) {}
func (noCerts) Release(string, string)                            {}
func (noCerts) Get(string, string) *meshview.Identity             { return nil }

type counter struct {
	mu  sync.Mutex
	gen map[string]int
}

func (c *counter) Generated(id, _ string, _ time.Duration, _ error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen[id]++
}
func (c *counter) Pushed(string, string, string) {}
func (c *counter) ConnectedChanged(string, int)  {}

func (c *counter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.gen {
		out[k] = v
	}
	return out
}

func dp(name, svc, outbound string) string {
	s := `
type: Dataplane
mesh: m
name: ` + name + `
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    tags:
      weft.io/service: ` + svc
	if outbound != "" {
		s += `
  outbound:
  - port: 9000
    tags:
      weft.io/service: ` + outbound
	}
	return s + "\n"
}

func apply(t *testing.T, st *store.Store, y string) {
	t.Helper()
	rs, err := resource.UnmarshalAll(strings.NewReader(y))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if _, _, err := st.Upsert(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOnlyAffectedProxiesRecomputed: a change regenerates the proxies that
// depend on it, and only those; an unchanged result pushes nothing new.
func TestOnlyAffectedProxiesRecomputed(t *testing.T) {
	st := store.New(etcdtest.Client(t, nil))
	apply(t, st, "type: Mesh\nname: m\n---"+dp("web-1", "web", "backend")+"---"+dp("backend-1", "backend", "")+
		"---"+dp("other-1", "other", "redis")+"---"+dp("redis-1", "redis", ""))
	cache := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	obs := &counter{gen: map[string]int{}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := model.New(st, log)
	rec := New(m, cache, noCerts{}, obs, log)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = m.Run(ctx) }()
	go rec.Run(ctx)
	nodes := []string{"m.web-1", "m.backend-1", "m.other-1", "m.redis-1"}
	for _, n := range nodes {
		_, name, _ := generator.ParseNodeID(n)
		rec.Connect(n, "m", name, generator.KindEnvoy, nil)
	}
	waitFor(t, "first snapshots", func() bool {
		for _, n := range nodes {
			if _, err := cache.GetSnapshot(n); err != nil {
				return false
			}
		}
		return true
	})
	settle := func() map[string]int {
		// The reconciler drains its queue quickly; wait until counts stop moving.
		prev := obs.snapshot()
		for {
			time.Sleep(100 * time.Millisecond)
			cur := obs.snapshot()
			same := len(cur) == len(prev)
			for k, v := range cur {
				same = same && prev[k] == v
			}
			if same {
				return cur
			}
			prev = cur
		}
	}
	before := settle()
	ver := func(n, typ string) string {
		s, err := cache.GetSnapshot(n)
		if err != nil {
			t.Fatal(err)
		}
		return s.GetVersion(typ)
	}
	webEDS := ver("m.web-1", resourcev3.EndpointType)
	otherAll := ver("m.other-1", resourcev3.ListenerType) + ver("m.other-1", resourcev3.ClusterType)

	// backend-1 moves: backend-1 itself and web-1 (which calls backend) are
	// regenerated; other-1 and redis-1 are not.
	apply(t, st, strings.Replace(dp("backend-1", "backend", ""), "10.0.0.1", "10.0.0.9", 1))
	waitFor(t, "web-1 endpoints updated", func() bool { return ver("m.web-1", resourcev3.EndpointType) != webEDS })
	after := settle()
	for n, want := range map[string]bool{"m.web-1": true, "m.backend-1": true, "m.other-1": false, "m.redis-1": false} {
		if got := after[n] > before[n]; got != want {
			t.Errorf("%s regenerated = %v, want %v (before %d after %d)", n, got, want, before[n], after[n])
		}
	}
	if ver("m.other-1", resourcev3.ListenerType)+ver("m.other-1", resourcev3.ClusterType) != otherAll {
		t.Error("other-1's versions changed")
	}

	// A permission for redis touches redis-1 only.
	before = after
	apply(t, st, `
type: TrafficPermission
mesh: m
name: other-to-redis
sources:
- match:
    weft.io/service: other
destinations:
- match:
    weft.io/service: redis
`)
	waitFor(t, "redis-1 regenerated", func() bool { return obs.snapshot()["m.redis-1"] > before["m.redis-1"] })
	after = settle()
	for _, n := range []string{"m.web-1", "m.backend-1", "m.other-1"} {
		if after[n] != before[n] {
			t.Errorf("%s regenerated for a permission that does not select it", n)
		}
	}

	// Disconnecting the last stream drops the snapshot.
	rec.Disconnect("m.redis-1")
	if _, err := cache.GetSnapshot("m.redis-1"); err == nil {
		t.Error("snapshot kept after the proxy left")
	}
}

// TestReconnectHoldingVersionsLeavesNothingPending: a proxy that reconnects
// saying it holds the versions this replica then computes gets no response
// (go-control-plane answers only a different version), so no ACK will come;
// its push must not stay pending. A proxy that said nothing waits for ACKs.
func TestReconnectHoldingVersionsLeavesNothingPending(t *testing.T) {
	st := store.New(etcdtest.Client(t, nil))
	apply(t, st, "type: Mesh\nname: m\n---"+dp("web-1", "web", "backend")+"---"+dp("backend-1", "backend", ""))
	rec, cache, _ := startReconciler(t, st)
	rec.Connect("m.web-1", "m", "web-1", generator.KindEnvoy, nil)
	waitFor(t, "first snapshot", func() bool { _, err := cache.GetSnapshot("m.web-1"); return err == nil })
	if n := rec.Pending("m.web-1"); n == 0 {
		t.Fatal("a push no ACK answered is not pending")
	}
	s, _ := cache.GetSnapshot("m.web-1")
	held := map[string]string{}
	for _, typ := range generator.TypeURLs {
		held[typ] = s.GetVersion(typ)
	}

	// The proxy reconnects (to this or another replica) holding them: its
	// first requests arrive before the new generation.
	rec.Disconnect("m.web-1")
	rec.Connect("m.web-1", "m", "web-1", generator.KindEnvoy, nil)
	for typ, v := range held {
		rec.Holds("m.web-1", typ, v)
	}
	rec.Holds("m.web-1", "type.googleapis.com/not.Served", "x") // ignored, not stored
	waitFor(t, "snapshot after reconnect", func() bool { _, err := cache.GetSnapshot("m.web-1"); return err == nil })
	waitFor(t, "nothing pending", func() bool { return rec.Pending("m.web-1") == 0 })

	// And after the generation: the push it reports holding is cleared.
	rec.Disconnect("m.web-1")
	rec.Connect("m.web-1", "m", "web-1", generator.KindEnvoy, nil)
	waitFor(t, "snapshot after second reconnect", func() bool { return rec.Pending("m.web-1") > 0 })
	for typ, v := range held {
		rec.Holds("m.web-1", typ, v)
	}
	if n := rec.Pending("m.web-1"); n != 0 {
		t.Errorf("%d types still pending after the proxy said it holds them", n)
	}
}

// startReconciler runs a model and a reconciler (no certificates) on st
// into a fresh snapshot cache until the test ends, and returns the
// reconciler, the cache and the model.
func startReconciler(t *testing.T, st *store.Store) (*Reconciler, cachev3.SnapshotCache, *model.Model) {
	t.Helper()
	cache := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := model.New(st, log)
	rec := New(m, cache, noCerts{}, &counter{gen: map[string]int{}}, log)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = m.Run(ctx) }()
	go rec.Run(ctx)
	return rec, cache, m
}
