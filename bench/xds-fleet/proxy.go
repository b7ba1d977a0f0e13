package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weftmesh/weft/pkg/xdsnames"
)

// Resource types in the order an Envoy subscribes to them.
var typeOrder = []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType, resourcev3.SecretType}

// proxySpec is one simulated proxy: its Dataplane and how it connects.
type proxySpec struct {
	Mesh, Name, Token string
	// Kind is xdsnames.KindEnvoy (wildcard LDS/CDS, EDS/RDS by name) or
	// xdsnames.KindGRPC (named LDS for its listeners, then RDS, CDS, EDS
	// by what they reference, as grpc-go does).
	Kind string
	// GRPCListeners are the listener names a grpc-like proxy asks for.
	GRPCListeners []string
	// GRPCSecrets: a grpc-like proxy also asks for weft-dp's SDS secrets
	// (mTLS on); an Envoy-like one follows its clusters' and listeners'
	// SDS references whatever this says.
	GRPCSecrets bool
	// Delta: the proxy speaks delta xDS (DeltaAggregatedResources) as
	// Envoy does with api_type DELTA_GRPC (delta.go); Envoy-like only.
	Delta bool
	// Nack: in each scenario the proxy rejects the first response that
	// carries the change (the one that would satisfy the armed watch),
	// then ACKs as usual (-nack).
	Nack bool
}

// watch is a condition on one resource type that a scenario waits for:
// the time the proxy ACKed the first response satisfying it is recorded.
type watch struct {
	typeURL string
	ok      func(res []*anypb.Any) bool
}

// proxy is a simulated xDS client over one gRPC connection and one ADS
// stream (SotW, or delta with spec.Delta), ACKing every response like
// Envoy; with spec.Nack it NACKs the first response carrying a scenario's
// change.
type proxy struct {
	spec proxySpec
	conn *grpc.ClientConn

	mu sync.Mutex
	// names subscribed per type (nil: wildcard).
	names map[string][]string
	// secretsBy is the SDS names the last CDS and LDS responses refer to
	// (Envoy subscribes to their union).
	secretsBy map[string][]string
	// acked holds the last ACKed response per type. Over delta it is the
	// state the proxy holds after the ACKed response (every resource of
	// the type, sorted by name), so the watches, isFull and snapshot read
	// both protocols alike.
	acked map[string]*discoveryv3.DiscoveryResponse
	// held is, over delta, the resources the proxy holds per type, by
	// name, with the version the server gave each (delta.go).
	held map[string]map[string]*discoveryv3.Resource
	// full is set when every subscribed type has an ACKed response.
	full time.Time

	start, firstResp time.Time
	fullCh           chan struct{}
	fullOnce         sync.Once

	cancel  context.CancelFunc
	done    chan struct{}
	lastErr atomic.Value // string

	w       atomic.Pointer[watch]
	wDone   chan time.Time // one value when w is satisfied (buffered 1)
	acks    atomic.Int64
	streams atomic.Int64
	// nackNext: reject the next response that satisfies w (armed by
	// setWatch when spec.Nack); nacks counts the NACKs sent.
	nackNext atomic.Bool
	nacks    atomic.Int64

	// rs is the current stream's replica and configuration (replicas.go).
	rs replicaState
}

type dialOpts struct {
	addr string
	tls  *tls.Config
	// dialer, when set, opens each connection (the replicas' Service:
	// a random ready replica per connection).
	dialer func(ctx context.Context, addr string) (net.Conn, error)
}

func newProxy(spec proxySpec) *proxy {
	return &proxy{spec: spec, names: map[string][]string{}, acked: map[string]*discoveryv3.DiscoveryResponse{},
		held: map[string]map[string]*discoveryv3.Resource{}, fullCh: make(chan struct{})}
}

