package gateway

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/pkg/grpcx"
	"github.com/weftmesh/weft/pkg/resource"
)

// Error is the REST error body.
type Error struct {
	Title   string           `json:"title"`
	Details string           `json:"details"`
	Causes  []resource.Cause `json:"causes,omitempty"`
}

var titles = map[int]string{
	http.StatusBadRequest:            "Bad Request",
	http.StatusUnauthorized:          "Unauthorized",
	http.StatusForbidden:             "Forbidden",
	http.StatusNotFound:              "Not Found",
	http.StatusMethodNotAllowed:      "Method Not Allowed",
	http.StatusConflict:              "Conflict",
	http.StatusRequestEntityTooLarge: "Request Entity Too Large",
}

// HTTPStatus maps a gRPC status to the REST status: Weft's own reasons
// first (OWNED_ELSEWHERE → 405, IN_USE → 409), then grpc-gateway's table.
func HTTPStatus(st *status.Status) int {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			switch info.GetReason() {
			case grpcx.ReasonOwnedElsewhere:
				return http.StatusMethodNotAllowed
			case grpcx.ReasonInUse:
				return http.StatusConflict
			}
		}
	}
	return runtime.HTTPStatusFromCode(st.Code())
}

// RetryAfterSeconds is the Retry-After of 503 and 504 answers.
const RetryAfterSeconds = "2"

// sanitize keeps transport errors (raised by gRPC itself between the
// gateway and the server, after the server's error mapping) from reaching
// clients verbatim: their text names limits and internals. It returns the
// status to send and whether the original was replaced.
func sanitize(st *status.Status) (*status.Status, bool) {
	msg := st.Message()
	switch st.Code() {
	case codes.Unknown, codes.Internal:
		if msg != "internal error" {
			return status.New(codes.Internal, "internal error"), true
		}
	case codes.ResourceExhausted:
		// "trying to send message larger than max (N vs. M)", "grpc:
		// received message larger than max": a response over a transport
		// limit (request bodies are refused earlier, with 413).
		if strings.Contains(msg, "larger than max") || strings.HasPrefix(msg, "grpc:") {
			return status.New(codes.Internal, "internal error: the response is too large; ask for fewer items (size)"), true
		}
	case codes.Unavailable:
		if strings.HasPrefix(msg, "connection error") || strings.Contains(msg, "transport") || strings.HasPrefix(msg, "grpc:") {
			return status.New(codes.Unavailable, grpcx.MsgUnavailable), true
		}
	}
	return st, false
}

// ErrorBody builds the REST error body of a gRPC status.
func ErrorBody(st *status.Status) (int, Error) {
	code := HTTPStatus(st)
	e := Error{Title: titles[code], Details: st.Message()}
	if e.Title == "" {
		e.Title = http.StatusText(code)
	}
	if st.Code() == codes.InvalidArgument {
		e.Title = "Could not process the resource"
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				e.Causes = append(e.Causes, resource.CauseFromDescription(v.GetField(), v.GetDescription()))
			}
		}
	}
	return code, e
}

// errorHandler writes errors as {title, details, causes}; errors that are
// not the server's own are logged and answered generically.
func errorHandler(log *slog.Logger) runtime.ErrorHandlerFunc {
	return func(ctx context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
		st, ok := status.FromError(err)
		if !ok {
			log.ErrorContext(ctx, "request failed", "method", r.Method, "path", r.URL.Path, "error", err)
			st = status.New(codes.Internal, "internal error")
		} else if clean, replaced := sanitize(st); replaced {
			log.ErrorContext(ctx, "request failed in transport", "method", r.Method, "path", r.URL.Path, "code", st.Code().String(), "error", st.Message())
			st = clean
		}
		writeStatus(w, st)
	}
}

func writeStatus(w http.ResponseWriter, st *status.Status) {
	code, body := ErrorBody(st)
	switch code {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="weft"`)
	case http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		w.Header().Set("Retry-After", RetryAfterSeconds)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	writeJSON(w, body)
}

// writeJSON encodes v without HTML escaping: error details quote commands
// such as 'authorization: Bearer <token>', which must read as written, not
// as \u003ctoken\u003e (the body is application/json, never HTML).
func writeJSON(w http.ResponseWriter, v any) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// WriteError writes a REST error outside the gateway (routing, body limits).
func WriteError(w http.ResponseWriter, code int, details string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	t := titles[code]
	if t == "" {
		t = http.StatusText(code)
	}
	writeJSON(w, Error{Title: t, Details: details})
}
