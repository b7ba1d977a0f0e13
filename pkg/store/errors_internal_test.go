package store

import (
	"context"
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestClassify pins how etcd client errors become store errors: a write
// caught by a timeout or a leader change has an unknown outcome (it may
// have been applied), a refusal before it was proposed (no leader) was not
// applied, reads are simply unavailable, and the caller's own cancellation
// is not etcd's fault.
func TestClassify(t *testing.T) {
	bg := context.Background()
	canceled, cancel := context.WithCancel(bg)
	cancel()
	for _, tc := range []struct {
		name   string
		parent context.Context
		err    error
		write  bool
		want   error
	}{
		{"write timed out", bg, rpctypes.ErrTimeout, true, ErrOutcomeUnknown},
		{"write leader changed", bg, rpctypes.ErrLeaderChanged, true, ErrOutcomeUnknown},
		{"write lost leader", bg, rpctypes.ErrTimeoutDueToLeaderFail, true, ErrOutcomeUnknown},
		{"write no leader", bg, rpctypes.ErrNoLeader, true, ErrUnavailable},
		{"write store deadline", bg, context.DeadlineExceeded, true, ErrOutcomeUnknown},
		{"write unreachable", bg, status.Error(codes.Unavailable, "connection refused"), true, ErrOutcomeUnknown},
		{"write too large", bg, status.Error(codes.ResourceExhausted, "request is too large"), true, ErrUnavailable},
		{"read timed out", bg, rpctypes.ErrTimeout, false, ErrUnavailable},
		{"read store deadline", bg, context.DeadlineExceeded, false, ErrUnavailable},
		{"read unreachable", bg, status.Error(codes.Unavailable, "connection refused"), false, ErrUnavailable},
		{"caller canceled", canceled, context.Canceled, true, context.Canceled},
	} {
		got := classify(tc.parent, tc.err, "Mesh/m", tc.write)
		if !errors.Is(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := classify(bg, errors.New("odd"), "Mesh/m", true); IsUnavailable(got) || IsOutcomeUnknown(got) {
		t.Errorf("an unknown error is not a fault class: %v", got)
	}
}
