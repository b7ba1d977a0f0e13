package reconcile

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/xds-server/internal/model"
)

// TestSnapshotOncePerChange: the reconciler builds a mesh's generator
// snapshot once per model view (once per change of the mesh), whatever the
// number of proxies asking for it concurrently, and a change makes a new one.
func TestSnapshotOncePerChange(t *testing.T) {
	st := store.New(etcdtest.Client(t, nil))
	apply(t, st, "type: Mesh\nname: m\n---"+dp("web-1", "web", ""))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := model.New(st, log)
	rec := New(m, cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil), noCerts{}, &counter{gen: map[string]int{}}, log)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(2)
	go func() { defer wg.Done(); _ = m.Run(ctx) }()
	go func() { defer wg.Done(); rec.Run(ctx) }()
	select {
	case <-m.Synced():
	case <-time.After(30 * time.Second):
		t.Fatal("model not synced")
	}

	snaps := make(chan any, 8)
	var g sync.WaitGroup
	for range 8 {
		g.Add(1)
		go func() { defer g.Done(); snaps <- rec.snapshot("m") }()
	}
	g.Wait()
	close(snaps)
	first := rec.snapshot("m")
	for s := range snaps {
		if s != first {
			t.Fatal("one view, several snapshots")
		}
	}
	if first.MeshSpec == nil || len(first.Dataplanes) != 1 {
		t.Fatalf("snapshot %+v", first)
	}

	apply(t, st, dp("web-2", "web", ""))
	waitFor(t, "a new snapshot after the change", func() bool {
		s := rec.snapshot("m")
		return s != first && len(s.Dataplanes) == 2
	})

	// A mesh the model does not know gets an empty snapshot, not nil, and
	// nothing is cached for it.
	if s := rec.snapshot("nope"); s == nil || s.MeshSpec != nil {
		t.Fatalf("unknown mesh: %+v", s)
	}
	rec.mu.Lock()
	_, cached := rec.snaps["nope"]
	rec.mu.Unlock()
	if cached {
		t.Error("snapshot cached for a mesh that does not exist")
	}
}
