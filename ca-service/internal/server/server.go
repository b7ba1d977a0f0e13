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
	m *authority.Manager
}

// New returns the API on a manager.
func New(m *authority.Manager) *Server { return &Server{m: m} }

// Register adds the service to a gRPC server.
func (s *Server) Register(g *grpc.Server) { cav1.RegisterCertificateAuthorityServiceServer(g, s) }

// SignWorkloadCertificate issues a leaf for a Dataplane or ZoneIngress.
func (s *Server) SignWorkloadCertificate(ctx context.Context, r *cav1.SignWorkloadCertificateRequest) (*cav1.SignWorkloadCertificateResponse, error) {
	req := authority.SignRequest{Mesh: r.GetMesh(), Dataplane: r.GetDataplane(), CSR: r.GetCsr(), PublicKey: r.GetPublicKey()}
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
	byToken := grpcx.TokenAuth(keys, func(c *token.Claims, _ string) error {
		if c.Kind != token.KindService {
			return status.Errorf(codes.PermissionDenied, "a %s token may not call ca-service: only control-plane services (service tokens) may", c.Kind)
		}
		return check(c.Subject)
	})
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
		return byToken(ctx, method)
	}
}