// run connects and serves the stream until ctx ends; on a stream error it
// reconnects (as proxies do, after a short backoff) and re-subscribes.
func (p *proxy) run(ctx context.Context, d dialOpts) error {
	p.start = time.Now()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(d.tls)),
		// Client-side memory only (the simulator's): small buffers.
		grpc.WithReadBufferSize(8 << 10), grpc.WithWriteBufferSize(8 << 10),
		// Envoy retries its xDS connection with a jittered backoff capped
		// at seconds, not gRPC's default two minutes.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 500 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
			MinConnectTimeout: 20 * time.Second})}
	if d.dialer != nil {
		opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			c, err := d.dialer(ctx, a)
			if err == nil {
				p.dialed(c.RemoteAddr().String())
			}
			return c, err
		}))
	}
	conn, err := grpc.NewClient(d.addr, opts...)
	if err != nil {
		return err
	}
	p.conn = conn
	defer conn.Close()
	// A stream that ends (the replica stopped, max connection age) is
	// re-established after Envoy's xDS retry backoff: full jitter, base
	// 500 ms, doubling to at most 30 s, reset by a response.
	var b envoyBackoff
	for ctx.Err() == nil {
		p.awaitConnection(ctx)
		var got bool
		if p.spec.Delta {
			got, err = p.deltaStream(ctx)
		} else {
			got, err = p.stream(ctx)
		}
		p.streamEnded()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			p.lastErr.Store(err.Error())
			streamErrs.add(err)
		}
		if got {
			b.reset()
		}
		select {
		case <-ctx.Done():
		case <-time.After(b.next()):
		}
	}
	return nil
}

func (p *proxy) node() *corev3.Node {
	md, _ := structpb.NewStruct(map[string]any{xdsnames.MetadataKind: p.spec.Kind})
	ua := "envoy"
	if p.spec.Kind == xdsnames.KindGRPC {
		ua = "gRPC Go"
	}
	return &corev3.Node{Id: xdsnames.NodeID(p.spec.Mesh, p.spec.Name), Metadata: md, UserAgentName: ua}
}

// stream serves one ADS stream until it ends; got: a response arrived.
func (p *proxy) stream(ctx context.Context) (got bool, _ error) {
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+p.spec.Token))
	defer cancel()
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(p.conn).StreamAggregatedResources(ctx)
	if err != nil {
		return false, err
	}
	p.streams.Add(1)
	p.streamStarted()
	node := p.node()
	p.mu.Lock()
	// A reconnecting proxy re-subscribes with what it has (versions kept,
	// nonces not), as Envoy does.
	var first []*discoveryv3.DiscoveryRequest
	if p.spec.Kind == xdsnames.KindGRPC {
		if p.names[resourcev3.ListenerType] == nil {
			p.names[resourcev3.ListenerType] = p.spec.GRPCListeners
			if p.spec.GRPCSecrets {
				p.names[resourcev3.SecretType] = grpcSecrets
			}
		}
		for _, t := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.SecretType} {
			if n, ok := p.names[t]; ok && len(n) > 0 {
				first = append(first, p.request(t, ""))
			}
		}
	} else {
		if _, ok := p.names[resourcev3.ClusterType]; !ok {
			p.names[resourcev3.ClusterType] = nil
			p.names[resourcev3.ListenerType] = nil
		}
		for _, t := range typeOrder {
			if n, ok := p.names[t]; ok && (n == nil || len(n) > 0) {
				first = append(first, p.request(t, ""))
			}
		}
	}
	p.mu.Unlock()
	for i, r := range first {
		if i == 0 {
			r.Node = node
		}
		if err := s.Send(r); err != nil {
			return false, err
		}
	}
	for {
		resp, err := s.Recv()
		if err != nil {
			return got, err
		}
		got = true
		now := time.Now()
		p.mu.Lock()
		if p.firstResp.IsZero() {
			p.firstResp = now
		}
		t := resp.GetTypeUrl()
		if p.shouldNack(t, resp.GetResources()) {
			// Rejected: nothing of it is applied; the request names the
			// version still held and the nonce of the rejected response.
			nack := p.request(t, resp.GetNonce())
			nack.ErrorDetail = status.New(codes.InvalidArgument, nackMessage).Proto()
			p.mu.Unlock()
			if err := s.Send(nack); err != nil {
				return got, err
			}
			continue
		}
		// Envoy: the referenced types' subscriptions change first (EDS for
		// new clusters, RDS for new listeners), then the ACK.
		var follow []*discoveryv3.DiscoveryRequest
		for typ, names := range referenced(t, resp.GetResources()) {
			if p.spec.Kind != xdsnames.KindGRPC && (typ == resourcev3.ClusterType || typ == resourcev3.ListenerType) {
				continue // wildcard
			}
			if old, ok := p.names[typ]; !ok || !sameNames(old, names) {
				p.names[typ] = names
				// No names: nothing to ask for (an empty SotW request
				// would be a wildcard).
				if len(names) > 0 {
					follow = append(follow, p.request(typ, ""))
				}
			}
		}
		if p.spec.Kind != xdsnames.KindGRPC && p.followSecrets(t, resp.GetResources()) {
			follow = append(follow, p.request(resourcev3.SecretType, ""))
		}
		prev := p.acked[t]
		p.acked[t] = resp
		ack := p.request(t, resp.GetNonce())
		full := p.isFull()
		p.mu.Unlock()
		for _, r := range follow {
			if err := s.Send(r); err != nil {
				return got, err
			}
		}
		if err := s.Send(ack); err != nil {
			return got, err
		}
		p.acked1(t, prev, resp, full)
	}
}

