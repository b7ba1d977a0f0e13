package model

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
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
	// Each type has its own informer: wait until all have delivered their
	// first view, then a write is one change (other types' initial syncs
	// of mesh m may still be queued ahead of it: skip those).
	select {
	case <-m.Synced():
	case <-time.After(30 * time.Second):
		t.Fatal("not synced")
	}
	first := m.View("m")
	dpr := resource.New(resource.DataplaneType, "m", "d")
	if _, _, err := st.Upsert(ctx, dpr); err != nil {
		t.Fatal(err)
	}
	cs := next()
	for len(cs) == 1 && cs[0].Sync && cs[0].Mesh == "m" {
		cs = next()
	}
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

// TestDeliverWaitsAndSaysWhy: with ChangeBuffer batches pending, the model
// waits for its consumer, logs why once, and gives up when ctx ends.
func TestDeliverWaitsAndSaysWhy(t *testing.T) {
	var logs syncBuffer
	m := New(nil, slog.New(slog.NewTextHandler(&logs, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range ChangeBuffer {
		if !m.deliver(ctx, []Change{{Mesh: "m"}}) {
			t.Fatal("deliver refused with room in the buffer")
		}
	}
	if logs.String() != "" {
		t.Fatalf("logged with room in the buffer: %s", logs.String())
	}
	done := make(chan bool, 1)
	go func() { done <- m.deliver(ctx, []Change{{Mesh: "m"}}) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "reconciler is behind") {
		if time.Now().After(deadline) {
			t.Fatal("no log while waiting")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The consumer reads one: the waiting batch goes in.
	<-m.Changes()
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("deliver failed once there was room")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("deliver still waiting")
	}
	// Full again, and ctx ends: deliver gives up, and logs no second time
	// within the minute.
	go func() { done <- m.deliver(ctx, []Change{{Mesh: "m"}}) }()
	cancel()
	if ok := <-done; ok {
		t.Fatal("delivered into a full buffer")
	}
	if n := strings.Count(logs.String(), "reconciler is behind"); n != 1 {
		t.Fatalf("logged %d times", n)
	}
}
