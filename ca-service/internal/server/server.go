// Package server is ca-service's gRPC API and who may call it: only
// control-plane services, by service token or by a client certificate from
// the control-plane CA.
package server

import (
	"context"
	"sync"
	"time"

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
	cache := newTokenCache(time.Minute, 4096)
	byToken := func(ctx context.Context) (context.Context, error) {
		tok := grpcx.BearerToken(ctx)
		if tok == "" {
			return nil, status.Error(codes.Unauthenticated, "missing credentials: send 'authorization: Bearer <service token>' or a control-plane client certificate")
		}
		c, ok := cache.get(tok)
		if !ok {
			var err error
			if c, err = keys.Verify(ctx, tok); err != nil {
				if token.IsInvalid(err) {
					return nil, status.Error(codes.Unauthenticated, err.Error())
				}
				return nil, status.Error(codes.Unavailable, "cannot verify token right now")
			}
			cache.put(tok, c)
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

// tokenCache remembers verified tokens for a short while: verifying an
// ES256 signature costs as much as signing a certificate, and callers
// reuse one token for many calls. Entries live at most ttl and never past
// the token's expiry; a full cache is emptied.
type tokenCache struct {
	ttl time.Duration
	max int
	mu  sync.RWMutex
	m   map[string]cachedToken
}

type cachedToken struct {
	c     *token.Claims
	until time.Time
}

func newTokenCache(ttl time.Duration, max int) *tokenCache {
	return &tokenCache{ttl: ttl, max: max, m: map[string]cachedToken{}}
}

func (tc *tokenCache) get(tok string) (*token.Claims, bool) {
	tc.mu.RLock()
	e, ok := tc.m[tok]
	tc.mu.RUnlock()
	if !ok || time.Now().After(e.until) {
		return nil, false
	}
	return e.c, true
}

func (tc *tokenCache) put(tok string, c *token.Claims) {
	until := time.Now().Add(tc.ttl)
	if c.ExpiresAt != nil && c.ExpiresAt.Before(until) {
		until = c.ExpiresAt.Time
	}
	tc.mu.Lock()
	if len(tc.m) >= tc.max {
		tc.m = map[string]cachedToken{}
	}
	tc.m[tok] = cachedToken{c: c, until: until}
	tc.mu.Unlock()
}