// acked1 records an ACK sent for resp (of type t; prev: the response
// ACKed before it): stream state, configured, and the armed watch.
func (p *proxy) acked1(t string, prev, resp *discoveryv3.DiscoveryResponse, full bool) {
	p.streamAcked(t, prev, resp)
	p.acks.Add(1)
	if full {
		p.fullOnce.Do(func() {
			p.mu.Lock()
			p.full = time.Now()
			p.mu.Unlock()
			close(p.fullCh)
		})
	}
	if w := p.w.Load(); w != nil && w.typeURL == t && w.ok(resp.GetResources()) {
		if p.w.CompareAndSwap(w, nil) {
			p.wDone <- time.Now()
		}
	}
}

// shouldNack: a -nack proxy rejects this response of type t holding res
// (under p.mu): it is the first to satisfy the armed watch.
func (p *proxy) shouldNack(t string, res []*anypb.Any) bool {
	if !p.spec.Nack || !p.nackNext.Load() {
		return false
	}
	w := p.w.Load()
	if w == nil || w.typeURL != t || !w.ok(res) {
		return false
	}
	p.nackNext.Store(false)
	p.nacks.Add(1)
	return true
}

// nackMessage is the error_detail message of a NACK; the code is
// INVALID_ARGUMENT, as Envoy sends for a rejected update. (Built through
// grpc's status package: genproto stays an indirect dependency.)
const nackMessage = "xds-fleet: rejected on request (-nack)"

// request is a (re)subscription or ACK for typ with the last ACKed version.
func (p *proxy) request(typ, nonce string) *discoveryv3.DiscoveryRequest {
	r := &discoveryv3.DiscoveryRequest{TypeUrl: typ, ResourceNames: p.names[typ], ResponseNonce: nonce}
	if a := p.acked[typ]; a != nil {
		r.VersionInfo = a.GetVersionInfo()
	}
	return r
}

// isFull: every subscribed type has an ACKed response (an empty name list
// of a referenced type counts as nothing to wait for).
func (p *proxy) isFull() bool {
	for t, names := range p.names {
		if p.acked[t] == nil && (names == nil || len(names) > 0) {
			return false
		}
		// Secrets: configured once every named one arrived (the
		// certificate may follow the listeners that name it).
		if t == resourcev3.SecretType && len(p.acked[t].GetResources()) < len(names) {
			return false
		}
	}
	return len(p.acked) > 0
}

// setWatch arms a scenario's condition; the ACK time arrives on wDone.
func (p *proxy) setWatch(w *watch) {
	p.wDone = make(chan time.Time, 1)
	p.nackNext.Store(p.spec.Nack)
	p.w.Store(w)
	// The proxy may already hold it (pushed before the watch was armed).
	p.mu.Lock()
	a := p.acked[w.typeURL]
	p.mu.Unlock()
	if a != nil && w.ok(a.GetResources()) && p.w.CompareAndSwap(w, nil) {
		p.wDone <- time.Now()
	}
}

// lastACKed is the resources of the last ACKed response of typ.
func (p *proxy) lastACKed(typ string) []*anypb.Any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.acked[typ].GetResources()
}

// snapshot is the proxy's last ACKed resources: type → name → bytes
// (deterministic marshalling), for comparison with a fresh proxy.
func (p *proxy) snapshot() map[string]map[string][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]map[string][]byte{}
	for t, r := range p.acked {
		m := map[string][]byte{}
		for _, a := range r.GetResources() {
			name, b := resourceKey(t, a)
			m[name] = b
		}
		out[t] = m
	}
	return out
}

