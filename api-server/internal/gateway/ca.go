package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/pkg/ca"
	"github.com/weftmesh/weft/pkg/resource"
	apiv1 "github.com/weftmesh/weft/proto/gen/go/weft/api/v1"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// CAExpiryFunc returns the root expiry of every CA backend of mesh m.
type CAExpiryFunc func(ctx context.Context, mesh string, m *meshv1.Mesh) []ca.BackendExpiry

// caPath parses /meshes/{mesh}/ca.
func caPath(path string) (mesh string, ok bool) {
	p := strings.Split(strings.Trim(path, "/"), "/")
	if len(p) != 3 || p[0] != "meshes" || p[1] == "" || p[2] != "ca" {
		return "", false
	}
	return p[1], true
}

// MeshCA is the answer of GET /meshes/{mesh}/ca.
type MeshCA struct {
	Mesh string `json:"mesh"`
	// EnabledBackend is mtls.enabledBackend ("" with mTLS off).
	EnabledBackend string             `json:"enabledBackend"`
	Backends       []ca.BackendExpiry `json:"backends"`
}

// WithCA answers GET /meshes/{mesh}/ca in front of the REST handler: the
// Mesh is read through the gRPC service with the caller's credentials (the
// same authorisation and 404 as GET /meshes/{mesh}); the expiries come
// from expiry, which reads certificates only.
func WithCA(next http.Handler, conn *grpc.ClientConn, expiry CAExpiryFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mesh, ok := caPath(r.URL.Path)
		if !ok || r.Method != http.MethodGet {
			next.ServeHTTP(w, r)
			return
		}
		ctx := outgoing(r)
		it, err := apiv1.NewResourceServiceClient(conn).Get(ctx, &apiv1.GetRequest{Collection: resource.MeshType.Collection, Name: mesh})
		if err != nil {
			writeStatus(w, status.Convert(err))
			return
		}
		m, err := resource.FromAPI(it, resource.MeshType)
		if err != nil {
			writeStatus(w, status.New(codes.Internal, "internal error"))
			return
		}
		spec, _ := m.Spec.(*meshv1.Mesh)
		out := MeshCA{Mesh: mesh, EnabledBackend: spec.GetMtls().GetEnabledBackend(), Backends: expiry(r.Context(), mesh, spec)}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(out)
	})
}
