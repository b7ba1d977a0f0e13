package protocol

import (
	"context"

	"github.com/weftmesh/weft/pkg/telemetry"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Each response is traced on its own, so a change is followed across the
// link: the sender's zonesync.Send span (one per DeltaResponse; the stream
// itself gets no span) is a child of the store write that made the first
// change it carries (the traceparent the store recorded with the value) and
// links to the writes of the others, or a new root when none was traced.
// It travels as a W3C traceparent in the response, and the receiver's
// zonesync.Apply span, whose children are the store writes, is its child
// (and links to it). So a write on one side, the sync and the write on the
// other are one trace. Both directions work alike.

const (
	sendSpan  = "zonesync.Send"
	applySpan = "zonesync.Apply"
	// MaxTraceparent caps the traceparent a peer may send (a valid one is
	// 55 bytes); a longer one is ignored before it is parsed.
	MaxTraceparent = telemetry.MaxTraceparent
	// maxSendLinks caps the links of a zonesync.Send span to the writes of
	// the changes it carries after the first.
	maxSendLinks = 32
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
	return telemetry.SpanFromTraceparent(traceparent)
}

// sendParent is the context and links of a zonesync.Send span for changes
// whose originating writes have traceparents origins (in send order, ""
// for untraced ones): a child of the first write, linked to the others
// (at most maxSendLinks), or a new root.
func sendParent(origins []string) (context.Context, []trace.SpanStartOption) {
	ctx := context.Background()
	var parent trace.SpanContext
	var links []trace.Link
	for _, tp := range origins {
		sc := telemetry.SpanFromTraceparent(tp)
		switch {
		case !sc.IsValid() || sc.Equal(parent):
		case !parent.IsValid():
			parent = sc
		case len(links) < maxSendLinks:
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	if !parent.IsValid() {
		return ctx, []trace.SpanStartOption{trace.WithNewRoot()}
	}
	return trace.ContextWithRemoteSpanContext(ctx, parent), []trace.SpanStartOption{trace.WithLinks(links...)}
}

// applyParent makes the applying span a child of the sender's span, when
// known (a malformed traceparent is ignored: a new root).
func applyParent(ctx context.Context, traceparent string) (context.Context, []trace.SpanStartOption) {
	if sc := RemoteSpan(traceparent); sc.IsValid() {
		return trace.ContextWithRemoteSpanContext(ctx, sc), nil
	}
	return ctx, []trace.SpanStartOption{trace.WithNewRoot()}
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
