// Package ads serves the aggregated discovery service: it authenticates
// each stream by its dataplane token before anything is sent, and turns
// go-control-plane's stream callbacks into proxy registrations, ACK/NACK
// accounting, insights and metrics.
package ads

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/pkg/grpcx"
	"github.com/weftmesh/weft/pkg/token"
	"github.com/weftmesh/weft/pkg/xdsnames"
	"github.com/weftmesh/weft/xds-server/internal/generator"
)

// Node metadata keys weft-dp (and sidecar bootstraps) set.
const (
	// MetadataToken carries the dataplane token for clients that cannot set
	// gRPC headers (grpc-go's xDS client).
	MetadataToken = xdsnames.MetadataToken
	// MetadataKind is the proxy kind: envoy, grpc or ingress.
	MetadataKind = xdsnames.MetadataKind
)

// MaxNodeIDLength bounds node ids before they are parsed.
const MaxNodeIDLength = 512

// Identity is an authenticated stream's proxy: a dataplane of a mesh, or
// (Kind KindIngress, Mesh empty) a zone ingress named Name in Zone.
type Identity struct {
	NodeID, Mesh, Name, Kind string
	// Zone is an ingress's zone (empty for dataplanes).
	Zone string
	// Tags the token requires every inbound of the Dataplane to carry.
	Tags map[string]string
	// Token is the dataplane token the proxy presented (forwarded to
	// ca-service as proof when a certificate is signed) and Claims what it
	// verified to (the services it is bound to, its expiry).
	Token  string
	Claims *token.Claims
}

type identityKey struct{}

// IdentityFrom returns the stream's authenticated proxy.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	v, ok := ctx.Value(identityKey{}).(streamValue)
	return v.id, ok
}

// streamValue is what StreamAuth puts in the stream's context: the
// identity, and the cancel of that context (a cut), which Server reuses
// instead of making a cancellable context of its own.
type streamValue struct {
	id     Identity
	cancel context.CancelFunc
}

// streamCancel returns the cancel of ctx's stream, when StreamAuth made it.
func streamCancel(ctx context.Context) (context.CancelFunc, bool) {
	v, ok := ctx.Value(identityKey{}).(streamValue)
	return v.cancel, ok && v.cancel != nil
}

// Verifier checks a dataplane token for mesh/name and returns its claims.
type Verifier func(ctx context.Context, tok, mesh, name string) (*token.Claims, error)

// TokenVerifier verifies with the control plane's token keys.
func TokenVerifier(keys *token.Keys) Verifier {
	return keys.VerifyDataplane
}

// IngressVerifier checks an ingress token for the ingress name of zone.
type IngressVerifier func(ctx context.Context, tok, zone, name string) (*token.Claims, error)

// IngressTokenVerifier verifies ingress tokens with the control plane's
// token keys.
func IngressTokenVerifier(keys *token.Keys) IngressVerifier {
	return keys.VerifyIngress
}

// Ingresses is how ingress streams authenticate: Zone is this control
// plane's zone (an ingress of another zone, or any ingress when Zone is
// empty, is refused) and Verify checks the ingress token.
type Ingresses struct {
	Zone   string
	Verify IngressVerifier
}

// RecheckInterval is how often the open streams' tokens are verified again
// when the interceptor has no token.Keys to say when they change (StreamAuth,
// StreamAuthWithIngresses; read when the interceptor is made), so a revoked
// token (or rotated signing key) closes the stream within about
// RecheckInterval + token.RefreshInterval.
var RecheckInterval = 2 * time.Second

type nodeRequest interface {
	proto.Message
	GetNode() *corev3.Node
}

// StreamAuth authenticates every xDS stream on its first request, before
// the handler (and so before anything is sent): a bad, expired or foreign
// token ends the stream with PermissionDenied saying why. Later requests
// must not switch node.
func StreamAuth(verify Verifier) grpc.StreamServerInterceptor {
	return StreamAuthWithIngresses(verify, Ingresses{})
}

// StreamAuthWithIngresses is StreamAuth also accepting zone ingresses:
// a node id xdsnames.IngressNodeID(zone, name) with an ingress token for
// exactly that zone (this one) and name.
func StreamAuthWithIngresses(verify Verifier, ing Ingresses) grpc.StreamServerInterceptor {
	return streamAuth(verify, ing, nil)
}

