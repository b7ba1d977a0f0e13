package grpcx_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/pkg/grpcx"
	"github.com/weftmesh/weft/pkg/store"
)

func reason(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

// TestStatusMapsStoreErrorsAndHidesInternals pins the one mapping of
// domain errors to gRPC codes: store faults become Unavailable with a
// reason saying whether a write may have been applied; transport and etcd
// errors wrapped by a handler never reach the caller verbatim.
func TestStatusMapsStoreErrorsAndHidesInternals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		code   codes.Code
		reason string
		hidden string
	}{
		{"unavailable", &store.Error{Err: store.ErrUnavailable, Key: "Mesh/m", Reason: "etcd: etcdserver: no leader"}, codes.Unavailable, grpcx.ReasonUnavailable, "etcdserver"},
		{"outcome unknown", &store.Error{Err: store.ErrOutcomeUnknown, Key: "Mesh/m", Reason: "etcd: etcdserver: request timed out"}, codes.Unavailable, grpcx.ReasonOutcomeUnknown, "etcdserver"},
		{"undecodable", &store.Error{Err: store.ErrUndecodable, Key: "Secret/m/s", Reason: "seal: value was sealed with key \"k1\""}, codes.DataLoss, "", "seal:"},
		{"wrapped etcd status", fmt.Errorf("read keys: %w", rpctypes.ErrGRPCTimeout), codes.Unavailable, grpcx.ReasonUnavailable, "etcdserver"},
		{"wrapped transport limit", fmt.Errorf("call: %w", status.Error(codes.ResourceExhausted, "trying to send message larger than max (3360296 vs. 2097152)")), codes.ResourceExhausted, "", "3360296"},
		{"wrapped internal", fmt.Errorf("x: %w", status.Error(codes.Internal, "secret detail")), codes.Internal, "", "secret detail"},
		{"plain error", errors.New("open /etc/weft/key: permission denied"), codes.Internal, "", "/etc/weft"},
		{"deadline", fmt.Errorf("get: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "", "get:"},
	} {
		st, _ := status.FromError(grpcx.Status(tc.err))
		if st.Code() != tc.code || reason(st) != tc.reason {
			t.Errorf("%s: %v %q reason %q, want %v %q", tc.name, st.Code(), st.Message(), reason(st), tc.code, tc.reason)
		}
		if strings.Contains(st.Message(), tc.hidden) {
			t.Errorf("%s: message leaks %q: %s", tc.name, tc.hidden, st.Message())
		}
	}
	// A status the handler built itself passes as is.
	own := status.Error(codes.PermissionDenied, "a dataplane token may read only its own Dataplane")
	if got := grpcx.Status(own); got != own {
		t.Fatalf("own status changed: %v", got)
	}
	if st, _ := status.FromError(grpcx.InUse("secret used")); st.Code() != codes.FailedPrecondition || reason(st) != grpcx.ReasonInUse {
		t.Fatalf("InUse: %v", st)
	}
}
