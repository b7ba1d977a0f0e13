package telemetry

import (
	"context"
	"encoding/hex"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// TraceparentLen is the length of a W3C traceparent of version 00
// ("00-<32 hex trace id>-<16 hex span id>-<2 hex flags>").
const TraceparentLen = 55

// MaxTraceparent caps a traceparent read from a peer or from etcd; a
// longer one is ignored before it is parsed.
const MaxTraceparent = 128

// Traceparent is the W3C traceparent of ctx's span, or "" when ctx has no
// valid span context. It is built by hand (no carrier map): store writes
// call it on every write.
func Traceparent(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	var b [TraceparentLen]byte
	tid, sid := sc.TraceID(), sc.SpanID()
	b[0], b[1], b[2] = '0', '0', '-'
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{byte(sc.TraceFlags())})
	return string(b[:])
}

// SpanFromTraceparent parses a traceparent (from a peer, or stored in etcd
// by another process): the remote span context it names, or an invalid one
// for an empty, oversized or malformed value.
func SpanFromTraceparent(tp string) trace.SpanContext {
	if tp == "" || len(tp) > MaxTraceparent {
		return trace.SpanContext{}
	}
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp})
	return trace.SpanContextFromContext(ctx)
}