// StreamAuthKeys is StreamAuthWithIngresses verifying with the control
// plane's token keys (ingresses of zone; none when zone is empty). An open
// stream verifies its token again only when keys change (a revocation or a
// new signing key, read by keys.RunPoller), not on a timer of its own: at
// 10,000 streams a 2-second timer each cost ~0.2 cores with nothing
// changing.
func StreamAuthKeys(keys *token.Keys, zone string) grpc.StreamServerInterceptor {
	return streamAuth(TokenVerifier(keys), Ingresses{Zone: zone, Verify: IngressTokenVerifier(keys)}, keys.Changed)
}

// streamAuth: changes (nil: recheck every RecheckInterval) says when to
// verify the open streams' tokens again. One registry per interceptor (per
// process) does it for all of them; no stream has a goroutine or a ticker
// of its own for its token.
func streamAuth(verify Verifier, ing Ingresses, changes func() <-chan struct{}) grpc.StreamServerInterceptor {
	reg := &tokenRegistry{changes: changes, interval: RecheckInterval}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if !strings.HasPrefix(info.FullMethod, "/envoy.service.") {
			return handler(srv, ss)
		}
		var first nodeRequest = &discoveryv3.DiscoveryRequest{}
		if strings.Contains(info.FullMethod, "/Delta") {
			first = &discoveryv3.DeltaDiscoveryRequest{}
		}
		if err := ss.RecvMsg(first); err != nil {
			return err
		}
		// Taken before the token is verified, so a change while verifying
		// is not missed (checked once the stream is registered).
		var changed <-chan struct{}
		if changes != nil {
			changed = changes()
		}
		id, err := AuthenticateNode(ss.Context(), first.GetNode(), verify, ing)
		if err != nil {
			return err
		}
		// Cancelled by a cut: the stream's xDS loop (Server) then returns.
		ctx, cancel := context.WithCancel(ss.Context())
		defer cancel()
		ctx = context.WithValue(ctx, identityKey{}, streamValue{id: id, cancel: cancel})
		as := &authStream{ServerStream: ss, ctx: ctx, cancel: cancel, first: first, id: id, cut: make(chan struct{})}
		as.recheck = func(ctx context.Context) error {
			_, err := verify(ctx, id.Token, id.Mesh, id.Name)
			return err
		}
		if id.Kind == generator.KindIngress && id.Mesh == "" {
			as.recheck = func(ctx context.Context) error {
				_, err := ing.Verify(ctx, id.Token, id.Zone, id.Name)
				return err
			}
		}
		if c := id.Claims; c != nil && c.ExpiresAt != nil {
			at := c.ExpiresAt.Time
			t := time.AfterFunc(time.Until(at), func() {
				as.doCut(fmt.Sprintf("token expired at %s", at.UTC().Format(time.RFC3339)))
			})
			defer t.Stop()
		}
		reg.add(as)
		defer reg.remove(as)
		select {
		case <-changed:
			as.verify(ctx)
		default:
		}
		err = handler(srv, as)
		select {
		case <-as.cut:
			return as.cutErr
		default:
		}
		if as.err != nil {
			// go-control-plane ends a stream quietly on a receive error;
			// the client should learn why.
			return as.err
		}
		return err
	}
}

// maxRecheckers bounds the token re-verifications run at once after a
// change: verifying is CPU (a cached signature check, the revocation list),
// so more than a few at a time only queues on the cores.
const maxRecheckers = 4

// tokenRegistry re-verifies the tokens of the registered (open) streams
// when changes fires (or every interval when changes is nil), cutting those
// that no longer verify. Its one goroutine runs while any stream is
// registered.
type tokenRegistry struct {
	changes  func() <-chan struct{}
	interval time.Duration

	mu      sync.Mutex
	streams map[*authStream]struct{}
	stop    chan struct{} // closed when the last stream leaves
}

func (r *tokenRegistry) add(s *authStream) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.streams == nil {
		r.streams = map[*authStream]struct{}{}
	}
	r.streams[s] = struct{}{}
	if r.stop == nil {
		r.stop = make(chan struct{})
		// Taken now, with s registered: a change from here on reaches
		// run, one before is seen by the stream's own check.
		var changed <-chan struct{}
		if r.changes != nil {
			changed = r.changes()
		}
		go r.run(r.stop, changed)
	}
}

func (r *tokenRegistry) remove(s *authStream) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.streams, s)
	if len(r.streams) == 0 && r.stop != nil {
		close(r.stop)
		r.stop = nil
	}
}

