// Package grpcx holds what every Weft gRPC server shares: OpenTelemetry,
// metrics, panic recovery, bearer-token authentication, and the one place
// where domain errors become gRPC status codes.
package grpcx

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/telemetry"
	"github.com/weftmesh/weft/pkg/token"
)

// MaxRecvMsgSize bounds every request message.
const MaxRecvMsgSize = 4 << 20

// Reasons carried in errdetails.ErrorInfo for errors whose HTTP mapping is
// not the gRPC default.
const (
	// ReasonOwnedElsewhere: the resource is owned by another control plane
	// (HTTP 405).
	ReasonOwnedElsewhere = "OWNED_ELSEWHERE"
	// ErrorDomain is the ErrorInfo domain of Weft errors.
	ErrorDomain = "weft.io"
)

// ServerOptions returns the options every Weft gRPC server uses, with
// extra interceptors (authentication) run after the shared ones.
func ServerOptions(log *slog.Logger, reg prometheus.Registerer, service string, unary []grpc.UnaryServerInterceptor, stream []grpc.StreamServerInterceptor, opts ...Option) []grpc.ServerOption {
	o := options{}
	for _, f := range opts {
		f(&o)
	}
	m := newMetrics(reg, service)
	// Metrics outside recovery, so a call that panicked is counted (as
	// Internal) like any other.
	u := append([]grpc.UnaryServerInterceptor{m.unary, recoverUnary(log), errorsUnary(log)}, unary...)
	s := append([]grpc.StreamServerInterceptor{m.stream, recoverStream(log), errorsStream(log)}, stream...)
	return []grpc.ServerOption{
		grpc.StatsHandler(otelgrpc.NewServerHandler(o.otel()...)),
		grpc.ChainUnaryInterceptor(u...),
		grpc.ChainStreamInterceptor(s...),
		grpc.MaxRecvMsgSize(MaxRecvMsgSize),
	}
}

// ClientOptions are the dial options for calls between Weft services.
func ClientOptions(opts ...Option) []grpc.DialOption {
	o := options{}
	for _, f := range opts {
		f(&o)
	}
	return []grpc.DialOption{grpc.WithStatsHandler(cancelNotError{otelgrpc.NewClientHandler(o.otel()...)})}
}

// cancelNotError keeps a call the client cancelled (a disconnect, a
// shutdown) from becoming an ERROR span: otelgrpc's client handler marks
// every non-OK code as an error. The span gets weft.rpc.canceled=true
// instead.
type cancelNotError struct{ stats.Handler }

func (h cancelNotError) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if e, ok := s.(*stats.End); ok && e.Error != nil && status.Code(e.Error) == codes.Canceled {
		trace.SpanFromContext(ctx).SetAttributes(attribute.Bool("weft.rpc.canceled", true))
		c := *e
		c.Error = nil
		s = &c
	}
	h.Handler.HandleRPC(ctx, s)
}

// Option configures the tracing of ServerOptions and ClientOptions.
type Option func(*options)

type options struct {
	tp      trace.TracerProvider
	noSpans map[string]bool
}

// WithTracerProvider makes the calls' spans with tp (the service's own
// provider) instead of the global one, so a span names its service also
// when several services share a process.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tp = tp }
}

// WithoutSpans gives calls to these methods (full names, e.g.
// "/pkg.Service/Method") no span of their own: long-lived streams, which
// make short spans per message or push instead of one open for hours.
func WithoutSpans(methods ...string) Option {
	return func(o *options) {
		if o.noSpans == nil {
			o.noSpans = map[string]bool{}
		}
		for _, m := range methods {
			o.noSpans[m] = true
		}
	}
}

// IncomingTrace returns ctx carrying the caller's trace context from the
// incoming metadata (traceparent), for calls WithoutSpans left without a
// span: their short spans then join or link to the caller's trace.
func IncomingTrace(ctx context.Context) context.Context {
	md, _ := metadata.FromIncomingContext(ctx)
	return telemetry.Propagator().Extract(ctx, mdCarrier(md))
}

// mdCarrier reads gRPC metadata as a propagation.TextMapCarrier.
type mdCarrier metadata.MD

func (c mdCarrier) Get(key string) string {
	if v := metadata.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c mdCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }

func (c mdCarrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}

