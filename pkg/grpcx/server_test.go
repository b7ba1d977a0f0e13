package grpcx

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/token"
)

// handlers are what the test service's methods do; each test sets its own.
type handlers struct {
	unary  func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error)
	stream func(ctx context.Context) error
}

const (
	methodUnary  = "/weft.test.T/Unary"
	methodStream = "/weft.test.T/Stream"
)

func serviceDesc(h *handlers) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "weft.test.T",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Unary", Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			in := &wrapperspb.StringValue{}
			if err := dec(in); err != nil {
				return nil, err
			}
			call := func(ctx context.Context, req any) (any, error) { return h.unary(ctx, req.(*wrapperspb.StringValue)) }
			if icpt == nil {
				return call(ctx, in)
			}
			return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: methodUnary}, call)
		}}},
		Streams: []grpc.StreamDesc{{StreamName: "Stream", ServerStreams: true, ClientStreams: true, Handler: func(srv any, ss grpc.ServerStream) error {
			return h.stream(ss.Context())
		}}},
	}
}

// serve runs a real gRPC server with ServerOptions (plus extra interceptors)
// on 127.0.0.1:0 and returns a client connection to it.
func serve(t *testing.T, h *handlers, reg prometheus.Registerer, unary []grpc.UnaryServerInterceptor, stream []grpc.StreamServerInterceptor) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(ServerOptions(slog.New(slog.NewTextHandler(io.Discard, nil)), reg, "test", unary, stream)...)
	var impl any
	srv.RegisterService(serviceDesc(h), impl)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), append(ClientOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
		wg.Wait()
	})
	return conn
}

func callUnary(ctx context.Context, conn *grpc.ClientConn, in string) (string, error) {
	out := &wrapperspb.StringValue{}
	err := conn.Invoke(ctx, methodUnary, wrapperspb.String(in), out)
	return out.GetValue(), err
}

func callStream(ctx context.Context, conn *grpc.ClientConn) error {
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, methodStream)
	if err != nil {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	return s.RecvMsg(&wrapperspb.StringValue{})
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestServerErrorsAndMetrics: through a real server, domain errors arrive as
// their gRPC codes, panics become Internal without killing the server, and
// every call is counted by method and code.
func TestServerErrorsAndMetrics(t *testing.T) {
	ctx := testCtx(t)
	reg := prometheus.NewRegistry()
	h := &handlers{}
	h.unary = func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		switch in.GetValue() {
		case "ok":
			return wrapperspb.String("fine"), nil
		case "panic":
			panic("boom")
		case "invalid":
			v := resource.NewValidator()
			v.Field("networking").Field("address").Addf("must not be empty")
			return nil, v.Err()
		case "notfound":
			return nil, &store.Error{Err: store.ErrNotFound, Key: "/secret/key"}
		case "secret":
			return nil, errors.New("dial 10.1.2.3: password=hunter2")
		}
		return nil, status.Error(codes.Unimplemented, in.GetValue())
	}
	h.stream = func(context.Context) error { panic("stream boom") }
	conn := serve(t, h, reg, nil, nil)

	if out, err := callUnary(ctx, conn, "ok"); err != nil || out != "fine" {
		t.Fatalf("ok: %q %v", out, err)
	}
	_, err := callUnary(ctx, conn, "panic")
	if st := status.Convert(err); st.Code() != codes.Internal || st.Message() != "internal error" {
		t.Fatalf("panic: %v", err)
	}
	if err := callStream(ctx, conn); status.Code(err) != codes.Internal {
		t.Fatalf("stream panic: %v", err)
	}
	// The server survived the panics.
	if _, err := callUnary(ctx, conn, "ok"); err != nil {
		t.Fatalf("after panic: %v", err)
	}
	_, err = callUnary(ctx, conn, "invalid")
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("validation: %v", err)
	}
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, f := range br.GetFieldViolations() {
				fields = append(fields, f.GetField())
			}
		}
	}
	if strings.Join(fields, ",") != "networking.address" {
		t.Fatalf("field violations %v", fields)
	}
	if _, err := callUnary(ctx, conn, "notfound"); status.Code(err) != codes.NotFound {
		t.Fatalf("not found: %v", err)
	}
	// An unknown error is Internal with a generic message: its text stays
	// on the server.
	_, err = callUnary(ctx, conn, "secret")
	if st := status.Convert(err); st.Code() != codes.Internal || strings.Contains(st.Message(), "hunter2") {
		t.Fatalf("unknown error leaked or mis-mapped: %v", err)
	}
	// A status error passes through unchanged.
	if _, err := callUnary(ctx, conn, "teapot"); status.Code(err) != codes.Unimplemented || status.Convert(err).Message() != "teapot" {
		t.Fatalf("status passthrough: %v", err)
	}

	for _, c := range []struct {
		method, code string
		want         float64
	}{
		{methodUnary, "OK", 2}, {methodUnary, "Internal", 2}, {methodUnary, "InvalidArgument", 1},
		{methodUnary, "NotFound", 1}, {methodUnary, "Unimplemented", 1}, {methodStream, "Internal", 1},
	} {
		got := handled(t, reg, c.method, c.code)
		if got != c.want {
			t.Errorf("handled{%s,%s} = %v, want %v", c.method, c.code, got, c.want)
		}
	}
}

