package server

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/pkg/grpcx"
	"github.com/weftmesh/weft/pkg/policy"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/token"
	apiv1 "github.com/weftmesh/weft/proto/gen/go/weft/api/v1"
	inspectv1 "github.com/weftmesh/weft/proto/gen/go/weft/inspect/v1"
)

// InspectTimeout bounds one forwarded inspect call.
const InspectTimeout = 30 * time.Second

// Inspect serves weft.inspect.v1.InspectService to API clients by
// forwarding each call, with the caller's own bearer token, to an
// xds-server (which verifies the token again and computes the answer with
// the generator it serves proxies from). PreviewPolicy first runs every
// check of a write (so a bad policy is a field-path InvalidArgument and
// nothing reaches the xds-server) and stores nothing.
type Inspect struct {
	inspectv1.UnimplementedInspectServiceServer
	srv *Server
	// xds is the connection to the xds-server (nil: not configured, every
	// call answers Unimplemented).
	xds     inspectv1.InspectServiceClient
	address string
}

// NewInspect returns the inspect service forwarding over conn (nil: not
// configured) to the xds-server at address (for messages).
func (s *Server) NewInspect(conn grpc.ClientConnInterface, address string) *Inspect {
	i := &Inspect{srv: s, address: address}
	if conn != nil {
		i.xds = inspectv1.NewInspectServiceClient(conn)
	}
	return i
}

// Register adds the service to g.
func (i *Inspect) Register(g *grpc.Server) { inspectv1.RegisterInspectServiceServer(g, i) }

// forwardContext carries the caller's token (never a token of the
// api-server's own) to the xds-server.
func forwardContext(ctx context.Context) (context.Context, context.CancelFunc) {
	out, cancel := context.WithTimeout(ctx, InspectTimeout)
	if tok := grpcx.BearerToken(ctx); tok != "" {
		out = metadata.NewOutgoingContext(out, metadata.Pairs("authorization", "Bearer "+tok))
	} else {
		out = metadata.NewOutgoingContext(out, metadata.MD{})
	}
	return out, cancel
}

func (i *Inspect) unavailable(err error) error {
	st := status.Convert(err)
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded:
		return status.Errorf(st.Code(), "xds-server at %s: %s", i.address, st.Message())
	}
	return err
}

func (i *Inspect) configured() error {
	if i.xds == nil {
		return status.Error(codes.Unimplemented, "no xds-server configured (api-server --xds-address)")
	}
	return nil
}

// ConfigDump forwards to the xds-server.
func (i *Inspect) ConfigDump(ctx context.Context, req *inspectv1.ConfigDumpRequest) (*inspectv1.ConfigDumpResponse, error) {
	if req.GetMesh() == "" || req.GetName() == "" {
		return nil, grpcx.InvalidArgument("mesh and name are required",
			resource.Cause{Field: "mesh", Message: "must be set"}, resource.Cause{Field: "name", Message: "must be set"})
	}
	// The xds-server checks again; refusing here spares it the call.
	if c, _ := grpcx.ClaimsFrom(ctx); c != nil && c.Kind == token.KindDataplane && (c.Mesh != req.GetMesh() || c.Subject != req.GetName()) {
		return nil, status.Errorf(codes.PermissionDenied, "a dataplane token for %s/%s cannot inspect dataplane %s/%s", c.Mesh, c.Subject, req.GetMesh(), req.GetName())
	}
	if err := i.configured(); err != nil {
		return nil, err
	}
	fctx, cancel := forwardContext(ctx)
	defer cancel()
	out, err := i.xds.ConfigDump(fctx, req)
	if err != nil {
		return nil, i.unavailable(err)
	}
	return out, nil
}

// PreviewPolicy validates the policy as a write would, then forwards.
func (i *Inspect) PreviewPolicy(ctx context.Context, req *inspectv1.PreviewPolicyRequest) (*inspectv1.PreviewPolicyResponse, error) {
	if req.GetPolicy() == nil {
		return nil, grpcx.InvalidArgument("no policy", resource.Cause{Field: "policy", Message: "required"})
	}
	put := &apiv1.PutRequest{Collection: req.GetCollection(), Mesh: req.GetMesh(), Name: req.GetName(), Resource: req.GetPolicy()}
	meta := req.GetPolicy().GetMeta()
	if put.Collection == "" {
		put.Collection = meta.GetType()
	}
	if put.Mesh == "" {
		put.Mesh = meta.GetMesh()
	}
	if put.Name == "" {
		put.Name = meta.GetName()
	}
	if put.Collection == "" {
		return nil, grpcx.InvalidArgument("the policy's type is required", resource.Cause{Field: "type", Message: "must be set"})
	}
	r, err := i.srv.prepareWrite(ctx, put)
	if err != nil {
		return nil, err
	}
	if !policy.IsPolicy(r.Type()) {
		return nil, grpcx.InvalidArgument("only policies can be previewed", resource.Cause{Field: "type", Message: r.Type().Name + " is not a policy type"})
	}
	if warnings := i.srv.selectorTypos(ctx, r); len(warnings) > 0 {
		_ = grpc.SetHeader(ctx, metadata.MD{WarningHeader: warnings})
	}
	if err := i.configured(); err != nil {
		return nil, err
	}
	a, err := resource.ToAPI(r)
	if err != nil {
		return nil, err
	}
	fctx, cancel := forwardContext(ctx)
	defer cancel()
	out, err := i.xds.PreviewPolicy(fctx, &inspectv1.PreviewPolicyRequest{Policy: a, MaxProxies: req.GetMaxProxies()})
	if err != nil {
		return nil, i.unavailable(err)
	}
	return out, nil
}
