package ads

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/pkg/grpcx"
	"github.com/weftmesh/weft/xds-server/internal/generator"
	"github.com/weftmesh/weft/xds-server/internal/insight"
	"github.com/weftmesh/weft/xds-server/internal/reconcile"
)

// Metrics are the stream measurements.
type Metrics interface {
	Acked(typeURL string, latencySeconds float64)
	Nacked(typeURL string)
	// Sent counts a response written to a stream.
	Sent(typeURL string)
}

// Callbacks implements go-control-plane's server callbacks.
type Callbacks struct {
	rec     *reconcile.Reconciler
	ins     *insight.Recorder
	metrics Metrics
	log     *slog.Logger
	tracer  trace.Tracer

	// MaxStreamsPerProxy caps concurrent streams of one node id (0: no cap).
	MaxStreamsPerProxy int
	perNode            streamCounts

	mu      sync.Mutex
	streams map[string]Identity
	nacks   map[string]int // consecutive NACKs per stream
	// deltaSent is, per delta stream, the last response of each type
	// (generator.TypeURLs order): a delta ACK names only the nonce, and
	// the response's system_version_info is the type's snapshot version
	// that the reconciler waits for.
	deltaSent map[string]*deltaStream
}

// deltaStream is what a delta stream's ACKs and first requests are matched
// with.
type deltaStream struct {
	sent [typeCount]sentVersion
	// requested has bit i set once a request of type i arrived: only the
	// first carries initial_resource_versions that count.
	requested uint8
}

const typeCount = 5

type sentVersion struct{ nonce, version string }

func typeIndex(typeURL string) int {
	for i, t := range generator.TypeURLs {
		if t == typeURL {
			return i
		}
	}
	return -1
}

// nackBackoff throttles a stream that keeps rejecting: go-control-plane
// answers a NACK at once with the same snapshot, which would otherwise spin.
func nackBackoff(n int) time.Duration {
	if n > 7 {
		n = 7
	}
	return (50 * time.Millisecond) << n
}

// NewCallbacks wires streams to the reconciler and insights.
func NewCallbacks(rec *reconcile.Reconciler, ins *insight.Recorder, m Metrics, log *slog.Logger) *Callbacks {
	return &Callbacks{rec: rec, ins: ins, metrics: m, log: log, streams: map[string]Identity{}, nacks: map[string]int{},
		tracer: noop.NewTracerProvider().Tracer("")}
}

// SetTracerProvider makes the stream spans with tp, the service's own
// provider; call it before serving.
func (c *Callbacks) SetTracerProvider(tp trace.TracerProvider) {
	c.tracer = tp.Tracer("github.com/weftmesh/weft/xds-server")
}

func sotwKey(id int64) string  { return fmt.Sprintf("s%d", id) }
func deltaKey(id int64) string { return fmt.Sprintf("d%d", id) }

func (c *Callbacks) open(ctx context.Context, key string) error {
	id, ok := IdentityFrom(ctx)
	if !ok {
		// Only reachable if the server was built without StreamAuth.
		return status.Error(codes.PermissionDenied, "stream not authenticated")
	}
	if err := c.perNode.acquire(id.NodeID, c.MaxStreamsPerProxy); err != nil {
		return err
	}
	c.mu.Lock()
	c.streams[key] = id
	c.mu.Unlock()
	// A short span for the stream's start (in the proxy's trace when it
	// sent one); the reconciler's spans for this proxy link to it, instead
	// of one span open for the life of the stream.
	_, sp := c.tracer.Start(grpcx.IncomingTrace(ctx), "xds.StreamOpen", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("weft.node", id.NodeID), attribute.String("weft.proxy_kind", id.Kind), attribute.String("weft.stream", key)))
	sp.End()
	c.rec.Connect(id.NodeID, id.Mesh, id.Name, id.Kind, &reconcile.Credential{Tags: id.Tags, Token: id.Token, Claims: id.Claims})
	c.rec.Link(id.NodeID, sp.SpanContext())
	if id.Mesh != "" {
		// DataplaneInsights are per mesh; a zone ingress (no mesh) has
		// none: its ZoneIngress and ingress-manager's metrics say how it is.
		c.ins.Opened(key, id.Mesh, id.Name, id.Kind)
	}
	c.log.Debug("proxy connected", "node", id.NodeID, "kind", id.Kind, "stream", key)
	return nil
}

