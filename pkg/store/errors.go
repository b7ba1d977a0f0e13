// Package store keeps resources in etcd: CRUD with optimistic concurrency,
// paginated lists, watches that resume and survive compaction, and sealing
// of secret types.
package store

import (
	"errors"
	"fmt"
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
)

// Error carries the resource a sentinel error is about.
type Error struct {
	Err  error
	Key  string
	Mesh string
}

func (e *Error) Error() string {
	switch e.Err {
	case ErrMeshNotFound:
		return fmt.Sprintf("%s: mesh %q does not exist", e.Key, e.Mesh)
	case ErrConflict:
		return fmt.Sprintf("%s: version conflict: the resource changed since it was read", e.Key)
	}
	return fmt.Sprintf("%s: %v", e.Key, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

func IsNotFound(err error) bool      { return errors.Is(err, ErrNotFound) }
func IsAlreadyExists(err error) bool { return errors.Is(err, ErrAlreadyExists) }
func IsConflict(err error) bool      { return errors.Is(err, ErrConflict) }
func IsMeshNotFound(err error) bool  { return errors.Is(err, ErrMeshNotFound) }