func (r *tokenRegistry) run(stop, changed <-chan struct{}) {
	var tick <-chan time.Time
	if r.changes == nil {
		t := time.NewTicker(r.interval)
		defer t.Stop()
		tick = t.C
	}
	for first := true; ; first = false {
		// Taken before the checks below, so a change while verifying is
		// not missed.
		if r.changes != nil && !first {
			changed = r.changes()
		}
		select {
		case <-stop:
			return
		case <-tick:
		case <-changed:
		}
		r.mu.Lock()
		all := make([]*authStream, 0, len(r.streams))
		for s := range r.streams {
			all = append(all, s)
		}
		r.mu.Unlock()
		var next atomic.Int64
		var wg sync.WaitGroup
		for range min(maxRecheckers, len(all)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := next.Add(1) - 1; i < int64(len(all)); i = next.Add(1) - 1 {
					all[i].verify(all[i].ctx)
				}
			}()
		}
		wg.Wait()
	}
}

// Authenticate checks a node's identity and token (from the authorization
// header, else node metadata).
func Authenticate(ctx context.Context, node *corev3.Node, verify Verifier) (Identity, error) {
	return AuthenticateNode(ctx, node, verify, Ingresses{})
}

// AuthenticateNode is Authenticate also accepting zone ingresses (see
// StreamAuthWithIngresses). An ingress node id is never authenticated by a
// dataplane token, nor a dataplane node id by an ingress token.
func AuthenticateNode(ctx context.Context, node *corev3.Node, verify Verifier, ing Ingresses) (Identity, error) {
	if node != nil && xdsnames.IsIngressNodeID(node.GetId()) {
		return authenticateIngress(ctx, node, ing)
	}
	if node == nil || node.GetId() == "" {
		return Identity{}, status.Error(codes.PermissionDenied, "first request has no node id: expected <mesh>.<dataplane name>")
	}
	if len(node.GetId()) > MaxNodeIDLength {
		return Identity{}, status.Errorf(codes.PermissionDenied, "node id longer than %d bytes", MaxNodeIDLength)
	}
	mesh, name, err := generator.ParseNodeID(node.GetId())
	if err != nil {
		return Identity{}, status.Error(codes.PermissionDenied, err.Error())
	}
	tok := grpcx.BearerToken(ctx)
	if tok == "" {
		tok = metadataString(node, MetadataToken)
	}
	if tok == "" {
		return Identity{}, status.Errorf(codes.PermissionDenied, "dataplane %s/%s: no token (send \"authorization: Bearer <token>\" or node metadata %q)", mesh, name, MetadataToken)
	}
	c, err := verify(ctx, tok, mesh, name)
	if err != nil {
		if token.IsInvalid(err) {
			return Identity{}, status.Errorf(codes.PermissionDenied, "dataplane %s/%s: %v", mesh, name, err)
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return Identity{}, status.FromContextError(err).Err()
		}
		return Identity{}, status.Errorf(codes.Unavailable, "dataplane %s/%s: cannot verify token now: %v", mesh, name, err)
	}
	return Identity{NodeID: node.GetId(), Mesh: mesh, Name: name, Kind: kindOf(node), Tags: c.Tags, Token: tok, Claims: c}, nil
}

func authenticateIngress(ctx context.Context, node *corev3.Node, ing Ingresses) (Identity, error) {
	if len(node.GetId()) > MaxNodeIDLength {
		return Identity{}, status.Errorf(codes.PermissionDenied, "node id longer than %d bytes", MaxNodeIDLength)
	}
	zone, name, err := xdsnames.ParseIngressNodeID(node.GetId())
	if err != nil {
		return Identity{}, status.Error(codes.PermissionDenied, err.Error())
	}
	if ing.Verify == nil || ing.Zone == "" {
		return Identity{}, status.Errorf(codes.PermissionDenied, "ingress %s/%s: this xds-server serves no ingress (it has no --zone)", zone, name)
	}
	if zone != ing.Zone {
		return Identity{}, status.Errorf(codes.PermissionDenied, "ingress %s/%s: this xds-server is zone %q's; an ingress connects to its own zone's", zone, name, ing.Zone)
	}
	tok := grpcx.BearerToken(ctx)
	if tok == "" {
		tok = metadataString(node, MetadataToken)
	}
	if tok == "" {
		return Identity{}, status.Errorf(codes.PermissionDenied, "ingress %s/%s: no token (send \"authorization: Bearer <token>\" or node metadata %q)", zone, name, MetadataToken)
	}
	c, err := ing.Verify(ctx, tok, zone, name)
	if err != nil {
		if token.IsInvalid(err) {
			return Identity{}, status.Errorf(codes.PermissionDenied, "ingress %s/%s: %v (weftctl generate ingress-token)", zone, name, err)
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return Identity{}, status.FromContextError(err).Err()
		}
		return Identity{}, status.Errorf(codes.Unavailable, "ingress %s/%s: cannot verify token now: %v", zone, name, err)
	}
	return Identity{NodeID: node.GetId(), Name: name, Zone: zone, Kind: generator.KindIngress, Token: tok, Claims: c}, nil
}