func (o options) otel() []otelgrpc.Option {
	out := []otelgrpc.Option{otelgrpc.WithPropagators(telemetry.Propagator())}
	if o.tp != nil {
		out = append(out, otelgrpc.WithTracerProvider(o.tp))
	}
	if len(o.noSpans) > 0 {
		skip := o.noSpans
		out = append(out, otelgrpc.WithFilter(func(info *stats.RPCTagInfo) bool { return !skip[info.FullMethodName] }))
	}
	return out
}

// Status converts a domain error to a gRPC status error. Errors it does not
// know become Internal with a generic message (the cause is logged, not
// sent: it may hold details a caller should not see).
func Status(err error) error {
	if err == nil {
		return nil
	}
	// A status the handler built is passed on as is. A status wrapped in
	// another error came from a call the handler made (etcd, another
	// service, the transport): its text is not for the caller.
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return err
	}
	var ve *resource.ValidationError
	var de *resource.DecodeError
	var te *token.Error
	switch {
	case errors.As(err, &ve):
		return InvalidArgument("validation failed", ve.Causes...)
	case errors.As(err, &de):
		return InvalidArgument("could not decode the resource", de.AllCauses()...)
	case errors.As(err, &te):
		return status.Error(codes.Unauthenticated, te.Error())
	case store.IsMeshNotFound(err):
		var se *store.Error
		mesh := ""
		if errors.As(err, &se) {
			mesh = se.Mesh
		}
		return InvalidArgument("mesh does not exist", resource.Cause{Field: "mesh", Message: "mesh " + quote(mesh) + " does not exist"})
	case errors.Is(err, store.ErrInvalidContinue):
		return InvalidArgument("invalid offset", resource.Cause{Field: "offset", Message: "not a continue token from a previous page"})
	case store.IsNotFound(err):
		return status.Error(codes.NotFound, err.Error())
	case store.IsAlreadyExists(err):
		return status.Error(codes.AlreadyExists, err.Error())
	case store.IsConflict(err):
		return status.Error(codes.Aborted, err.Error())
	case store.IsUnavailable(err):
		return Unavailable(MsgUnavailable, ReasonUnavailable)
	case store.IsOutcomeUnknown(err):
		return Unavailable(MsgOutcomeUnknown, ReasonOutcomeUnknown)
	case store.IsUndecodable(err):
		var se *store.Error
		key := ""
		if errors.As(err, &se) {
			key = se.Key
		}
		return status.Error(codes.DataLoss, "the stored value of "+key+" cannot be decoded (sealed with a key that is no longer configured, or corrupt); "+
			"restore the key that sealed it, or delete the resource and create it again (see docs/deploy.md, 'Repairing an unreadable value')")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "canceled")
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unavailable:
			return Unavailable(MsgUnavailable, ReasonUnavailable)
		case codes.ResourceExhausted:
			return status.Error(codes.ResourceExhausted, "message too large")
		}
	}
	return status.Error(codes.Internal, "internal error")
}

// Messages of Unavailable errors; REST answers 503 with Retry-After.
const (
	MsgUnavailable    = "the store is temporarily unavailable; the request was not applied: retry later"
	MsgOutcomeUnknown = "the store did not confirm the write in time; it may or may not have been applied: read the resource before retrying"
)

// Reasons of Unavailable errors (errdetails.ErrorInfo), so clients can tell
// a write that was not applied from one that may have been.
const (
	ReasonUnavailable    = "UNAVAILABLE"
	ReasonOutcomeUnknown = "OUTCOME_UNKNOWN"
	// ReasonInUse: the resource is referenced by another and cannot be
	// removed (HTTP 409).
	ReasonInUse = "IN_USE"
)

// Unavailable builds an Unavailable status with a reason.
func Unavailable(msg, reason string) error {
	st := status.New(codes.Unavailable, msg)
	if ds, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain}); err == nil {
		st = ds
	}
	return st.Err()
}

// InUse builds the error for removing something another resource uses.
func InUse(msg string) error {
	st := status.New(codes.FailedPrecondition, msg)
	if ds, err := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonInUse, Domain: ErrorDomain}); err == nil {
		st = ds
	}
	return st.Err()
}

func quote(s string) string { return "\"" + s + "\"" }

// InvalidArgument builds an InvalidArgument status carrying field
// violations.
func InvalidArgument(msg string, causes ...resource.Cause) error {
	st := status.New(codes.InvalidArgument, msg)
	br := &errdetails.BadRequest{}
	for _, c := range causes {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: c.Field, Description: c.Description()})
	}
	if len(causes) > 0 {
		if ds, err := st.WithDetails(br); err == nil {
			st = ds
		}
	}
	return st.Err()
}

