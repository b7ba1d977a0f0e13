package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// These are the informer's contract tests on a real etcd (and, for the
// delivery rules that need exact timing, on the fake that shares its code).

func newInformerStore(t *testing.T) (*Store, *clientv3.Client) {
	t.Helper()
	cli := etcdtest.Client(t, nil)
	keys, err := seal.New(seal.Key{ID: "k1", Bytes: bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	return New(cli, WithKeyring(keys)), cli
}

func infCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func testMesh(name string) *resource.Resource {
	return &resource.Resource{Meta: &meshv1.Meta{Type: "Mesh", Name: name}, Spec: &meshv1.Mesh{}}
}

func testDP(mesh, name string) *resource.Resource {
	return &resource.Resource{Meta: &meshv1.Meta{Type: "Dataplane", Mesh: mesh, Name: name}, Spec: &meshv1.Dataplane{
		Networking: &meshv1.Dataplane_Networking{Address: "10.0.0.1", Inbound: []*meshv1.Dataplane_Networking_Inbound{{Port: 80, Tags: map[string]string{resource.ServiceTag: "web"}}}},
	}}
}

// waitUntil polls cond until it holds or a generous deadline passes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recorder is a handler that mirrors what it is told into a view.
type recorder struct {
	mu      sync.Mutex
	view    map[string]int64 // mesh/name -> version
	batches []Batch
	fail    int // calls left to fail
	calls   int
}

func newRecorder() *recorder { return &recorder{view: map[string]int64{}} }

func (r *recorder) handle(b Batch) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.batches = append(r.batches, b)
	if r.fail > 0 {
		r.fail--
		return errors.New("injected failure")
	}
	for _, ev := range b.Events {
		switch ev.Kind {
		case EventSync:
			r.view = map[string]int64{}
			for _, res := range ev.Resources {
				r.view[res.Meta.GetMesh()+"/"+res.Meta.GetName()] = res.Meta.GetVersion()
			}
		case EventPut:
			r.view[ev.Resource.Meta.GetMesh()+"/"+ev.Resource.Meta.GetName()] = ev.Resource.Meta.GetVersion()
		case EventDelete:
			delete(r.view, ev.Resource.Meta.GetMesh()+"/"+ev.Resource.Meta.GetName())
		}
	}
	return nil
}

func (r *recorder) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for k := range r.view {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (r *recorder) has(names ...string) func() bool {
	return func() bool { return slices.Equal(r.names(), names) }
}

func cacheNames(rd Reader) []string {
	var out []string
	for _, r := range rd.List("") {
		out = append(out, r.Meta.GetMesh()+"/"+r.Meta.GetName())
	}
	return out
}

// countSource counts the watches an informer opens and records their
// starting revisions.
func countSource(i *Informer) *[]int64 {
	var mu sync.Mutex
	var froms []int64
	orig := i.source
	i.source = func(ctx context.Context, from int64) (<-chan Event, error) {
		mu.Lock()
		froms = append(froms, from)
		mu.Unlock()
		return orig(ctx, from)
	}
	return &froms
}

func TestInformerListWatchSharedByConsumers(t *testing.T) {
	st, _ := newInformerStore(t)
	ctx := infCtx(t)
	for _, r := range []*resource.Resource{testMesh("a"), testMesh("b"), testDP("a", "dp-1"), testDP("b", "dp-2")} {
		if _, err := st.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	f := NewInformers(st)
	inf := f.For(resource.DataplaneType)
	if f.For(resource.DataplaneType) != inf {
		t.Fatal("For returned two informers for one type")
	}
	if f.For(resource.MeshType) == Reader(inf) {
		t.Fatal("two types share an informer")
	}
	froms := countSource(inf)
	one, two := newRecorder(), newRecorder()
	inf.Subscribe(ctx, "one", one.handle)
	select {
	case <-inf.Synced():
	case <-ctx.Done():
		t.Fatal("informer never synced")
	}
	if got := cacheNames(inf); !slices.Equal(got, []string{"a/dp-1", "b/dp-2"}) {
		t.Fatalf("cache after list: %v", got)
	}
	// A consumer that arrives later shares the watch and starts from the
	// cache (one EventSync), not from a second list.
	inf.Subscribe(ctx, "two", two.handle)
	waitUntil(t, "both consumers' first view", func() bool { return one.has("a/dp-1", "b/dp-2")() && two.has("a/dp-1", "b/dp-2")() })
	two.mu.Lock()
	if k := two.batches[0].Events[0].Kind; k != EventSync {
		t.Fatalf("late subscriber's first event is %v, want SYNC", k)
	}
	two.mu.Unlock()

	dp3, err := st.Create(ctx, testDP("a", "dp-3"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, resource.DataplaneType, "b", "dp-2", 0); err != nil {
		t.Fatal(err)
	}
	want := []string{"a/dp-1", "a/dp-3"}
	waitUntil(t, "both consumers see the changes", func() bool { return one.has(want...)() && two.has(want...)() })
	if got := cacheNames(inf); !slices.Equal(got, want) {
		t.Fatalf("cache: %v, want %v", got, want)
	}
	if r, ok := inf.Get("a", "dp-3"); !ok || r.Meta.GetVersion() != dp3.Meta.GetVersion() {
		t.Fatalf("Get a/dp-3: %v %v", r, ok)
	}
	if _, ok := inf.Get("b", "dp-2"); ok {
		t.Fatal("deleted resource still in the cache")
	}
	if got := inf.List("b"); len(got) != 0 {
		t.Fatalf("List(b) = %d items", len(got))
	}
	if got := inf.List("a"); len(got) != 2 || inf.Len() != 2 {
		t.Fatalf("List(a) = %d, Len = %d", len(got), inf.Len())
	}
	if len(*froms) != 1 || (*froms)[0] != 0 {
		t.Fatalf("watches opened from %v, want one from revision 0", *froms)
	}
	if inf.Revision() < dp3.Meta.GetVersion() {
		t.Fatalf("revision %d is older than the last write %d", inf.Revision(), dp3.Meta.GetVersion())
	}
}

func TestInformerResumesAndRelistsAfterCompaction(t *testing.T) {
	st, cli := newInformerStore(t)
	ctx := infCtx(t)
	for _, r := range []*resource.Resource{testMesh("m"), testDP("m", "dp-1")} {
		if _, err := st.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	inf := NewInformers(st).For(resource.DataplaneType)
	froms := countSource(inf)
	rec := newRecorder()
	sctx, stop := context.WithCancel(ctx)
	sub := inf.Subscribe(sctx, "rec", rec.handle)
	waitUntil(t, "first view", rec.has("m/dp-1"))
	stop()
	<-sub.Done() // the last subscription out stops the watch
	seen := inf.Revision()

	// Changes while nobody watches are caught up from the last revision.
	if _, err := st.Create(ctx, testDP("m", "dp-2")); err != nil {
		t.Fatal(err)
	}
	rec2 := newRecorder()
	sctx, stop = context.WithCancel(ctx)
	sub = inf.Subscribe(sctx, "rec2", rec2.handle)
	waitUntil(t, "resumed view", rec2.has("m/dp-1", "m/dp-2"))
	stop()
	<-sub.Done()
	if got := *froms; len(got) != 2 || got[1] != seen {
		t.Fatalf("watches opened from %v, want the second from %d", got, seen)
	}

	// Compact past the informer's revision: it re-lists, and the
	// delete it could not see is not lost.
	if err := st.Delete(ctx, resource.DataplaneType, "m", "dp-1", 0); err != nil {
		t.Fatal(err)
	}
	last, err := st.Create(ctx, testDP("m", "dp-3"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, last.Meta.GetVersion()); err != nil {
		t.Fatal(err)
	}
	rec3 := newRecorder()
	inf.Subscribe(ctx, "rec3", rec3.handle)
	waitUntil(t, "view after compaction", rec3.has("m/dp-2", "m/dp-3"))
	waitUntil(t, "cache after compaction", func() bool { return slices.Equal(cacheNames(inf), []string{"m/dp-2", "m/dp-3"}) })
	rec3.mu.Lock()
	sawSync := false
	for _, b := range rec3.batches[1:] {
		sawSync = sawSync || b.Events[0].Kind == EventSync
	}
	rec3.mu.Unlock()
	if !sawSync {
		t.Fatal("no re-list (EventSync) was delivered after compaction")
	}
}

func TestInformerHandlerErrorResyncsOnlyThatHandler(t *testing.T) {
	st, _ := newInformerStore(t)
	ctx := infCtx(t)
	if _, err := st.Create(ctx, testMesh("m")); err != nil {
		t.Fatal(err)
	}
	inf := NewInformers(st, InformerOptions{RetryBackoff: 10 * time.Millisecond}).For(resource.DataplaneType)
	good, bad := newRecorder(), newRecorder()
	bad.fail = 2
	inf.Subscribe(ctx, "good", good.handle)
	inf.Subscribe(ctx, "bad", bad.handle)
	<-inf.Synced()
	if _, err := st.Create(ctx, testDP("m", "dp-1")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "good handler's view", good.has("m/dp-1"))
	waitUntil(t, "failing handler to recover", bad.has("m/dp-1"))
	bad.mu.Lock()
	defer bad.mu.Unlock()
	if bad.calls < 3 {
		t.Fatalf("failing handler called %d times, want at least 3", bad.calls)
	}
	// After each failure (the first two calls) the handler is given the
	// whole state, not a diff.
	for _, b := range bad.batches[1:3] {
		if b.Events[0].Kind != EventSync {
			t.Fatalf("retry delivered %v, want SYNC", b.Events[0].Kind)
		}
	}
	good.mu.Lock()
	defer good.mu.Unlock()
	for _, b := range good.batches[1:] {
		if b.Events[0].Kind == EventSync {
			t.Fatal("a healthy handler was re-synced because another one failed")
		}
	}
}

func TestInformerPanickingHandlerIsRetried(t *testing.T) {
	fi := NewFakeInformer(resource.DataplaneType, InformerOptions{RetryBackoff: time.Millisecond})
	ctx := infCtx(t)
	var calls atomic.Int32
	rec := newRecorder()
	fi.Subscribe(ctx, "panics-once", func(b Batch) error {
		if calls.Add(1) == 1 {
			panic("boom")
		}
		return rec.handle(b)
	})
	fi.Sync(testDP("m", "a"))
	waitUntil(t, "handler retried after a panic", rec.has("m/a"))
}

func TestInformerContextCancelLeaksNoGoroutine(t *testing.T) {
	st, _ := newInformerStore(t)
	ctx := infCtx(t)
	if _, err := st.Create(ctx, testMesh("m")); err != nil {
		t.Fatal(err)
	}
	// Warm the client's connection so its goroutines are not counted.
	if _, err := st.Revision(ctx); err != nil {
		t.Fatal(err)
	}
	opts := goleak.IgnoreCurrent()
	f := NewInformers(st)
	sctx, stop := context.WithCancel(ctx)
	var subs []*Subscription
	for _, typ := range []*resource.Type{resource.DataplaneType, resource.MeshType} {
		for n := 0; n < 3; n++ {
			subs = append(subs, f.For(typ).Subscribe(sctx, fmt.Sprint("c", n), newRecorder().handle))
		}
	}
	<-f.For(resource.DataplaneType).Synced()
	<-f.For(resource.MeshType).Synced()
	if _, err := st.Create(ctx, testDP("m", "dp")); err != nil {
		t.Fatal(err)
	}
	stop()
	for _, s := range subs {
		<-s.Done()
	}
	// What is checked is the informers' own goroutines. The etcd client's
	// watch stream is not theirs: the client tears it down asynchronously
	// after the last watcher's context ends, and under -race on a loaded
	// 2-core machine that took over 15 s (one per client and context
	// metadata, so it cannot pile up). Its goroutines, and the embedded
	// server's side of it, are ignored; ours are waited for with a deadline
	// rather than goleak's built-in half-second of retries.
	ignore := []goleak.Option{opts,
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/client/v3.(*watchGRPCStream).run"),
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/client/v3.(*watchGRPCStream).serveWatchClient"),
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/client/v3.(*watchGRPCStream).serveSubstream"),
		goleak.IgnoreTopFunction("google.golang.org/grpc.newClientStreamWithParams.func4"),
		// The stream's context, derived from the client's: its cancel
		// propagation goroutine ends with the stream.
		goleak.IgnoreTopFunction("context.(*cancelCtx).propagateCancel.func2"),
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/server/v3/etcdserver/api/v3rpc.(*watchServer).Watch"),
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/server/v3/etcdserver/api/v3rpc.(*serverWatchStream).sendLoop"),
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/server/v3/etcdserver/api/v3rpc.(*serverWatchStream).recvLoop"),
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := goleak.Find(ignore...)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines still running 15s after every subscription ended: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestInformerBatchesEventsThatArriveTogether(t *testing.T) {
	fi := NewFakeInformer(resource.DataplaneType)
	ctx := infCtx(t)
	fi.Sync()
	release := make(chan struct{})
	var mu sync.Mutex
	var sizes []int
	fi.Subscribe(ctx, "slow", func(b Batch) error {
		mu.Lock()
		sizes = append(sizes, len(b.Events))
		first := len(sizes) == 1
		mu.Unlock()
		if first {
			<-release
		}
		return nil
	})
	waitUntil(t, "first call", func() bool { mu.Lock(); defer mu.Unlock(); return len(sizes) == 1 })
	for n := 0; n < 100; n++ {
		fi.Put(testDP("m", fmt.Sprint("dp-", n)))
	}
	close(release)
	waitUntil(t, "the burst", func() bool { mu.Lock(); defer mu.Unlock(); return len(sizes) == 2 })
	mu.Lock()
	defer mu.Unlock()
	if sizes[1] != 100 {
		t.Fatalf("burst delivered as %v, want one batch of 100", sizes)
	}
}

func TestInformerSlowHandlerQueueIsBounded(t *testing.T) {
	fi := NewFakeInformer(resource.DataplaneType, InformerOptions{MaxPending: 10})
	ctx := infCtx(t)
	fi.Sync()
	release := make(chan struct{})
	rec := newRecorder()
	var calls atomic.Int32
	fi.Subscribe(ctx, "slow", func(b Batch) error {
		if calls.Add(1) == 1 {
			<-release
		}
		return rec.handle(b)
	})
	waitUntil(t, "first call", func() bool { return calls.Load() == 1 })
	var want []string
	for n := 0; n < 50; n++ {
		fi.Put(testDP("m", fmt.Sprintf("dp-%02d", n)))
		want = append(want, fmt.Sprintf("m/dp-%02d", n))
	}
	fi.Delete("m", "dp-00")
	want = want[1:]
	close(release)
	waitUntil(t, "the slow handler's view", rec.has(want...))
	rec.mu.Lock()
	defer rec.mu.Unlock()
	last := rec.batches[len(rec.batches)-1]
	if len(last.Events) > 11 || last.Events[0].Kind != EventSync {
		t.Fatalf("overflowing queue delivered %d events starting with %v, want a SYNC", len(last.Events), last.Events[0].Kind)
	}
}

func TestFakeInformerReader(t *testing.T) {
	fi := NewFakeInformer(resource.MeshType)
	select {
	case <-fi.Synced():
		t.Fatal("synced before any Sync")
	default:
	}
	fi.Sync(testMesh("b"), testMesh("a"))
	<-fi.Synced()
	fi.Put(testMesh("c"))
	fi.Delete("", "b")
	if got := cacheNames(fi); !slices.Equal(got, []string{"/a", "/c"}) {
		t.Fatalf("List: %v", got)
	}
	if r, ok := fi.Get("", "c"); !ok || r.Meta.GetVersion() != fi.Revision()-1 {
		t.Fatalf("Get c: %v %v (revision %d)", r, ok, fi.Revision())
	}
	if fi.Len() != 2 {
		t.Fatalf("Len %d", fi.Len())
	}
}

func TestInformerOfSecretsHoldsNoSecret(t *testing.T) {
	st, _ := newInformerStore(t)
	ctx := infCtx(t)
	if _, err := st.Create(ctx, testMesh("m")); err != nil {
		t.Fatal(err)
	}
	secret := func(name string) *resource.Resource {
		return &resource.Resource{Meta: &meshv1.Meta{Type: "Secret", Mesh: "m", Name: name}, Spec: &meshv1.Secret{Data: []byte("hunter2")}}
	}
	if _, err := st.Create(ctx, secret("before")); err != nil {
		t.Fatal(err)
	}
	inf := NewInformers(st).For(resource.SecretType)
	var mu sync.Mutex
	var seen []*resource.Resource
	inf.Subscribe(ctx, "rec", func(b Batch) error {
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range b.Events {
			seen = append(seen, ev.Resources...)
			if ev.Resource != nil {
				seen = append(seen, ev.Resource)
			}
		}
		return nil
	})
	if _, err := st.Create(ctx, secret("after")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "both secrets", func() bool { return inf.Len() == 2 })
	waitUntil(t, "both secrets delivered", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) >= 2 })
	mu.Lock()
	defer mu.Unlock()
	for _, r := range append(seen, inf.List("")...) {
		if r.Meta.GetVersion() == 0 {
			t.Fatalf("%s lost its metadata", r.Meta.GetName())
		}
		if d := r.Spec.(*meshv1.Secret).GetData(); len(d) != 0 {
			t.Fatalf("secret %s is held in the informer: %q", r.Meta.GetName(), d)
		}
	}
}

func TestInformerKeepSensitiveHoldsTheSecret(t *testing.T) {
	fi := NewFakeInformer(resource.SecretType, InformerOptions{KeepSensitive: true})
	fi.Sync(&resource.Resource{Meta: &meshv1.Meta{Type: "Secret", Mesh: "m", Name: "s"}, Spec: &meshv1.Secret{Data: []byte("x")}})
	if r, ok := fi.Get("m", "s"); !ok || string(r.Spec.(*meshv1.Secret).GetData()) != "x" {
		t.Fatalf("KeepSensitive informer lost the secret: %v", r)
	}
	plain := NewFakeInformer(resource.SecretType)
	plain.Sync(&resource.Resource{Meta: &meshv1.Meta{Type: "Secret", Mesh: "m", Name: "s"}, Spec: &meshv1.Secret{Data: []byte("x")}})
	if r, _ := plain.Get("m", "s"); len(r.Spec.(*meshv1.Secret).GetData()) != 0 {
		t.Fatal("default informer holds the secret")
	}
}
