package protocol

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	syncv1 "github.com/weftmesh/weft/proto/gen/go/weft/sync/v1"
)

// accept takes every incoming resource as it is.
type accept struct{}

func (accept) InitialVersions(context.Context, *resource.Type) (map[string]string, error) {
	return nil, nil
}
func (accept) Local(in Incoming) (*resource.Resource, error) { return in.Resource.Clone(), nil }
func (accept) LocalName(t *resource.Type, w string) (string, string, error) {
	return SplitName(t, w)
}
func (accept) FromPeer(*resource.Resource) bool { return true }

// Each change sent over the link is traced per response, in the trace of
// the write that made it: the sender's zonesync.Send span is a child of the
// originating store write (another process, as api-server is), the
// receiver's zonesync.Apply span is a child of (and links to) the Send
// span, and the receiver's store write is a child of the applying span.
// Sender, receiver and writer have their own tracer providers, as separate
// processes do; both directions (global to zone, zone to global) run the
// same code.
func TestApplySpanLinksToTheSendersSpan(t *testing.T) {
	for _, dir := range []string{Down, Up} {
		t.Run(dir, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			sendRec, recvRec := tracetest.NewSpanRecorder(), tracetest.NewSpanRecorder()
			sendTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sendRec))
			recvTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recvRec))
			defer func() { _ = sendTP.Shutdown(context.Background()); _ = recvTP.Shutdown(context.Background()) }()
			writeRec := tracetest.NewSpanRecorder()
			writeTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(writeRec))
			defer func() { _ = writeTP.Shutdown(context.Background()) }()
			srcCli := etcdtest.Client(t, nil)
			src := store.New(srcCli)
			dst := store.New(etcdtest.Client(t, nil), store.WithTracerProvider(recvTP))
			wctx, put := writeTP.Tracer("test").Start(ctx, "PUT")
			if _, err := store.New(srcCli, store.WithTracerProvider(writeTP)).Create(wctx, dataplane("default", "web-1"), store.WithoutMeshCheck()); err != nil {
				t.Fatal(err)
			}
			put.End()
			cache := NewCache(src, []*resource.Type{resource.DataplaneType}, log)
			go func() { _ = cache.Run(ctx) }()
			m := NewMetrics(nil)
			ab, ba := make(chan *syncv1.SyncMessage, 16), make(chan *syncv1.SyncMessage, 16)
			sender := NewSession(SessionConfig{Peer: "z", Log: log, Metrics: m, Store: src, Cache: cache, TracerProvider: sendTP,
				Serve: []*resource.Type{resource.DataplaneType}, SendDirection: dir})
			receiver := NewSession(SessionConfig{Peer: "z", Log: log, Metrics: m, Store: dst, TracerProvider: recvTP,
				Receive: []*resource.Type{resource.DataplaneType}, Policy: accept{}, RecvDirection: dir})
			go func() { _ = sender.Run(ctx, &pipe{in: ba, out: ab, ctx: ctx}) }()
			go func() { _ = receiver.Run(ctx, &pipe{in: ab, out: ba, ctx: ctx}) }()

			find := func(rec *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
				for _, s := range rec.Ended() {
					if s.Name() == name {
						return s
					}
				}
				return nil
			}
			deadline := time.Now().Add(30 * time.Second)
			for find(recvRec, applySpan) == nil || find(sendRec, sendSpan) == nil {
				if time.Now().After(deadline) {
					t.Fatalf("no %s/%s spans: sent %d, received %d", sendSpan, applySpan, len(sendRec.Ended()), len(recvRec.Ended()))
				}
				time.Sleep(10 * time.Millisecond)
			}
			send, apply := find(sendRec, sendSpan), find(recvRec, applySpan)
			if len(apply.Links()) != 1 || apply.Links()[0].SpanContext.SpanID() != send.SpanContext().SpanID() ||
				apply.Links()[0].SpanContext.TraceID() != send.SpanContext().TraceID() {
				t.Fatalf("apply links %v, want one link to the send span %v", apply.Links(), send.SpanContext())
			}
			origin := find(writeRec, "store.Create")
			if send.Parent().SpanID() != origin.SpanContext().SpanID() || send.SpanContext().TraceID() != put.SpanContext().TraceID() {
				t.Errorf("send span's parent %v, want the originating store.Create %v", send.Parent(), origin.SpanContext())
			}
			if apply.Parent().SpanID() != send.SpanContext().SpanID() || apply.SpanContext().TraceID() != put.SpanContext().TraceID() {
				t.Errorf("apply span's parent %v, want the send span %v", apply.Parent(), send.SpanContext())
			}
			if apply.SpanKind() != trace.SpanKindConsumer || send.SpanKind() != trace.SpanKindProducer {
				t.Errorf("kinds: send %v, apply %v", send.SpanKind(), apply.SpanKind())
			}
			var write sdktrace.ReadOnlySpan
			for _, s := range recvRec.Ended() {
				if strings.HasPrefix(s.Name(), "store.") && s.Parent().SpanID() == apply.SpanContext().SpanID() {
					write = s
				}
			}
			if write == nil {
				t.Fatalf("no store write under the apply span; receiver spans: %v", names(recvRec.Ended()))
			}
			if write.SpanContext().TraceID() != put.SpanContext().TraceID() {
				t.Error("the receiver's store write is not in the originating write's trace")
			}
			r, err := dst.Get(ctx, resource.DataplaneType, "default", "web-1")
			if err != nil || r.Spec.(*meshv1.Dataplane).GetNetworking().GetAddress() != "10.0.0.1" {
				t.Fatalf("not applied: %v %v", r, err)
			}
		})
	}
}

