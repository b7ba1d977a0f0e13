// Package ads serves the aggregated discovery service: it authenticates
// each stream by its dataplane token before anything is sent, and turns
// go-control-plane's stream callbacks into proxy registrations, ACK/NACK
// accounting, insights and metrics.
package ads

import (
	"context"
	"errors"
	"fmt"
	"strings"

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

// Identity is an authenticated stream's proxy.
type Identity struct {
	NodeID, Mesh, Name, Kind string
	// Tags the token requires every inbound of the Dataplane to carry.
	Tags map[string]string
}

type identityKey struct{}

// IdentityFrom returns the stream's authenticated proxy.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// Verifier checks a dataplane token for mesh/name and returns the tags it
// requires.
type Verifier func(ctx context.Context, tok, mesh, name string) (map[string]string, error)

// TokenVerifier verifies with the control plane's token keys.
func TokenVerifier(keys *token.Keys) Verifier {
	return func(ctx context.Context, tok, mesh, name string) (map[string]string, error) {
		c, err := keys.VerifyDataplane(ctx, tok, mesh, name)
		if err != nil {
			return nil, err
		}
		return c.Tags, nil
	}
}

type nodeRequest interface {
	proto.Message
	GetNode() *corev3.Node
}

// StreamAuth authenticates every xDS stream on its first request, before
// the handler (and so before anything is sent): a bad, expired or foreign
// token ends the stream with PermissionDenied saying why. Later requests
// must not switch node.
func StreamAuth(verify Verifier) grpc.StreamServerInterceptor {
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
		id, err := Authenticate(ss.Context(), first.GetNode(), verify)
		if err != nil {
			return err
		}
		ctx := context.WithValue(ss.Context(), identityKey{}, id)
		as := &authStream{ServerStream: ss, ctx: ctx, first: first, id: id}
		err = handler(srv, as)
		if as.err != nil {
			// go-control-plane ends a stream quietly on a receive error;
			// the client should learn why.
			return as.err
		}
		return err
	}
}

// Authenticate checks a node's identity and token (from the authorization
// header, else node metadata).
func Authenticate(ctx context.Context, node *corev3.Node, verify Verifier) (Identity, error) {
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
	tags, err := verify(ctx, tok, mesh, name)
	if err != nil {
		if token.IsInvalid(err) {
			return Identity{}, status.Errorf(codes.PermissionDenied, "dataplane %s/%s: %v", mesh, name, err)
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return Identity{}, status.FromContextError(err).Err()
		}
		return Identity{}, status.Errorf(codes.Unavailable, "dataplane %s/%s: cannot verify token now: %v", mesh, name, err)
	}
	return Identity{NodeID: node.GetId(), Mesh: mesh, Name: name, Kind: kindOf(node), Tags: tags}, nil
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
	ctx   context.Context
	first nodeRequest
	id    Identity
	err   error
}

func (s *authStream) Context() context.Context { return s.ctx }

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
	if r, ok := m.(nodeRequest); ok {
		if n := r.GetNode(); n != nil && n.GetId() != "" && n.GetId() != s.id.NodeID {
			s.err = status.Errorf(codes.PermissionDenied, "stream authenticated as %q cannot switch to node %q", s.id.NodeID, n.GetId())
			return s.err
		}
	}
	return nil
}
