// Package store keeps resources in etcd: CRUD with optimistic concurrency,
// paginated lists, watches that resume and survive compaction, and sealing
// of secret types.
package store

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors. Callers test with the Is* helpers or errors.Is.
var (
	ErrNotFound      = errors.New("not found")
	ErrAlreadyExists = errors.New("already exists")
	// ErrConflict is a write whose expected version is no longer current.
	ErrConflict = errors.New("version conflict")
	// ErrMeshNotFound is a write into a mesh that does not exist.
	ErrMeshNotFound = errors.New("mesh not found")
	// ErrInvalidContinue is a malformed pagination token.
	ErrInvalidContinue = errors.New("invalid continue token")
	// ErrUnavailable is a store call that etcd did not answer in time or
	// refused because it has no quorum; a write that fails this way was
	// not applied. Retry later.
	ErrUnavailable = errors.New("store unavailable")
	// ErrOutcomeUnknown is a write whose outcome etcd could not confirm
	// (timed out or cut by a leader change after it was sent): it may or
	// may not have been applied. Read before retrying.
	ErrOutcomeUnknown = errors.New("write outcome unknown")
	// ErrUndecodable is a stored value that cannot be read: sealed with a
	// key that is no longer configured, tampered with, or corrupt. Lists and
	// watches skip such values; a Get of one fails with this error; Delete
	// still removes it.
	ErrUndecodable = errors.New("stored value cannot be decoded")
)

// Error carries the resource a sentinel error is about.
type Error struct {
	Err  error
	Key  string
	Mesh string
	// Reason is the detail of ErrUndecodable, ErrUnavailable,
	// ErrOutcomeUnknown and some ErrConflicts (never a value).
	Reason string
}

func (e *Error) Error() string {
	switch e.Err {
	case ErrMeshNotFound:
		return fmt.Sprintf("%s: mesh %q does not exist", e.Key, e.Mesh)
	case ErrConflict:
		if e.Reason != "" {
			return fmt.Sprintf("%s: version conflict: %s", e.Key, e.Reason)
		}
		return fmt.Sprintf("%s: version conflict: the resource changed since it was read", e.Key)
	case ErrUndecodable, ErrUnavailable, ErrOutcomeUnknown:
		if e.Reason != "" {
			return fmt.Sprintf("%s: %v: %s", e.Key, e.Err, e.Reason)
		}
	}
	return fmt.Sprintf("%s: %v", e.Key, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

func IsNotFound(err error) bool      { return errors.Is(err, ErrNotFound) }
func IsAlreadyExists(err error) bool { return errors.Is(err, ErrAlreadyExists) }
func IsConflict(err error) bool      { return errors.Is(err, ErrConflict) }
func IsMeshNotFound(err error) bool  { return errors.Is(err, ErrMeshNotFound) }

// IsUnavailable reports a store call that failed because etcd was
// unavailable (the write, if any, was not applied).
func IsUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }

// IsOutcomeUnknown reports a write that may or may not have been applied.
func IsOutcomeUnknown(err error) bool { return errors.Is(err, ErrOutcomeUnknown) }

// IsUndecodable reports a stored value that cannot be read.
func IsUndecodable(err error) bool { return errors.Is(err, ErrUndecodable) }

// classify turns an etcd client error into a typed store error. parent is
// the caller's context: when it ended, its error is returned as is (the
// caller gave up; that is not etcd's fault). write says whether the call
// could have changed etcd.
func classify(parent context.Context, err error, key string, write bool) error {
	if err == nil {
		return nil
	}
	if perr := parent.Err(); perr != nil {
		return fmt.Errorf("%s: %w", key, perr)
	}
	var ev rpctypes.EtcdError
	notApplied := false
	reason := ""
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		reason = "etcd did not answer within the store deadline"
	case errors.As(err, &ev):
		reason = "etcd: " + ev.Error()
		switch ev.Error() {
		case rpctypes.ErrNoLeader.Error(), rpctypes.ErrNotCapable.Error(), rpctypes.ErrStopped.Error(), rpctypes.ErrTooManyRequests.Error():
			notApplied = true
		case rpctypes.ErrTimeout.Error(), rpctypes.ErrTimeoutDueToLeaderFail.Error(), rpctypes.ErrTimeoutDueToConnectionLost.Error(),
			rpctypes.ErrLeaderChanged.Error(), rpctypes.ErrTimeoutWaitAppliedIndex.Error():
		default:
			return fmt.Errorf("%s: %w", key, err)
		}
	default:
		st, ok := status.FromError(err)
		if !ok {
			return fmt.Errorf("%s: %w", key, err)
		}
		switch st.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
			reason = "etcd is unreachable"
		case codes.ResourceExhausted:
			reason = "etcd refused the request: " + st.Message()
			notApplied = true
		default:
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	if write && !notApplied {
		return &Error{Err: ErrOutcomeUnknown, Key: key, Reason: reason}
	}
	return &Error{Err: ErrUnavailable, Key: key, Reason: reason}
}