func kindOf(node *corev3.Node) string {
	switch k := metadataString(node, MetadataKind); k {
	case generator.KindEnvoy, generator.KindGRPC, generator.KindIngress:
		return k
	}
	if strings.HasPrefix(strings.ToLower(node.GetUserAgentName()), "grpc") {
		return generator.KindGRPC
	}
	return generator.KindEnvoy
}

func metadataString(node *corev3.Node, key string) string {
	f := node.GetMetadata().GetFields()
	if v, ok := f[key]; ok {
		return v.GetStringValue()
	}
	// Nested form {"dataplane": {"token": ...}}.
	if i := strings.IndexByte(key, '.'); i > 0 {
		if v, ok := f[key[:i]]; ok {
			return v.GetStructValue().GetFields()[key[i+1:]].GetStringValue()
		}
	}
	return ""
}

type authStream struct {
	grpc.ServerStream
	ctx     context.Context
	cancel  context.CancelFunc
	first   nodeRequest
	id      Identity
	recheck func(context.Context) error
	// err is set by RecvMsg (on go-control-plane's receiving goroutine)
	// before the receive fails, which closes the loop's request channel:
	// the handler reads it after the loop has returned.
	err error

	// cut is closed (once, with cutErr set) when the token expires or no
	// longer verifies; the stream's context is cancelled with it, which
	// ends the xDS loop (Server).
	cutOnce sync.Once
	cut     chan struct{}
	cutErr  error
}

// verify cuts the stream when its token no longer verifies (cheap:
// token.Keys caches the signature check and refreshes revocations in the
// background). An error other than an invalid token (etcd unreachable, the
// stream ended) keeps the stream.
func (s *authStream) verify(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	if err := s.recheck(ctx); token.IsInvalid(err) {
		s.doCut(err.Error())
	}
}

func (s *authStream) doCut(why string) {
	s.cutOnce.Do(func() {
		// Unauthenticated: the proxy reconnects and must present a valid
		// token; grpc-go and Envoy both retry with backoff.
		s.cutErr = status.Errorf(codes.Unauthenticated, "dataplane %s/%s: %s: closing the xDS stream; give the proxy a new token (weftctl generate dataplane-token)", s.id.Mesh, s.id.Name, why)
		if s.id.Zone != "" {
			s.cutErr = status.Errorf(codes.Unauthenticated, "ingress %s/%s: %s: closing the xDS stream; give the ingress a new token (weftctl generate ingress-token)", s.id.Zone, s.id.Name, why)
		}
		slog.Default().Info("closing xDS stream: its token no longer verifies", "node", s.id.NodeID, "reason", why)
		// In this order: the handler returns once the context is
		// cancelled, and must then find cut closed (else the proxy would
		// see the stream end without the reason).
		close(s.cut)
		s.cancel()
	})
}

func (s *authStream) Context() context.Context { return s.ctx }

// RecvMsg receives on the caller's goroutine: a cut does not interrupt a
// receive, it cancels the stream's context, which ends the xDS loop
// (Server) and so the RPC, and with it the receive.
func (s *authStream) RecvMsg(m any) error {
	if s.first != nil {
		first := s.first
		s.first = nil
		pm, ok := m.(proto.Message)
		if !ok {
			return fmt.Errorf("unexpected message type %T", m)
		}
		proto.Reset(pm)
		proto.Merge(pm, first)
		return nil
	}
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	select {
	case <-s.cut:
		// A request that raced the cut is not handed on (the handler
		// returns cutErr).
		return s.cutErr
	default:
	}
	if r, ok := m.(nodeRequest); ok {
		if n := r.GetNode(); n != nil && n.GetId() != "" && n.GetId() != s.id.NodeID {
			s.err = status.Errorf(codes.PermissionDenied, "stream authenticated as %q cannot switch to node %q", s.id.NodeID, n.GetId())
			return s.err
		}
	}
	return nil
}
