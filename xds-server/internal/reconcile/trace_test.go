package reconcile

import (
	"context"
	"io"
	"log/slog"
	"testing"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/weftmesh/weft/pkg/etcdtest"
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
	r := New(nil, cache, noCerts{}, &counter{gen: map[string]int{}}, log)
	r.SetTracerProvider(tp)
	m := model.New(st, log, r.OnChanges)
	r.SetModel(m)
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
