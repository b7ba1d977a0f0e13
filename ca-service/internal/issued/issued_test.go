package issued_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftmesh/weft/ca-service/internal/issued"
	"github.com/weftmesh/weft/pkg/etcdtest"
)

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRecordsAreSharedAndRetired(t *testing.T) {
	cli := etcdtest.Client(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	log := slog.New(slog.DiscardHandler)
	var mu sync.Mutex
	changed := map[string]int{}
	run := func(tr *issued.Tracker) *issued.Tracker {
		wg.Add(1)
		go func() { defer wg.Done(); _ = tr.Run(ctx) }()
		return tr
	}
	a := run(issued.New(cli, 10*time.Millisecond, log, nil))
	b := run(issued.New(cli, 10*time.Millisecond, log, func(mesh string) { mu.Lock(); changed[mesh]++; mu.Unlock() }))
	<-b.Synced()

	now := time.Now()
	a.Record("m", "Dataplane", "dp-1", "old", now, now.Add(time.Hour))
	a.Record("m", "Dataplane", "dp-2", "old", now, now.Add(time.Hour))
	if got := a.Backends("m", now); len(got) != 1 || !got["old"].Equal(now.Add(time.Hour).UTC()) {
		t.Fatalf("local backends %v", got)
	}
	eventually(t, "replica b to see the records", func() bool { _, ok := b.Backends("m", now)["old"]; return ok })

	// dp-1 re-issued under "new": "old" still live through dp-2.
	a.Record("m", "Dataplane", "dp-1", "new", now.Add(time.Second), now.Add(2*time.Hour))
	eventually(t, "both backends live", func() bool { return len(b.Backends("m", now)) == 2 })
	mu.Lock()
	if changed["m"] == 0 {
		t.Error("no change notification")
	}
	mu.Unlock()
	// dp-2 re-issued: "old" has no live certificate left.
	a.Record("m", "Dataplane", "dp-2", "new", now.Add(time.Second), now.Add(2*time.Hour))
	eventually(t, "old backend retired", func() bool { _, ok := b.Backends("m", now)["old"]; return !ok })
	// Expired records are not live, and the sweep deletes them.
	a.Record("m", "ZoneIngress", "zi", "x", now.Add(-2*time.Hour), now.Add(-90*time.Minute))
	if _, ok := a.Backends("m", now)["x"]; ok {
		t.Error("expired record counted as live")
	}
	// A tracker that starts later sees everything from etcd.
	c := run(issued.New(cli, 10*time.Millisecond, log, nil))
	<-c.Synced()
	eventually(t, "late tracker to list records", func() bool { return len(c.Backends("m", now)) == 1 })
	resp, err := cli.Get(context.Background(), issued.DefaultPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count < 2 {
		t.Errorf("records in etcd: %d (%v)", resp.Count, err)
	}

	// The sweep deletes records a minute past expiry, everywhere.
	eventually(t, "expired record to reach etcd", func() bool {
		r, _ := cli.Get(context.Background(), issued.DefaultPrefix+"m/ZoneIngress/zi")
		return r != nil && len(r.Kvs) == 1
	})
	eventually(t, "expired record swept", func() bool {
		a.Sweep(context.Background())
		r, _ := cli.Get(context.Background(), issued.DefaultPrefix+"m/ZoneIngress/zi")
		return r != nil && len(r.Kvs) == 0
	})
	if _, err := cli.Get(context.Background(), issued.DefaultPrefix+"m/Dataplane/dp-1"); err != nil {
		t.Fatal(err)
	}
	r, _ := cli.Get(context.Background(), issued.DefaultPrefix+"m/Dataplane/dp-1")
	if len(r.Kvs) != 1 {
		t.Error("a live record was swept")
	}
}
