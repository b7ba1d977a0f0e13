// Package greeter is the example proxyless gRPC service of the Weft
// walkthrough: a Greeter server that says which zone and instance served a
// call and who called it (the SPIFFE ID in the caller's certificate), and
// the client call. Both take their configuration from xDS (weft-dp writes
// the bootstrap and the certificates), so the code has no address, no
// certificate path and no policy in it.
//
// The service is one unary method on well-known protobuf types, so the
// example needs no generated code:
//
//	service weft.examples.greeter.v1.Greeter {
//	  rpc SayHello(google.protobuf.StringValue) returns (google.protobuf.StringValue);
//	}
//
// The serving zone and instance travel as response headers.
package greeter

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/xds"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Wire names of the service (one definition: server and client use these).
const (
	ServiceName  = "weft.examples.greeter.v1.Greeter"
	SayHello     = "/" + ServiceName + "/SayHello"
	HeaderZone   = "x-greeter-zone"
	HeaderServer = "x-greeter-instance"
	// MaxName bounds the name a caller sends (hostile input is capped).
	MaxName = 256
)

// Server answers SayHello.
type Server struct {
	// Zone and Instance are reported to callers.
	Zone, Instance string
}

// Hello is the reply text for a caller.
func (s *Server) Hello(ctx context.Context, name string) (string, error) {
	if len(name) > MaxName {
		name = name[:MaxName]
	}
	if err := grpc.SetHeader(ctx, metadata.Pairs(HeaderZone, s.Zone, HeaderServer, s.Instance)); err != nil {
		return "", err
	}
	return fmt.Sprintf("hello %s, from %s in %s; you are %s", name, s.Instance, s.Zone, CallerID(ctx)), nil
}

type greeterService interface{}

// Register adds the Greeter service to a gRPC server.
func (s *Server) Register(r grpc.ServiceRegistrar) {
	r.RegisterService(&grpc.ServiceDesc{
		ServiceName: ServiceName,
		HandlerType: (*greeterService)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "SayHello",
			Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				in := &wrapperspb.StringValue{}
				if err := dec(in); err != nil {
					return nil, err
				}
				out, err := s.Hello(ctx, in.GetValue())
				if err != nil {
					return nil, err
				}
				return wrapperspb.String(out), nil
			},
		}},
	}, struct{}{})
}

// CallerID is the caller's identity: the URI SAN (spiffe://<mesh>/<service>)
// of the certificate it presented, or "plaintext" when the call came
// without TLS (the mesh has mTLS off).
func CallerID(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return "plaintext"
	}
	var info credentials.TLSInfo
	switch a := p.AuthInfo.(type) {
	case credentials.TLSInfo:
		info = a
	case *credentials.TLSInfo:
		info = *a
	default:
		return "plaintext"
	}
	if len(info.State.PeerCertificates) == 0 || len(info.State.PeerCertificates[0].URIs) == 0 {
		return "anonymous"
	}
	return info.State.PeerCertificates[0].URIs[0].String()
}

// NewServer is a proxyless gRPC server: its listener, mTLS and
// authorization (RBAC from TrafficPermissions) come from the xds-server
// through the bootstrap named by GRPC_XDS_BOOTSTRAP. onMode is told when
// the server starts or stops serving (it serves only once the xds-server
// sent its listener).
func NewServer(s *Server, onMode func(serving bool, err error)) (*xds.GRPCServer, error) {
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		return nil, err
	}
	srv, err := xds.NewGRPCServer(grpc.Creds(creds), xds.ServingModeCallback(func(_ net.Addr, args xds.ServingModeChangeArgs) {
		if onMode != nil {
			onMode(args.Mode == connectivity.ServingModeServing, args.Err)
		}
	}))
	if err != nil {
		return nil, err
	}
	s.Register(srv)
	return srv, nil
}

// Dial connects to a target such as xds:///greeter.mesh with xDS
// credentials: mTLS with the certificates weft-dp keeps fresh when the
// mesh has mTLS on, plaintext otherwise.
func Dial(target string) (*grpc.ClientConn, error) {
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		return nil, err
	}
	return grpc.NewClient(target, grpc.WithTransportCredentials(creds))
}

// Reply is the outcome of one call.
type Reply struct {
	Message, Zone, Instance string
}

// Call says hello once.
func Call(ctx context.Context, conn *grpc.ClientConn, name string) (Reply, error) {
	var hdr metadata.MD
	out := &wrapperspb.StringValue{}
	if err := conn.Invoke(ctx, SayHello, wrapperspb.String(name), out, grpc.Header(&hdr)); err != nil {
		return Reply{}, err
	}
	first := func(k string) string {
		if v := hdr.Get(k); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	return Reply{Message: out.GetValue(), Zone: first(HeaderZone), Instance: first(HeaderServer)}, nil
}
