package gateway

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/pkg/grpcx"
)

// TestTransportErrorsAreNotSentVerbatim: gRPC transport errors between the
// gateway and the server become a generic answer (the detail goes to the
// log only); store unavailability is 503 with Retry-After; IN_USE is 409.
func TestTransportErrorsAreNotSentVerbatim(t *testing.T) {
	var logs bytes.Buffer
	h := errorHandler(slog.New(slog.NewTextHandler(&logs, nil)))
	for _, tc := range []struct {
		err        error
		code       int
		retryAfter bool
		hidden     string
	}{
		{status.Error(codes.ResourceExhausted, "trying to send message larger than max (3360296 vs. 2097152)"), 500, false, "3360296"},
		{status.Error(codes.ResourceExhausted, "grpc: received message larger than max (70000000 vs. 67108864)"), 500, false, "67108864"},
		{status.Error(codes.Unknown, "some panic text"), 500, false, "panic"},
		{status.Error(codes.Unavailable, "connection error: desc = \"transport: Error while dialing\""), 503, true, "dialing"},
		{grpcx.Unavailable(grpcx.MsgOutcomeUnknown, grpcx.ReasonOutcomeUnknown), 503, true, "etcd"},
		{status.Error(codes.DeadlineExceeded, "deadline exceeded"), 504, true, "context"},
		{grpcx.InUse(`secret "k" is used by mesh "m"`), 409, false, "etcd"},
	} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/meshes", nil)
		logs.Reset()
		h(context.Background(), nil, nil, w, r, tc.err)
		body, _ := io.ReadAll(w.Result().Body)
		if w.Code != tc.code || (w.Header().Get("Retry-After") != "") != tc.retryAfter {
			t.Errorf("%v: %d Retry-After=%q: %s", tc.err, w.Code, w.Header().Get("Retry-After"), body)
		}
		if strings.Contains(string(body), tc.hidden) {
			t.Errorf("%v: body leaks %q: %s", tc.err, tc.hidden, body)
		}
		if w.Code == http.StatusInternalServerError && !strings.Contains(logs.String(), tc.hidden) {
			t.Errorf("%v: the detail should be logged: %s", tc.err, logs.String())
		}
	}
}

// The 401 body quotes the header to send as written: <token>, not
// \u003ctoken\u003e.
func TestErrorBodyIsNotHTMLEscaped(t *testing.T) {
	h := errorHandler(slog.New(slog.NewTextHandler(io.Discard, nil)))
	w := httptest.NewRecorder()
	h(context.Background(), nil, nil, w, httptest.NewRequest("GET", "/meshes", nil),
		status.Error(codes.Unauthenticated, "missing bearer token: send 'authorization: Bearer <token>'"))
	body, _ := io.ReadAll(w.Result().Body)
	if w.Code != 401 || !strings.Contains(string(body), `Bearer <token>`) || strings.Contains(string(body), `\u003c`) {
		t.Fatalf("%d %s", w.Code, body)
	}
	w = httptest.NewRecorder()
	WriteError(w, 404, "no route for <this>")
	if body, _ := io.ReadAll(w.Result().Body); !strings.Contains(string(body), "<this>") {
		t.Fatalf("WriteError: %s", body)
	}
}
