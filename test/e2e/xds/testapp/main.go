// Command testapp is a proxyless gRPC application for the end-to-end tests.
// Started with GRPC_XDS_BOOTSTRAP pointing at weft-dp's bootstrap:
//
//	testapp server --port P   serves WhoAmI with xds.NewGRPCServer, replying
//	                          with the caller's SPIFFE ID (and $TESTAPP_NAME
//	                          after a space when set); prints SERVING.
//	                          --name N replies N instead; --fail-every K fails
//	                          every K-th call with Unavailable; --delay D
//	                          answers after D.
//	testapp client --target xds:///backend.mesh
//	                          prints "CONTROL <addr>" and calls the target once
//	                          per GET /call, answering "OK <id>" or
//	                          "ERR <code> <message>". GET /calls?n=N&target=T
//	                          makes N calls (to T, default --target) one after
//	                          the other and answers JSON {"<reply or code>":
//	                          count, …}; &deadline=D sets each call's deadline
//	                          (default 10s).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
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

// Server behaviour (flags of "server").
var (
	replyName string
	failEvery int64
	delay     time.Duration
	calls     atomic.Int64
)

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
			n := calls.Add(1)
			if failEvery > 0 && n%failEvery == 0 {
				return nil, status.Errorf(codes.Unavailable, "%s fails call %d", replyName, n)
			}
			if delay > 0 {
				select {
				case <-time.After(delay):
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			if replyName != "" {
				return wrapperspb.String(replyName), nil
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
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	port := fs.Int("port", 0, "server port")
	target := fs.String("target", "", "client target")
	fs.StringVar(&replyName, "name", "", "reply this instead of the caller's identity")
	fs.Int64Var(&failEvery, "fail-every", 0, "fail every k-th call with Unavailable")
	fs.DurationVar(&delay, "delay", 0, "answer after this long")
	_ = fs.Parse(os.Args[2:])
	switch os.Args[1] {
	case "server":
		serve(*port)
	case "client":
		client(*target)
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
	var (
		mu    sync.Mutex
		conns = map[string]*grpc.ClientConn{target: conn}
	)
	http.HandleFunc("/calls", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		t := r.URL.Query().Get("target")
		if t == "" {
			t = target
		}
		deadline := 10 * time.Second
		if d, err := time.ParseDuration(r.URL.Query().Get("deadline")); err == nil {
			deadline = d
		}
		mu.Lock()
		c := conns[t]
		if c == nil {
			if c, err = grpc.NewClient(t, grpc.WithTransportCredentials(creds)); err != nil {
				mu.Unlock()
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			conns[t] = c
		}
		mu.Unlock()
		counts := map[string]int{}
		for i := 0; i < n && i < 100000; i++ {
			ctx, cancel := context.WithTimeout(r.Context(), deadline)
			out := &wrapperspb.StringValue{}
			if err := c.Invoke(ctx, method, wrapperspb.String("hi"), out); err != nil {
				counts["ERR "+status.Code(err).String()]++
			} else {
				counts[out.GetValue()]++
			}
			cancel()
		}
		_ = json.NewEncoder(w).Encode(counts)
	})
	_ = codes.OK
	fail(http.Serve(lis, nil))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "testapp:", err)
	os.Exit(1)
}