// OwnedElsewhere builds the error for a write to a resource another control
// plane owns.
func OwnedElsewhere(msg string) error {
	st := status.New(codes.FailedPrecondition, msg)
	if ds, err := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonOwnedElsewhere, Domain: ErrorDomain}); err == nil {
		st = ds
	}
	return st.Err()
}

func convert(log *slog.Logger, method string, err error) error {
	if err == nil {
		return nil
	}
	out := Status(err)
	switch s, _ := status.FromError(out); s.Code() {
	case codes.Internal, codes.DataLoss, codes.ResourceExhausted:
		log.Error("request failed", "method", method, "error", err)
	case codes.Unavailable:
		if out != err {
			log.Warn("request failed: store unavailable", "method", method, "error", err)
		}
	}
	return out
}

func errorsUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		return resp, convert(log, info.FullMethod, err)
	}
}

func errorsStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		return convert(log, info.FullMethod, h(srv, ss))
	}
}

func recoverUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if p := recover(); p != nil {
				log.Error("panic in handler", "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error")
			}
		}()
		return h(ctx, req)
	}
}

func recoverStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
		defer func() {
			if p := recover(); p != nil {
				log.Error("panic in handler", "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error")
			}
		}()
		return h(srv, ss)
	}
}

type metrics struct {
	handled *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer, service string) *metrics {
	m := &metrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weft_grpc_server_handled_total",
			Help: "gRPC calls completed, by method and code.", ConstLabels: prometheus.Labels{"service": service}}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "weft_grpc_server_handling_seconds",
			Help: "Latency of unary gRPC calls.", ConstLabels: prometheus.Labels{"service": service},
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"method"}),
	}
	if reg != nil {
		reg.MustRegister(m.handled, m.latency)
	}
	return m
}

func (m *metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	m.latency.WithLabelValues(info.FullMethod).Observe(time.Since(start).Seconds())
	m.handled.WithLabelValues(info.FullMethod, status.Code(Status(err)).String()).Inc()
	return resp, err
}

func (m *metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	err := h(srv, ss)
	m.handled.WithLabelValues(info.FullMethod, status.Code(Status(err)).String()).Inc()
	return err
}

// BearerToken returns the token of an "authorization: Bearer ..." header.
func BearerToken(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if t, ok := strings.CutPrefix(v, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
		if t, ok := strings.CutPrefix(v, "bearer "); ok {
			return strings.TrimSpace(t)
		}
	}
	return ""
}

type claimsKey struct{}

// WithClaims stores verified token claims in a context.
func WithClaims(ctx context.Context, c *token.Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// ClaimsFrom returns the verified claims of the caller, if any.
func ClaimsFrom(ctx context.Context) (*token.Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*token.Claims)
	return c, ok
}

// AuthFunc authenticates (and authorises) a call; it returns the context
// to continue with (carrying claims) or a status error.
type AuthFunc func(ctx context.Context, fullMethod string) (context.Context, error)

// Auth returns interceptors that run fn before every call.
func Auth(fn AuthFunc) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			ctx, err := fn(ctx, info.FullMethod)
			if err != nil {
				return nil, err
			}
			return h(ctx, req)
		}, func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			ctx, err := fn(ss.Context(), info.FullMethod)
			if err != nil {
				return err
			}
			return h(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
		}
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }

// TokenAuth authenticates callers by bearer token with keys and lets allow
// decide what the verified caller may call (nil allow admits any valid
// token). Methods in public skip authentication.
func TokenAuth(keys *token.Keys, allow func(c *token.Claims, fullMethod string) error, public ...string) AuthFunc {
	pub := map[string]bool{}
	for _, p := range public {
		pub[p] = true
	}
	return func(ctx context.Context, method string) (context.Context, error) {
		if pub[method] {
			return ctx, nil
		}
		tok := BearerToken(ctx)
		if tok == "" {
			return nil, status.Error(codes.Unauthenticated, "missing bearer token: send 'authorization: Bearer <token>'")
		}
		c, err := keys.Verify(ctx, tok)
		if err != nil {
			if token.IsInvalid(err) {
				return nil, status.Error(codes.Unauthenticated, err.Error())
			}
			return nil, status.Error(codes.Unavailable, "cannot verify token right now")
		}
		if allow != nil {
			if err := allow(c, method); err != nil {
				return nil, err
			}
		}
		return WithClaims(ctx, c), nil
	}
}