func (c *Callbacks) close(key string) {
	c.mu.Lock()
	id, ok := c.streams[key]
	delete(c.streams, key)
	delete(c.nacks, key)
	delete(c.deltaSent, key)
	c.mu.Unlock()
	if !ok {
		return
	}
	c.perNode.release(id.NodeID)
	c.rec.Disconnect(id.NodeID)
	c.ins.Closed(key)
	c.log.Debug("proxy disconnected", "node", id.NodeID, "stream", key)
}

func (c *Callbacks) identity(key string) (Identity, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.streams[key]
	return id, ok
}

func (c *Callbacks) request(key, typeURL, nonce, version string, errDetail *status.Status) {
	if nonce == "" {
		// A subscription, not a reply to a response. On a new stream its
		// version is what the proxy already holds (it reconnected): when
		// this replica computes the same, nothing is sent, so record it
		// here or the push would wait for an ACK forever.
		if version != "" && errDetail == nil {
			if id, ok := c.identity(key); ok {
				c.ins.Holds(key, typeURL, version)
				c.rec.Holds(id.NodeID, typeURL, version)
			}
		}
		return
	}
	id, ok := c.identity(key)
	if !ok {
		return
	}
	if errDetail != nil {
		detail := truncate(errDetail.Message(), MaxErrorDetailLength)
		c.metrics.Nacked(typeURL)
		c.ins.Nacked(key, typeURL, detail)
		c.mu.Lock()
		n := c.nacks[key]
		c.nacks[key] = n + 1
		c.mu.Unlock()
		if n == 0 {
			c.log.Warn("proxy rejected configuration", "node", id.NodeID, "type", typeURL, "err", detail)
		}
		// Runs on the stream's own goroutine: only this stream waits.
		time.Sleep(nackBackoff(n))
		return
	}
	c.mu.Lock()
	delete(c.nacks, key)
	c.mu.Unlock()
	c.ins.Acked(key, typeURL, version)
	if d, ok := c.rec.Acked(id.NodeID, typeURL, version); ok {
		c.metrics.Acked(typeURL, d.Seconds())
	}
}

func rpcStatus(s interface {
	GetCode() int32
	GetMessage() string
}) *status.Status {
	if s == nil || (s.GetCode() == 0 && s.GetMessage() == "") {
		return nil
	}
	return status.New(codes.Code(s.GetCode()), s.GetMessage())
}

// OnStreamOpen registers an authenticated SotW stream.
func (c *Callbacks) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	return c.open(ctx, sotwKey(id))
}

// OnStreamClosed unregisters it.
func (c *Callbacks) OnStreamClosed(id int64, _ *corev3.Node) { c.close(sotwKey(id)) }

// OnDeltaStreamOpen registers an authenticated delta stream.
func (c *Callbacks) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	return c.open(ctx, deltaKey(id))
}

// OnDeltaStreamClosed unregisters it.
func (c *Callbacks) OnDeltaStreamClosed(id int64, _ *corev3.Node) { c.close(deltaKey(id)) }

// OnStreamRequest accounts ACKs and NACKs; a request for a type not served
// here, or with oversized fields, ends the stream with InvalidArgument
// before anything of it is recorded.
func (c *Callbacks) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	if err := checkRequest(req.GetTypeUrl(), req.GetResponseNonce(), req.GetVersionInfo(), req.GetResourceNames()); err != nil {
		return err
	}
	var st *status.Status
	if req.GetErrorDetail() != nil {
		st = rpcStatus(req.GetErrorDetail())
	}
	c.request(sotwKey(id), req.GetTypeUrl(), req.GetResponseNonce(), req.GetVersionInfo(), st)
	if ident, ok := c.identity(sotwKey(id)); ok && ident.Kind == generator.KindGRPC {
		// A proxyless proxy gets only what it names; a new name is
		// generated before the request is answered.
		c.rec.Requested(context.Background(), ident.NodeID, req.GetTypeUrl(), req.GetResourceNames())
	}
	return nil
}

// OnStreamResponse records a response sent.
func (c *Callbacks) OnStreamResponse(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	c.ins.Sent(sotwKey(id), resp.GetTypeUrl(), resp.GetVersionInfo(), len(resp.GetResources()))
	c.metrics.Sent(resp.GetTypeUrl())
}

