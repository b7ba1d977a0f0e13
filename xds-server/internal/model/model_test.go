package model

import (
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

func TestModelFollowsStore(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := store.New(etcdtest.Client(t, nil))
	put := func(y string) {
		t.Helper()
		rs, err := resource.UnmarshalAll(strings.NewReader(y))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if _, _, err := st.Upsert(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
	}
	put("type: Mesh\nname: m\n---\ntype: Dataplane\nmesh: m\nname: a\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    tags:\n      weft.io/service: web\n")
	var mu sync.Mutex
	var changes []Change
	m := New(st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	go func() {
		for c := range m.Changes() {
			mu.Lock()
			changes = append(changes, c...)
			mu.Unlock()
		}
	}()
	go func() { _ = m.Run(ctx) }()
	select {
	case <-m.Synced():
	case <-time.After(10 * time.Second):
		t.Fatal("not synced")
	}
	s1 := m.View("m")
	if s1.Spec == nil || len(s1.Dataplanes) != 1 || s1.Dataplanes[0].Meta.GetName() != "a" {
		t.Fatalf("view after sync: %+v", s1)
	}
	if m.View("m") != s1 {
		t.Fatal("view rebuilt without a change")
	}
	wait := func(f func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !f() {
			if time.Now().After(deadline) {
				t.Fatal("timed out")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	put("type: Dataplane\nmesh: m\nname: b\nnetworking:\n  address: 10.0.0.2\n  inbound:\n  - port: 80\n    tags:\n      weft.io/service: api\n")
	// The view changes first; the change reaches the channel's reader after.
	lastChange := func(name string) (Change, bool) {
		mu.Lock()
		defer mu.Unlock()
		if len(changes) == 0 || changes[len(changes)-1].Name != name {
			return Change{}, false
		}
		return changes[len(changes)-1], true
	}
	wait(func() bool { _, ok := lastChange("b"); return ok && len(m.View("m").Dataplanes) == 2 })
	last, _ := lastChange("b")
	if last.Type != resource.DataplaneType || last.Name != "b" || last.Old != nil || last.New == nil || last.Mesh != "m" {
		t.Fatalf("change %+v", last)
	}
	// Insights (written by replicas) are not the generators' business.
	ins := resource.New(resource.DataplaneInsightType, "m", "b")
	if _, _, err := st.Upsert(ctx, ins); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, resource.DataplaneType, "m", "a", 0); err != nil {
		t.Fatal(err)
	}
	wait(func() bool { _, ok := lastChange("a"); return ok && len(m.View("m").Dataplanes) == 1 })
	mu.Lock()
	for _, c := range changes {
		if c.Type == resource.DataplaneInsightType {
			t.Errorf("insight change reported: %+v", c)
		}
	}
	mu.Unlock()
	last, _ = lastChange("a")
	if last.Name != "a" || last.Old == nil || last.New != nil {
		t.Fatalf("delete change %+v", last)
	}
	// Deleting the mesh empties it.
	if err := st.Delete(ctx, resource.MeshType, "", "m", 0); err != nil {
		t.Fatal(err)
	}
	wait(func() bool { return m.View("m") == nil || m.View("m").Spec == nil })
}
