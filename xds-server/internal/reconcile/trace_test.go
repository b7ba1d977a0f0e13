package reconcile

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/xds-server/internal/generator"
	"github.com/weftmesh/weft/xds-server/internal/model"
)

// TestReconcileSpansAreShortAndLinkedToTheStream: each reconcile of a
// proxy is its own short trace (xds.Reconcile with xds.Generate and
// xds.Push as children, all ended), linked to the span of the proxy's
// stream start, not a child of a span open for the stream's life.
func TestReconcileSpansAreShortAndLinkedToTheStream(t *testing.T) {
	st := store.New(etcdtest.Client(t, nil))
	apply(t, st, "type: Mesh\nname: m\n---"+dp("web-1", "web", ""))
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()

	cache := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := model.New(st, log)
	r := New(m, cache, noCerts{}, &counter{gen: map[string]int{}}, log)
	r.SetTracerProvider(tp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = m.Run(ctx) }()
	go r.Run(ctx)

	// The stream's start, as ads.Callbacks records it.
	_, streamSpan := tp.Tracer("test").Start(context.Background(), "xds.StreamOpen")
	streamSpan.End()
	r.Connect("m.web-1", "m", "web-1", generator.KindEnvoy, nil)
	r.Link("m.web-1", streamSpan.SpanContext())

	var reconcile, push sdktrace.ReadOnlySpan
	waitFor(t, "a reconcile with a push", func() bool {
		for _, s := range rec.Ended() {
			switch s.Name() {
			case "xds.Reconcile":
				reconcile = s
			case "xds.Push":
				push = s
			}
		}
		return reconcile != nil && push != nil
	})
	if reconcile.Parent().IsValid() {
		t.Errorf("xds.Reconcile has a parent %v: want a new root", reconcile.Parent())
	}
	if reconcile.SpanContext().TraceID() == streamSpan.SpanContext().TraceID() {
		t.Error("the reconcile is in the stream's trace: want its own, linked")
	}
	linked := false
	for _, l := range reconcile.Links() {
		linked = linked || l.SpanContext.SpanID() == streamSpan.SpanContext().SpanID()
	}
	if !linked {
		t.Errorf("xds.Reconcile links %v, not the stream span", reconcile.Links())
	}
	if push.Parent().SpanID() != reconcile.SpanContext().SpanID() {
		t.Error("xds.Push is not a child of xds.Reconcile")
	}
}

// TestReconcileContinuesTheTraceOfTheWriteThatCausedIt: a store write
// records its traceparent, and the reconcile of a proxy it affects is a
// child of that write's store span (still linked to the stream), so the
// write and the push are one trace.
func TestReconcileContinuesTheTraceOfTheWriteThatCausedIt(t *testing.T) {
	cli := etcdtest.Client(t, nil)
	st := store.New(cli)
	apply(t, st, "type: Mesh\nname: m\n---"+dp("web-1", "web", ""))
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	traced := store.New(cli, store.WithTracerProvider(tp)) // another process's store

	cache := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := model.New(st, log)
	r := New(m, cache, noCerts{}, &counter{gen: map[string]int{}}, log)
	r.SetTracerProvider(tp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = m.Run(ctx) }()
	go r.Run(ctx)
	_, streamSpan := tp.Tracer("test").Start(context.Background(), "xds.StreamOpen")
	streamSpan.End()
	r.Connect("m.web-1", "m", "web-1", generator.KindEnvoy, nil)
	r.Link("m.web-1", streamSpan.SpanContext())
	waitFor(t, "the first reconcile", func() bool {
		for _, s := range rec.Ended() {
			if s.Name() == "xds.Push" {
				return true
			}
		}
		return false
	})

	// The write, traced: the proxy's own Dataplane gets an outbound.
	wctx, put := tp.Tracer("test").Start(context.Background(), "PUT")
	rs, err := resource.UnmarshalAll(strings.NewReader(dp("web-1", "web", "backend")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := traced.Update(wctx, rs[0]); err != nil {
		t.Fatal(err)
	}
	put.End()
	var write, reconcile sdktrace.ReadOnlySpan
	waitFor(t, "a reconcile in the write's trace", func() bool {
		for _, s := range rec.Ended() {
			switch {
			case s.Name() == "store.Update":
				write = s
			case s.Name() == "xds.Reconcile" && s.SpanContext().TraceID() == put.SpanContext().TraceID():
				reconcile = s
			}
		}
		return write != nil && reconcile != nil
	})
	if reconcile.Parent().SpanID() != write.SpanContext().SpanID() {
		t.Errorf("xds.Reconcile's parent %v, want the store.Update span %v", reconcile.Parent().SpanID(), write.SpanContext().SpanID())
	}
	linked := false
	for _, l := range reconcile.Links() {
		linked = linked || l.SpanContext.SpanID() == streamSpan.SpanContext().SpanID()
	}
	if !linked {
		t.Error("xds.Reconcile of a change is no longer linked to the stream")
	}
}

// causeCerts records the cause each Acquire was given.
type causeCerts struct {
	noCerts
	mu     sync.Mutex
	causes []trace.SpanContext
}

func (c *causeCerts) Acquire(_, _, _ string, cause trace.SpanContext) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.causes = append(c.causes, cause)
}

func (c *causeCerts) first() (trace.SpanContext, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.causes) == 0 {
		return trace.SpanContext{}, false
	}
	return c.causes[0], true
}

// TestCertificateRequestIsInTheReconcileTrace: in an mTLS mesh the
// reconcile that first wants a proxy's certificate hands its own span to
// the certificate manager, so the signing request (and ca-service's spans
// for it) join the proxy's reconcile trace instead of a root of their own.
func TestCertificateRequestIsInTheReconcileTrace(t *testing.T) {
	st := store.New(etcdtest.Client(t, nil))
	apply(t, st, "type: Mesh\nname: m\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n---"+dp("web-1", "web", ""))
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()

	cache := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := model.New(st, log)
	certs := &causeCerts{}
	r := New(m, cache, certs, &counter{gen: map[string]int{}}, log)
	r.SetTracerProvider(tp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = m.Run(ctx) }()
	go r.Run(ctx)
	r.Connect("m.web-1", "m", "web-1", generator.KindEnvoy, nil)

	var cause trace.SpanContext
	waitFor(t, "a certificate request", func() bool {
		var ok bool
		cause, ok = certs.first()
		return ok
	})
	if !cause.IsValid() {
		t.Fatal("the certificate was requested without the reconcile's span")
	}
	var reconcile sdktrace.ReadOnlySpan
	waitFor(t, "the reconcile span that asked", func() bool {
		for _, s := range rec.Ended() {
			if s.Name() == "xds.Reconcile" && s.SpanContext().SpanID() == cause.SpanID() {
				reconcile = s
			}
		}
		return reconcile != nil
	})
}
