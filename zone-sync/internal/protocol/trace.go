package protocol

import (
	"context"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Each response is traced on its own, so a change is followed across the
// link: the sender's zonesync.Send span (one per DeltaResponse, a new root:
// the stream itself gets no span) travels as a W3C traceparent in the
// response, and the receiver's zonesync.Apply span, whose children are the
// store writes, links to it. Both directions work alike.

const (
	sendSpan  = "zonesync.Send"
	applySpan = "zonesync.Apply"
	// MaxTraceparent caps the traceparent a peer may send (a valid one is
	// 55 bytes); a longer one is ignored before it is parsed.
	MaxTraceparent = 128
)

var traceContext = propagation.TraceContext{}

func tracerOf(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return tp.Tracer("github.com/weftmesh/weft/zone-sync/internal/protocol")
}

// traceparentOf is the W3C traceparent of ctx's span ("" when it is not
// sampled or recorded by a real provider).
func traceparentOf(ctx context.Context) string {
	c := propagation.MapCarrier{}
	traceContext.Inject(ctx, c)
	return c["traceparent"]
}

// RemoteSpan parses a peer's traceparent: the span context to link to, or
// an invalid one for an empty, oversized or malformed value.
func RemoteSpan(traceparent string) trace.SpanContext {
	if traceparent == "" || len(traceparent) > MaxTraceparent {
		return trace.SpanContext{}
	}
	ctx := traceContext.Extract(context.Background(), propagation.MapCarrier{"traceparent": traceparent})
	return trace.SpanContextFromContext(ctx)
}

// applyLinks links the applying span to the sender's span, when known.
func applyLinks(traceparent string) []trace.Link {
	if sc := RemoteSpan(traceparent); sc.IsValid() {
		return []trace.Link{{SpanContext: sc}}
	}
	return nil
}

func endSpan(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
