// Command testapp is a proxyless gRPC application for the end-to-end tests.
// Started with GRPC_XDS_BOOTSTRAP pointing at weft-dp's bootstrap:
//
//	testapp server --port P   serves WhoAmI with xds.NewGRPCServer, replying
//	                          with the caller's SPIFFE ID (and $TESTAPP_NAME
//	                          after a space when set); prints SERVING.
//	testapp client --target xds:///backend.mesh
//	                          prints "CONTROL <addr>" and calls the target once
//	                          per GET /call, answering "OK <id>" or
//	                          "ERR <code> <message>".
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const method = "/weft.test.Echo/WhoAmI"

type echoServer interface{}

var desc = grpc.ServiceDesc{
	ServiceName: "weft.test.Echo",
	HandlerType: (*echoServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "WhoAmI",
		Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := &wrapperspb.StringValue{}
			if err := dec(in); err != nil {
				return nil, err
			}
			if name := os.Getenv("TESTAPP_NAME"); name != "" {
				return wrapperspb.String(peerID(ctx) + " " + name), nil
			}
			return wrapperspb.String(peerID(ctx)), nil
		},
	}},
}

func peerID(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return "anonymous"
	}
	var info credentials.TLSInfo
	switch a := p.AuthInfo.(type) {
	case credentials.TLSInfo:
		info = a
	case *credentials.TLSInfo:
		info = *a
	default:
		return "auth:" + p.AuthInfo.AuthType()
	}
	if len(info.State.PeerCertificates) == 0 {
		return "no-certificate"
	}
	for _, u := range info.State.PeerCertificates[0].URIs {
		return u.String()
	}
	return "no-uri"
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: testapp server --port P | client --target T")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "server":
		port, _ := strconv.Atoi(os.Args[3])
		serve(port)
	case "client":
		client(os.Args[3])
	}
}

func serve(port int) {
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		fail(err)
	}
	srv, err := xds.NewGRPCServer(grpc.Creds(creds), xds.ServingModeCallback(func(addr net.Addr, args xds.ServingModeChangeArgs) {
		fmt.Printf("MODE %s %v\n", args.Mode, args.Err)
		if args.Mode == connectivity.ServingModeServing {
			fmt.Println("SERVING")
		}
	}))
	if err != nil {
		fail(err)
	}
	srv.RegisterService(&desc, struct{}{})
	lis, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		fail(err)
	}
	if err := srv.Serve(lis); err != nil {
		fail(err)
	}
}

func client(target string) {
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		fail(err)
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		fail(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	fmt.Printf("CONTROL %s\n", lis.Addr())
	http.HandleFunc("/call", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		out := &wrapperspb.StringValue{}
		if err := conn.Invoke(ctx, method, wrapperspb.String("hi"), out); err != nil {
			st := status.Convert(err)
			fmt.Fprintf(w, "ERR %s %s", st.Code(), st.Message())
			return
		}
		fmt.Fprintf(w, "OK %s", out.GetValue())
	})
	_ = codes.OK
	fail(http.Serve(lis, nil))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "testapp:", err)
	os.Exit(1)
}
