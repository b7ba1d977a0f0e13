package gateway

import (
	"context"
	"encoding/json"
	"net/http"

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
// first (OWNED_ELSEWHERE → 405), then grpc-gateway's table.
func HTTPStatus(st *status.Status) int {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == grpcx.ReasonOwnedElsewhere {
			return http.StatusMethodNotAllowed
		}
	}
	return runtime.HTTPStatusFromCode(st.Code())
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
				e.Causes = append(e.Causes, resource.Cause{Field: v.GetField(), Message: v.GetDescription()})
			}
		}
	}
	return code, e
}

// handleError writes errors as {title, details, causes}.
func handleError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, _ *http.Request, err error) {
	st, ok := status.FromError(err)
	if !ok {
		st = status.New(codes.Internal, "internal error")
	}
	code, body := ErrorBody(st)
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="weft"`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

// WriteError writes a REST error outside the gateway (routing, body limits).
func WriteError(w http.ResponseWriter, code int, details string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	t := titles[code]
	if t == "" {
		t = http.StatusText(code)
	}
	_ = json.NewEncoder(w).Encode(Error{Title: t, Details: details})
}
