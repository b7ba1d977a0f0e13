package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/api-server/internal/server"
	apiv1 "github.com/weftmesh/weft/proto/gen/go/weft/api/v1"
	inspectv1 "github.com/weftmesh/weft/proto/gen/go/weft/inspect/v1"
)

// New returns the REST handler, calling the gRPC services over conn (so
// REST requests pass the same interceptors: auth, metrics, errors).
// Errors that are not the server's own (transport) are logged on log.
func New(ctx context.Context, conn *grpc.ClientConn, log *slog.Logger) (http.Handler, error) {
	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, NewMarshaler()),
		runtime.WithErrorHandler(errorHandler(log)),
		runtime.WithRoutingErrorHandler(func(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, code int) {
			details := "no such route: " + r.Method + " " + r.URL.Path
			if code == http.StatusMethodNotAllowed {
				details = "method " + r.Method + " is not allowed on " + r.URL.Path
			}
			WriteError(w, code, details)
		}),
		runtime.WithMetadata(func(_ context.Context, r *http.Request) metadata.MD {
			return metadata.Pairs(server.RequestURLHeader, requestURL(r))
		}),
		runtime.WithOutgoingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithForwardResponseOption(setStatus),
	)
	for _, reg := range []func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
		apiv1.RegisterResourceServiceHandler, apiv1.RegisterTokenServiceHandler, apiv1.RegisterControlPlaneServiceHandler,
		inspectv1.RegisterInspectServiceHandler,
	} {
		if err := reg(ctx, mux, conn); err != nil {
			return nil, err
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > MaxBodySize {
			WriteError(w, http.StatusRequestEntityTooLarge, tooLarge)
			return
		}
		if r.Body != nil && r.Body != http.NoBody && r.ContentLength < 0 {
			// A body of unknown length (chunked) is read here, up to the
			// limit, so one over it is 413 like a sized one (not a 400
			// from the decoder).
			data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodySize))
			var mbe *http.MaxBytesError
			switch {
			case errors.As(err, &mbe):
				WriteError(w, http.StatusRequestEntityTooLarge, tooLarge)
				return
			case err != nil:
				WriteError(w, http.StatusBadRequest, "could not read the request body")
				return
			}
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(data)), int64(len(data))
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodySize)
		if (r.Method == http.MethodPut || r.Method == http.MethodPost) && r.URL.Query().Has(DryRunParam) {
			serveDryRun(w, r, conn)
			return
		}
		if r.Method == http.MethodGet {
			if mesh, coll, name, ok := insightPath(r.URL.Path); ok {
				serveInsightItem(w, r, conn, mesh, coll, name)
				return
			}
			if r.URL.Path == GlobalInsightPath {
				serveGlobalInsight(w, r, conn)
				return
			}
			if mesh, name, ok := policiesPath(r.URL.Path); ok {
				servePolicies(w, r, conn, mesh, name)
				return
			}
		}
		mux.ServeHTTP(w, r)
	}), nil
}

// requestURL is the request's full URL, for list responses' next links:
// the scheme the request came over and the Host it named; only the path
// when the Host is not a plain host[:port].
func requestURL(r *http.Request) string {
	if r.Host == "" || len(r.Host) > 255 || strings.ContainsAny(r.Host, "/?#@\\ ") {
		return r.URL.RequestURI()
	}
	if _, err := url.Parse("http://" + r.Host + "/"); err != nil {
		return r.URL.RequestURI()
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.URL.RequestURI()
}

var tooLarge = fmt.Sprintf("request body is too large: the limit is %d bytes", MaxBodySize)

// setStatus answers 201 to a Put that created its resource.
func setStatus(ctx context.Context, w http.ResponseWriter, _ proto.Message) error {
	md, ok := runtime.ServerMetadataFromContext(ctx)
	if !ok {
		return nil
	}
	for _, warning := range md.HeaderMD.Get(server.WarningHeader) {
		// RFC 7234 form, as Kubernetes sends it: 299 - "text".
		w.Header().Add("Warning", `299 - `+strconv.Quote(warning))
	}
	if v := md.HeaderMD.Get(server.CreatedHeader); len(v) > 0 && strings.EqualFold(v[0], "true") {
		w.WriteHeader(http.StatusCreated)
	}
	return nil
}