func resourceKey(t string, a *anypb.Any) (string, []byte) {
	var m proto.Message
	switch t {
	case resourcev3.ClusterType:
		m = &clusterv3.Cluster{}
	case resourcev3.ListenerType:
		m = &listenerv3.Listener{}
	case resourcev3.RouteType:
		m = &routev3.RouteConfiguration{}
	case resourcev3.EndpointType:
		m = &endpointv3.ClusterLoadAssignment{}
	default:
		return fmt.Sprintf("%x", a.GetValue()), a.GetValue()
	}
	if err := a.UnmarshalTo(m); err != nil {
		return "undecodable", nil
	}
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	type named interface{ GetName() string }
	if n, ok := m.(named); ok {
		return n.GetName(), b
	}
	return m.(*endpointv3.ClusterLoadAssignment).GetClusterName(), b
}

// referenced returns, for a response of type t, the names of the types it
// refers to: EDS names of EDS clusters, RDS names of listeners, clusters
// of routes.
func referenced(t string, res []*anypb.Any) map[string][]string {
	set := map[string]map[string]bool{}
	add := func(typ, name string) {
		if set[typ] == nil {
			set[typ] = map[string]bool{}
		}
		if name != "" {
			set[typ][name] = true
		}
	}
	switch t {
	case resourcev3.ClusterType:
		add(resourcev3.EndpointType, "")
		for _, a := range res {
			c := &clusterv3.Cluster{}
			if a.UnmarshalTo(c) != nil || c.GetType() != clusterv3.Cluster_EDS {
				continue
			}
			n := c.GetEdsClusterConfig().GetServiceName()
			if n == "" {
				n = c.GetName()
			}
			add(resourcev3.EndpointType, n)
		}
	case resourcev3.ListenerType:
		add(resourcev3.RouteType, "")
		for _, a := range res {
			l := &listenerv3.Listener{}
			if a.UnmarshalTo(l) != nil {
				continue
			}
			if al := l.GetApiListener().GetApiListener(); al != nil {
				h := &hcmv3.HttpConnectionManager{}
				if al.UnmarshalTo(h) == nil {
					add(resourcev3.RouteType, h.GetRds().GetRouteConfigName())
				}
			}
			for _, fc := range l.GetFilterChains() {
				for _, f := range fc.GetFilters() {
					h := &hcmv3.HttpConnectionManager{}
					if tc := f.GetTypedConfig(); tc != nil && tc.UnmarshalTo(h) == nil {
						add(resourcev3.RouteType, h.GetRds().GetRouteConfigName())
					}
				}
			}
		}
	case resourcev3.RouteType:
		add(resourcev3.ClusterType, "")
		for _, a := range res {
			rc := &routev3.RouteConfiguration{}
			if a.UnmarshalTo(rc) != nil {
				continue
			}
			for _, vh := range rc.GetVirtualHosts() {
				for _, r := range vh.GetRoutes() {
					add(resourcev3.ClusterType, r.GetRoute().GetCluster())
					for _, wc := range r.GetRoute().GetWeightedClusters().GetClusters() {
						add(resourcev3.ClusterType, wc.GetName())
					}
				}
			}
		}
	}
	out := map[string][]string{}
	for typ, names := range set {
		l := make([]string, 0, len(names))
		for n := range names {
			l = append(l, n)
		}
		sort.Strings(l)
		out[typ] = l
	}
	return out
}

func sameNames(a, b []string) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// streamErrs tallies why streams ended, fleet-wide, by gRPC code and the
// start of the message (addresses and numbers vary; the kind does not).
var streamErrs errTally

type errTally struct {
	mu sync.Mutex
	n  map[string]int
}

func (t *errTally) add(err error) {
	st, _ := status.FromError(err)
	msg := []rune(digits.ReplaceAllString(st.Message(), "N"))
	if len(msg) > 160 {
		msg = append(msg[:160], '…')
	}
	k := st.Code().String() + ": " + string(msg)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == nil {
		t.n = map[string]int{}
	}
	t.n[k]++
}

var digits = regexp.MustCompile(`[0-9]+`)

// take returns the tally since the last take, most frequent first, and
// resets it.
func (t *errTally) take() []string {
	t.mu.Lock()
	n := t.n
	t.n = nil
	t.mu.Unlock()
	keys := make([]string, 0, len(n))
	for k := range n {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return n[keys[i]] > n[keys[j]] || n[keys[i]] == n[keys[j]] && keys[i] < keys[j]
	})
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = fmt.Sprintf("%d× %s", n[k], k)
	}
	return out
}
