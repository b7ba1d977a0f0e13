package protocol

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	syncv1 "github.com/weftmesh/weft/proto/gen/go/weft/sync/v1"
)

// pipe is one end of an in-memory stream.
type pipe struct {
	in  <-chan *syncv1.SyncMessage
	out chan<- *syncv1.SyncMessage
	ctx context.Context
}

func (p *pipe) Send(m *syncv1.SyncMessage) error {
	select {
	case p.out <- m:
		return nil
	case <-p.ctx.Done():
		return io.EOF
	}
}

func (p *pipe) Recv() (*syncv1.SyncMessage, error) {
	select {
	case m := <-p.in:
		return m, nil
	case <-p.ctx.Done():
		return nil, io.EOF
	}
}

// flaky fails to overwrite its first collision, then accepts.
type flaky struct {
	st    *store.Store
	fails atomic.Int32
}

func (f *flaky) InitialVersions(context.Context, *resource.Type) (map[string]string, error) {
	return nil, nil
}
func (f *flaky) Local(in Incoming) (*resource.Resource, error) { return in.Resource.Clone(), nil }
func (f *flaky) LocalName(t *resource.Type, w string) (string, string, error) {
	return SplitName(t, w)
}
func (f *flaky) FromPeer(*resource.Resource) bool { return f.fails.Add(1) > 1 }

// A response the receiver fails to apply is NACKed as transient and sent
// again; once applied it is ACKed and the receiver has it.
func TestTransientNACKIsRetried(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	src := store.New(etcdtest.Client(t, nil))
	dst := store.New(etcdtest.Client(t, nil))
	if _, err := src.Create(ctx, dataplane("default", "web-1"), store.WithoutMeshCheck()); err != nil {
		t.Fatal(err)
	}
	// The receiver already holds another web-1: the write is an overwrite,
	// which flaky refuses once.
	old := dataplane("default", "web-1")
	old.Spec.(*meshv1.Dataplane).Networking.Address = "10.9.9.9"
	if _, err := dst.Create(ctx, old, store.WithoutMeshCheck()); err != nil {
		t.Fatal(err)
	}
	cache := NewCache(src, []*resource.Type{resource.DataplaneType}, log)
	go func() { _ = cache.Run(ctx) }()
	m := NewMetrics(nil)
	ab, ba := make(chan *syncv1.SyncMessage, 16), make(chan *syncv1.SyncMessage, 16)
	sender := NewSession(SessionConfig{Peer: "z", Log: log, Metrics: m, Store: src, Cache: cache,
		Serve: []*resource.Type{resource.DataplaneType}, SendDirection: Up, RetryDelay: 50 * time.Millisecond})
	receiver := NewSession(SessionConfig{Peer: "z", Log: log, Metrics: m, Store: dst,
		Receive: []*resource.Type{resource.DataplaneType}, Policy: &flaky{st: dst}, RecvDirection: Up})
	go func() { _ = sender.Run(ctx, &pipe{in: ba, out: ab, ctx: ctx}) }()
	go func() { _ = receiver.Run(ctx, &pipe{in: ab, out: ba, ctx: ctx}) }()

	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := dst.Get(ctx, resource.DataplaneType, "default", "web-1")
		if err == nil && r.Spec.(*meshv1.Dataplane).GetNetworking().GetAddress() == "10.0.0.1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not applied after the retry: %v %v", r, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := testutil.ToFloat64(m.Nacks.WithLabelValues("z", "Dataplane", Up)); n != 1 {
		t.Errorf("nacks = %v, want 1", n)
	}
	if n := testutil.ToFloat64(m.SentResources.WithLabelValues("z", "Dataplane", Up)); n != 2 {
		t.Errorf("sent %v resources, want 2 (first try, retry)", n)
	}
}

// The cache diffs a re-list (after compaction) against what it held, so
// subscribers hear of every change, removals included.
func TestCacheResyncDiff(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := NewCache(nil, []*resource.Type{resource.DataplaneType}, log)
	a, b := dataplane("default", "a"), dataplane("default", "b")
	c.apply(resource.DataplaneType, store.Event{Kind: store.EventSync, Resources: []*resource.Resource{a, b}, Revision: 5})
	<-c.Ready()
	n := c.Subscribe()
	b2 := dataplane("default", "b")
	b2.Spec.(*meshv1.Dataplane).Networking.Address = "10.1.1.1"
	cc := dataplane("default", "c")
	c.apply(resource.DataplaneType, store.Event{Kind: store.EventSync, Resources: []*resource.Resource{b2, cc}, Revision: 9})
	got := map[string]bool{}
	for _, k := range n.Take() {
		got[k.Wire] = true
	}
	if len(got) != 3 || !got["default/a"] || !got["default/b"] || !got["default/c"] {
		t.Fatalf("changed %v, want a (removed), b (changed), c (new)", got)
	}
	if c.Get(resource.DataplaneType, "default/a") != nil || c.Revision(resource.DataplaneType) != 9 {
		t.Fatal("stale cache")
	}
}