// handled reads weft_grpc_server_handled_total{method,code} from reg.
func handled(t *testing.T, reg *prometheus.Registry, method, code string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "weft_grpc_server_handled_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["method"] == method && l["code"] == code && l["service"] == "test" {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestMaxRecvMsgSize: a request over the limit is refused before a handler
// sees it.
func TestMaxRecvMsgSize(t *testing.T) {
	ctx := testCtx(t)
	called := false
	h := &handlers{unary: func(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		called = true
		return wrapperspb.String(""), nil
	}}
	conn := serve(t, h, nil, nil, nil)
	_, err := callUnary(ctx, conn, strings.Repeat("x", MaxRecvMsgSize+1))
	if status.Code(err) != codes.ResourceExhausted || called {
		t.Fatalf("oversized request: %v (handler called: %v)", err, called)
	}
}

func TestBearerToken(t *testing.T) {
	for _, c := range []struct {
		md   []string
		want string
	}{
		{nil, ""},
		{[]string{"authorization", "Bearer abc"}, "abc"},
		{[]string{"authorization", "bearer  abc "}, "abc"},
		{[]string{"authorization", "Basic dXNlcg=="}, ""},
		{[]string{"authorization", "Basic x", "authorization", "Bearer second"}, "second"},
		{[]string{"authorization", "Bearerabc"}, ""},
	} {
		ctx := context.Background()
		if c.md != nil {
			ctx = metadata.NewIncomingContext(ctx, metadata.Pairs(c.md...))
		}
		if got := BearerToken(ctx); got != c.want {
			t.Errorf("%q: %q, want %q", c.md, got, c.want)
		}
	}
}

// TestTokenAuth: through a real server and real tokens (keys in a real
// etcd): no token and a bad token are Unauthenticated, the allow function
// decides what a verified caller may call, public methods skip
// authentication, and the handler sees the verified claims (unary and
// stream).
func TestTokenAuth(t *testing.T) {
	ctx := testCtx(t)
	ring, err := seal.New(seal.Key{ID: "k1", Bytes: make([]byte, seal.KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(etcdtest.Client(t, nil), store.WithKeyring(ring))
	keys := token.New(st)
	issue := func(kind, subject string) string {
		tok, _, err := keys.Issue(ctx, token.Claims{Kind: kind, RegisteredClaims: jwt.RegisteredClaims{Subject: subject}}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	allow := func(c *token.Claims, method string) error {
		if c.Name() == "mallory" {
			return status.Error(codes.PermissionDenied, "not you")
		}
		return nil
	}
	u, s := Auth(TokenAuth(keys, allow, "/public/Method"))
	h := &handlers{}
	h.unary = func(ctx context.Context, _ *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		c, ok := ClaimsFrom(ctx)
		if !ok {
			return nil, status.Error(codes.Internal, "no claims")
		}
		return wrapperspb.String(c.Name()), nil
	}
	h.stream = func(ctx context.Context) error {
		if c, ok := ClaimsFrom(ctx); !ok || c.Name() != "alice" {
			return status.Error(codes.Internal, "no claims on the stream")
		}
		return nil
	}
	conn := serve(t, h, nil, []grpc.UnaryServerInterceptor{u}, []grpc.StreamServerInterceptor{s})
	with := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}

	if _, err := callUnary(ctx, conn, ""); status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "Bearer") {
		t.Fatalf("no token: %v (the error should say how to send one)", err)
	}
	if _, err := callUnary(with("not.a.token"), conn, ""); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("bad token: %v", err)
	}
	alice := issue(token.KindUser, "alice")
	// A token with one byte changed does not verify.
	i := len(alice) - 10
	flip := byte('A')
	if alice[i] == 'A' {
		flip = 'B'
	}
	forged := alice[:i] + string(flip) + alice[i+1:]
	if _, err := callUnary(with(forged), conn, ""); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("forged token: %v", err)
	}
	// Claims are derived from the verified token: a token signed by another
	// key (another control plane) naming the same subject fails.
	otherRing, _ := seal.New(seal.Key{ID: "k1", Bytes: make([]byte, seal.KeySize)})
	other := token.New(store.New(etcdtest.Client(t, nil), store.WithKeyring(otherRing)))
	foreign, _, err := other.Issue(ctx, token.Claims{Kind: token.KindUser, RegisteredClaims: jwt.RegisteredClaims{Subject: "alice"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := callUnary(with(foreign), conn, ""); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("token of another control plane: %v", err)
	}
	if out, err := callUnary(with(alice), conn, ""); err != nil || out != "alice" {
		t.Fatalf("valid token: %q %v", out, err)
	}
	if err := callStream(with(alice), conn); err != nil && err != io.EOF {
		t.Fatalf("stream with a valid token: %v", err)
	}
	if err := callStream(ctx, conn); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("stream without a token: %v", err)
	}
	if _, err := callUnary(with(issue(token.KindUser, "mallory")), conn, ""); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("denied by allow: %v", err)
	}

	// Public methods skip authentication (checked on the AuthFunc: the test
	// service has no public method).
	if c, err := TokenAuth(keys, allow, "/public/Method")(ctx, "/public/Method"); err != nil || c != ctx {
		t.Fatalf("public method: %v", err)
	}
}

func TestOwnedElsewhere(t *testing.T) {
	st := status.Convert(OwnedElsewhere("zone z owns it"))
	if st.Code() != codes.FailedPrecondition || st.Message() != "zone z owns it" {
		t.Fatalf("%v", st)
	}
	found := false
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetReason() == ReasonOwnedElsewhere && ei.GetDomain() == ErrorDomain {
			found = true
		}
	}
	if !found {
		t.Fatal("no OWNED_ELSEWHERE ErrorInfo")
	}
	// InvalidArgument without causes carries no details.
	if d := status.Convert(InvalidArgument("bad")).Details(); len(d) != 0 {
		t.Fatalf("details %v", d)
	}
}