// A Send span is a child of the first traced change's write and links to
// the others (deduplicated, bounded); with none traced it is a new root.
func TestSendParentIsTheFirstOriginatingWrite(t *testing.T) {
	a := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	b := "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b8-01"
	ctx, opts := sendParent([]string{"", "garbage", a, a, b})
	parent := trace.SpanContextFromContext(ctx)
	if parent.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || !parent.IsRemote() {
		t.Fatalf("parent %v", parent)
	}
	cfg := trace.NewSpanStartConfig(opts...)
	if cfg.NewRoot() || len(cfg.Links()) != 1 || cfg.Links()[0].SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4737" {
		t.Fatalf("new root %v, links %v", cfg.NewRoot(), cfg.Links())
	}
	many := []string{a}
	for i := range 100 {
		many = append(many, fmt.Sprintf("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba9%04x-01", i+1))
	}
	_, opts = sendParent(many)
	cfg = trace.NewSpanStartConfig(opts...)
	if n := len(cfg.Links()); n != maxSendLinks {
		t.Errorf("%d links for 100 other writes, want %d", n, maxSendLinks)
	}
	ctx, opts = sendParent([]string{"", ""})
	cfg = trace.NewSpanStartConfig(opts...)
	if trace.SpanContextFromContext(ctx).IsValid() || !cfg.NewRoot() {
		t.Error("untraced changes: want a new root")
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

// A traceparent from the peer is only a link: an empty, oversized or
// malformed one gives none and changes nothing else.
func TestRemoteSpanRejectsBadTraceparents(t *testing.T) {
	good := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if sc := RemoteSpan(good); !sc.IsValid() || !sc.IsRemote() || sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("RemoteSpan(%q) = %v", good, sc)
	}
	for _, bad := range []string{"", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		good + strings.Repeat("-x", MaxTraceparent), "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"} {
		if sc := RemoteSpan(bad); sc.IsValid() {
			t.Errorf("RemoteSpan(%.40q) = %v, want invalid", bad, sc)
		}
		if l := applyLinks(bad); l != nil {
			t.Errorf("applyLinks(%.40q) = %v", bad, l)
		}
	}
}

// FuzzRemoteSpan: any traceparent a peer sends parses without panicking,
// and only a bounded one can give a span context.
func FuzzRemoteSpan(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("")
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra")
	f.Fuzz(func(t *testing.T, tp string) {
		sc := RemoteSpan(tp)
		if sc.IsValid() && len(tp) > MaxTraceparent {
			t.Fatalf("oversized traceparent %d bytes accepted", len(tp))
		}
	})
}
