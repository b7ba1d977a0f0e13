package model

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
)

// TestChangesChannel: the first batch is the initial sync, a write arrives
// as a change after View reflects it, and the channel closes when Run
// returns (so a consumer ranging over it ends).
func TestChangesChannel(t *testing.T) {
	st := store.New(etcdtest.Client(t, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, _, err := st.Upsert(ctx, resource.New(resource.MeshType, "", "m")); err != nil {
		t.Fatal(err)
	}
	m := New(st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	next := func() []Change {
		t.Helper()
		select {
		case cs, ok := <-m.Changes():
			if !ok {
				t.Fatal("changes closed early")
			}
			return cs
		case <-time.After(30 * time.Second):
			t.Fatal("no changes")
		}
		return nil
	}
	if cs := next(); len(cs) != 1 || !cs[0].Sync || cs[0].Mesh != "m" {
		t.Fatalf("first batch %+v, want the sync of mesh m", cs)
	}
	first := m.View("m")
	dpr := resource.New(resource.DataplaneType, "m", "d")
	if _, _, err := st.Upsert(ctx, dpr); err != nil {
		t.Fatal(err)
	}
	cs := next()
	if len(cs) != 1 || cs[0].Name != "d" || cs[0].New == nil {
		t.Fatalf("batch %+v", cs)
	}
	if v := m.View("m"); v == first || len(v.Dataplanes) != 1 {
		t.Fatalf("view not updated before the change was delivered: %+v", v)
	}
	if m.View("unknown") != nil {
		t.Error("view of an unknown mesh")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
	for range m.Changes() {
	}
}
