// Package server is ca-service's gRPC API and who may call it: only
// control-plane services, by service token or by a client certificate from
// the control-plane CA.
package server

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/ca-service/internal/authority"
	"github.com/weftmesh/weft/pkg/cptls"
	"github.com/weftmesh/weft/pkg/grpcx"
	"github.com/weftmesh/weft/pkg/token"
	cav1 "github.com/weftmesh/weft/proto/gen/go/weft/ca/v1"
)

// Server implements cav1.CertificateAuthorityServiceServer.
type Server struct {
	cav1.UnimplementedCertificateAuthorityServiceServer
	m    *authority.Manager
	keys *token.Keys
}

// New returns the API on a manager; keys verify the dataplane tokens
// signing requests carry.
func New(m *authority.Manager, keys *token.Keys) *Server { return &Server{m: m, keys: keys} }

// Register adds the service to a gRPC server.
func (s *Server) Register(g *grpc.Server) { cav1.RegisterCertificateAuthorityServiceServer(g, s) }

// SignWorkloadCertificate issues a leaf for a Dataplane or ZoneIngress.
func (s *Server) SignWorkloadCertificate(ctx context.Context, r *cav1.SignWorkloadCertificateRequest) (*cav1.SignWorkloadCertificateResponse, error) {
	req := authority.SignRequest{Mesh: r.GetMesh(), Dataplane: r.GetDataplane(), CSR: r.GetCsr(), PublicKey: r.GetPublicKey()}
	// The caller (a control-plane service) must prove the workload: its own
	// dataplane token, verified here, bounds the identities signed. A
	// caller's word alone certifies nothing.
	tok := r.GetDataplaneToken()
	switch {
	case r.GetMesh() == "":
		return nil, status.Error(codes.InvalidArgument, "mesh is required")
	case r.GetDataplane() == "":
		return nil, status.Error(codes.InvalidArgument, "dataplane is required")
	case len(tok) > token.MaxTokenSize:
		return nil, status.Errorf(codes.InvalidArgument, "dataplane_token longer than %d bytes", token.MaxTokenSize)
	case tok == "":
		return nil, status.Errorf(codes.InvalidArgument, "dataplane_token is required: the workload's own dataplane token (xds-server forwards the one the proxy presented)")
	}
	c, err := s.keys.VerifyDataplane(ctx, tok, r.GetMesh(), r.GetDataplane())
	if err != nil {
		if token.IsInvalid(err) {
			return nil, status.Errorf(codes.PermissionDenied, "dataplane %s/%s: %v", r.GetMesh(), r.GetDataplane(), err)
		}
		return nil, status.Error(codes.Unavailable, "cannot verify the dataplane token right now")
	}
	req.Token = c
	if d := r.GetValidity(); d != nil {
		if err := d.CheckValid(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "validity: %v", err)
		}
		req.Validity = d.AsDuration()
	}
	return s.m.Sign(ctx, req)
}

// GetTrustBundle returns a mesh's bundle.
func (s *Server) GetTrustBundle(ctx context.Context, r *cav1.GetTrustBundleRequest) (*cav1.TrustBundle, error) {
	return s.m.Bundle(ctx, r.GetMesh())
}

// WatchTrustBundle streams a mesh's bundle.
func (s *Server) WatchTrustBundle(r *cav1.GetTrustBundleRequest, stream grpc.ServerStreamingServer[cav1.TrustBundle]) error {
	return s.m.WatchBundle(stream.Context(), r.GetMesh(), stream.Send)
}

// Auth admits control-plane services only:
//   - a client certificate verified against the control-plane CA (the TLS
//     config asks for one and verifies it if given) naming a service, or
//   - a bearer service token (kind "service").
//
// When allowed is non-empty, only the named services (certificate service
// name or token subject) are admitted. User, dataplane and zone tokens are
// refused.
func Auth(keys *token.Keys, allowed []string) grpcx.AuthFunc {
	allow := map[string]bool{}
	for _, a := range allowed {
		allow[a] = true
	}
	check := func(name string) error {
		if len(allow) > 0 && !allow[name] {
			return status.Errorf(codes.PermissionDenied, "service %q may not call ca-service", name)
		}
		return nil
	}
	byToken := func(ctx context.Context) (context.Context, error) {
		tok := grpcx.BearerToken(ctx)
		if tok == "" {
			return nil, status.Error(codes.Unauthenticated, "missing credentials: send 'authorization: Bearer <service token>' or a control-plane client certificate")
		}
		// keys caches verified tokens itself and checks expiry and
		// revocation on every call.
		c, err := keys.Verify(ctx, tok)
		if err != nil {
			if token.IsInvalid(err) {
				return nil, status.Error(codes.Unauthenticated, err.Error())
			}
			return nil, status.Error(codes.Unavailable, "cannot verify token right now")
		}
		if c.Kind != token.KindService {
			return nil, status.Errorf(codes.PermissionDenied, "a %s token may not call ca-service: only control-plane services (service tokens) may", c.Kind)
		}
		if err := check(c.Subject); err != nil {
			return nil, err
		}
		return grpcx.WithClaims(ctx, c), nil
	}
	return func(ctx context.Context, method string) (context.Context, error) {
		if p, ok := peer.FromContext(ctx); ok {
			if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
				if name, ok := cptls.ServiceName(ti.State.VerifiedChains[0][0]); ok && grpcx.BearerToken(ctx) == "" {
					if err := check(name); err != nil {
						return nil, err
					}
					return ctx, nil
				}
			}
		}
		return byToken(ctx)
	}
}
