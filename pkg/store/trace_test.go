package store_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/telemetry"
)

// TestSpansUseTheGivenProviderAndACancelledCallerIsNotAnError: store spans
// go to the service's provider; an operation whose caller went away is
// not an ERROR span, a real failure is.
func TestSpansUseTheGivenProviderAndACancelledCallerIsNotAnError(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	st := store.New(etcdtest.Client(t, nil), store.WithTracerProvider(tp))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := st.Get(ctx, resource.MeshType, "", "m"); err == nil {
		t.Fatal("a cancelled Get succeeded")
	}
	// A Secret without a keyring fails: a real error.
	sec := resource.New(resource.SecretType, "m", "s")
	if _, err := st.Create(context.Background(), sec); err == nil {
		t.Fatal("a sealed type was stored without a keyring")
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	if spans[0].Name() != "store.Get" || spans[0].Status().Code == codes.Error {
		t.Errorf("cancelled %s: status %v", spans[0].Name(), spans[0].Status())
	}
	if spans[1].Name() != "store.Create" || spans[1].Status().Code != codes.Error {
		t.Errorf("failed %s: status %v, want ERROR", spans[1].Name(), spans[1].Status())
	}
}

// TestWriteTraceparentArrivesOnTheWatchEvent: a write records the
// traceparent of its store span; the watch event, a Get and an informer
// carry it (in memory, outside Meta), so a watcher continues the writer's
// trace. An untraced write records none.
func TestWriteTraceparentArrivesOnTheWatchEvent(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	cli := etcdtest.Client(t, nil)
	st := store.New(cli, store.WithTracerProvider(tp))
	plain := store.New(cli) // the global (no-op) provider: no span
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if _, err := plain.Create(ctx, resource.New(resource.MeshType, "", "m")); err != nil {
		t.Fatal(err)
	}
	ch, err := st.Watch(ctx, resource.TrafficPermissionType, "m", 0)
	if err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, ch); ev.Kind != store.EventSync {
		t.Fatalf("first event %v", ev.Kind)
	}
	inf := store.NewInformers(st).For(resource.TrafficPermissionType)
	inf.Subscribe(ctx, "test", func(store.Batch) error { return nil })

	wctx, parent := tp.Tracer("test").Start(ctx, "PUT")
	if _, err := st.Create(wctx, resource.New(resource.TrafficPermissionType, "m", "tp")); err != nil {
		t.Fatal(err)
	}
	parent.End()
	var create sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "store.Create" {
			create = s
		}
	}
	if create == nil || create.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Fatalf("no store.Create span under the caller's span")
	}
	ev := nextEvent(t, ch)
	if ev.Kind != store.EventPut {
		t.Fatalf("event %v", ev.Kind)
	}
	sc := telemetry.SpanFromTraceparent(ev.Resource.Traceparent)
	if sc.TraceID() != create.SpanContext().TraceID() || sc.SpanID() != create.SpanContext().SpanID() {
		t.Fatalf("event traceparent %q, want the store.Create span %v", ev.Resource.Traceparent, create.SpanContext())
	}
	got, err := plain.Get(ctx, resource.TrafficPermissionType, "m", "tp")
	if err != nil || got.Traceparent != ev.Resource.Traceparent {
		t.Fatalf("Get: %v, traceparent %q", err, got)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if r, ok := inf.Get("m", "tp"); ok && r.Traceparent == ev.Resource.Traceparent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the informer never held the write's traceparent")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// An untraced update records no traceparent (not the previous one).
	if _, err := plain.Update(ctx, resource.New(resource.TrafficPermissionType, "m", "tp")); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, ch); ev.Kind != store.EventPut || ev.Resource.Traceparent != "" {
		t.Fatalf("untraced update: %v traceparent %q", ev.Kind, ev.Resource.Traceparent)
	}
}

func nextEvent(t *testing.T, ch <-chan store.Event) store.Event {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(30 * time.Second):
		t.Fatal("no watch event within 30s")
	}
	return store.Event{}
}
