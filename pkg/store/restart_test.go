package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/etcdembed"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
)

// TestWatchSurvivesEtcdRestart drops the connection under a live watch by
// stopping etcd, restarts it on the same address and data, and checks the
// watch delivers what happens next without loss or duplicates.
func TestWatchSurvivesEtcdRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	srv, err := etcdembed.Start(ctx, etcdembed.Config{Dir: dir, AutoCompactionRetention: "0"})
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Endpoint()
	cli, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	s := store.New(cli)
	if _, err := s.Create(ctx, mesh("m")); err != nil {
		t.Fatal(err)
	}
	ch, err := s.Watch(ctx, resource.DataplaneType, "m", 0, store.WatchOptions{RetryBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Kind != store.EventSync {
		t.Fatalf("first event %v", ev.Kind)
	}
	if _, err := s.Create(ctx, dataplane("m", "before", 80)); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Resource.Meta.Name != "before" {
		t.Fatalf("got %s", ev.Resource.Meta.Name)
	}

	srv.Close()
	srv, err = etcdembed.Start(ctx, etcdembed.Config{Dir: dir, ClientAddr: addr, AutoCompactionRetention: "0"})
	if err != nil {
		t.Fatalf("restart etcd on %s: %v", addr, err)
	}
	defer srv.Close()

	// Writes after the restart (retried until the client reconnects).
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("after-%d", i)
		deadline := time.Now().Add(30 * time.Second)
		for {
			wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := s.Create(wctx, dataplane("m", name, 80))
			wcancel()
			if err == nil || store.IsAlreadyExists(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("etcd did not come back: %v", err)
			}
		}
	}
	for i := 0; i < 3; i++ {
		ev := next(t, ch)
		if ev.Kind != store.EventPut || ev.Resource.Meta.Name != fmt.Sprintf("after-%d", i) {
			t.Fatalf("event %d after restart: %v %s", i, ev.Kind, ev.Resource.Meta.GetName())
		}
	}
	select {
	case ev := <-ch:
		t.Fatalf("unexpected extra event %v %s", ev.Kind, ev.Resource.Meta.GetName())
	case <-time.After(300 * time.Millisecond):
	}
}
