package gateway

import (
	"context"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/api-server/internal/server"
	apiv1 "github.com/weftmesh/weft/proto/gen/go/weft/api/v1"
)

// New returns the REST handler, calling the gRPC services over conn (so
// REST requests pass the same interceptors: auth, metrics, errors).
func New(ctx context.Context, conn *grpc.ClientConn) (http.Handler, error) {
	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, NewMarshaler()),
		runtime.WithErrorHandler(handleError),
		runtime.WithRoutingErrorHandler(func(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, code int) {
			details := "no such route: " + r.Method + " " + r.URL.Path
			if code == http.StatusMethodNotAllowed {
				details = "method " + r.Method + " is not allowed on " + r.URL.Path
			}
			WriteError(w, code, details)
		}),
		runtime.WithMetadata(func(_ context.Context, r *http.Request) metadata.MD {
			return metadata.Pairs(server.RequestURLHeader, r.URL.RequestURI())
		}),
		runtime.WithOutgoingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithForwardResponseOption(setStatus),
	)
	for _, reg := range []func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
		apiv1.RegisterResourceServiceHandler, apiv1.RegisterTokenServiceHandler, apiv1.RegisterControlPlaneServiceHandler,
	} {
		if err := reg(ctx, mux, conn); err != nil {
			return nil, err
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > MaxBodySize {
			WriteError(w, http.StatusRequestEntityTooLarge, "request body is too large")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodySize)
		mux.ServeHTTP(w, r)
	}), nil
}

// setStatus answers 201 to a Put that created its resource.
func setStatus(ctx context.Context, w http.ResponseWriter, _ proto.Message) error {
	md, ok := runtime.ServerMetadataFromContext(ctx)
	if !ok {
		return nil
	}
	if v := md.HeaderMD.Get(server.CreatedHeader); len(v) > 0 && strings.EqualFold(v[0], "true") {
		w.WriteHeader(http.StatusCreated)
	}
	return nil
}
