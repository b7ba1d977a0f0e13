package telemetry

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Traceparent is what the W3C propagator writes, and SpanFromTraceparent
// reads it back.
func TestTraceparentMatchesPropagator(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("t").Start(context.Background(), "s")
	defer span.End()
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	got := Traceparent(ctx)
	if got != c["traceparent"] || len(got) != TraceparentLen {
		t.Fatalf("Traceparent = %q, propagator %q", got, c["traceparent"])
	}
	sc := SpanFromTraceparent(got)
	if !sc.IsRemote() || sc.TraceID() != span.SpanContext().TraceID() || sc.SpanID() != span.SpanContext().SpanID() {
		t.Fatalf("SpanFromTraceparent(%q) = %v", got, sc)
	}
	if Traceparent(context.Background()) != "" {
		t.Fatal("a context without a span has a traceparent")
	}
	for _, bad := range []string{"", "00-zz", strings.Repeat("0", MaxTraceparent+1), "00-00000000000000000000000000000000-0000000000000000-01"} {
		if SpanFromTraceparent(bad).IsValid() {
			t.Errorf("SpanFromTraceparent(%.40q) is valid", bad)
		}
	}
}

func BenchmarkTraceparent(b *testing.B) {
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("t").Start(context.Background(), "s")
	defer span.End()
	b.ReportAllocs()
	for b.Loop() {
		_ = Traceparent(ctx)
	}
}

// FuzzSpanFromTraceparent: any traceparent (from a peer, or read from etcd)
// parses without panicking, an oversized one is refused, and an accepted
// one formats back to a traceparent naming the same span.
func FuzzSpanFromTraceparent(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
	f.Add("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("")
	f.Fuzz(func(t *testing.T, tp string) {
		sc := SpanFromTraceparent(tp)
		if !sc.IsValid() {
			return
		}
		if len(tp) > MaxTraceparent {
			t.Fatalf("oversized traceparent of %d bytes accepted", len(tp))
		}
		again := SpanFromTraceparent(Traceparent(trace.ContextWithSpanContext(context.Background(), sc)))
		if again.TraceID() != sc.TraceID() || again.SpanID() != sc.SpanID() || again.TraceFlags() != sc.TraceFlags() {
			t.Fatalf("%q: round trip %v != %v", tp, again, sc)
		}
	})
}