// OnStreamDeltaRequest accounts delta ACKs and NACKs.
func (c *Callbacks) OnStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	if err := checkRequest(req.GetTypeUrl(), req.GetResponseNonce(), "", req.GetResourceNamesSubscribe()); err != nil {
		return err
	}
	if err := checkDeltaRequest(req); err != nil {
		return err
	}
	var st *status.Status
	if req.GetErrorDetail() != nil {
		st = rpcStatus(req.GetErrorDetail())
	}
	c.deltaHolds(deltaKey(id), req)
	c.request(deltaKey(id), req.GetTypeUrl(), req.GetResponseNonce(), c.deltaVersion(deltaKey(id), req.GetTypeUrl(), req.GetResponseNonce()), st)
	if ident, ok := c.identity(deltaKey(id)); ok && ident.Kind == generator.KindGRPC {
		// Delta subscriptions are not tracked: everything.
		c.rec.RequestedAll(context.Background(), ident.NodeID)
	}
	return nil
}

// OnStreamDeltaResponse records a delta response sent.
func (c *Callbacks) OnStreamDeltaResponse(id int64, _ *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	key := deltaKey(id)
	c.ins.Sent(key, resp.GetTypeUrl(), resp.GetSystemVersionInfo(), len(resp.GetResources()))
	c.metrics.Sent(resp.GetTypeUrl())
	if i := typeIndex(resp.GetTypeUrl()); i >= 0 {
		c.mu.Lock()
		if ds := c.deltaStreamLocked(key); ds != nil {
			ds.sent[i] = sentVersion{nonce: resp.GetNonce(), version: resp.GetSystemVersionInfo()}
		}
		c.mu.Unlock()
	}
}

// deltaStreamLocked is key's delta stream state (nil: the stream closed).
func (c *Callbacks) deltaStreamLocked(key string) *deltaStream {
	if _, open := c.streams[key]; !open {
		return nil
	}
	if c.deltaSent == nil {
		c.deltaSent = map[string]*deltaStream{}
	}
	ds := c.deltaSent[key]
	if ds == nil {
		ds = &deltaStream{}
		c.deltaSent[key] = ds
	}
	return ds
}

// firstDeltaRequest reports whether this is the stream's first request of
// typeURL, and notes it.
func (c *Callbacks) firstDeltaRequest(key, typeURL string) bool {
	i := typeIndex(typeURL)
	if i < 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ds := c.deltaStreamLocked(key)
	if ds == nil || ds.requested&(1<<i) != 0 {
		return false
	}
	ds.requested |= 1 << i
	return true
}

// deltaHolds handles a delta stream's first request of a type: when its
// initial_resource_versions are what the proxy's snapshot would send, the
// cache sends nothing, and the reconciler and the insight record the
// type's version as held (reconcile.HoldsResources), as request does for a
// SotW stream's first version_info.
func (c *Callbacks) deltaHolds(key string, req *discoveryv3.DeltaDiscoveryRequest) {
	if !c.firstDeltaRequest(key, req.GetTypeUrl()) || len(req.GetInitialResourceVersions()) == 0 || req.GetErrorDetail() != nil {
		return
	}
	id, ok := c.identity(key)
	if !ok {
		return
	}
	typeURL := req.GetTypeUrl()
	c.rec.HoldsResources(id.NodeID, typeURL, req.GetInitialResourceVersions(), req.GetResourceNamesSubscribe(), func(version string) {
		c.ins.Holds(key, typeURL, version)
	})
}

// deltaVersion is the version of the delta response a request's nonce
// answers ("": not the last one of its type on this stream).
func (c *Callbacks) deltaVersion(key, typeURL, nonce string) string {
	i := typeIndex(typeURL)
	if nonce == "" || i < 0 {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ds := c.deltaSent[key]; ds != nil && ds.sent[i].nonce == nonce {
		return ds.sent[i].version
	}
	return ""
}

// OnFetchRequest refuses REST/unary fetches: they carry no stream identity.
func (c *Callbacks) OnFetchRequest(context.Context, *discoveryv3.DiscoveryRequest) error {
	return status.Error(codes.Unimplemented, "fetch is not supported: use ADS")
}

// OnFetchResponse is unused.
func (c *Callbacks) OnFetchResponse(*discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {}
