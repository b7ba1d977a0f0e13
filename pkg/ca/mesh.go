package ca

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// Backend types.
const (
	TypeBuiltin  = "builtin"
	TypeProvided = "provided"
)

// SecretGetter returns the data of a Secret of a mesh; it returns an error
// satisfying store.IsNotFound (or any error) when there is none.
type SecretGetter func(ctx context.Context, mesh, name string) ([]byte, error)

// LoadOptions says how data sources are read.
type LoadOptions struct {
	// ReadFiles allows "file" data sources (read on this host). The
	// api-server leaves it off: a file names a path on ca-service's host.
	ReadFiles bool
}

// ErrFileSourceSkipped is returned by LoadDataSource for file sources when
// files may not be read.
var ErrFileSourceSkipped = errors.New("file data sources are read by ca-service only")

// LoadDataSource returns the bytes a DataSource names.
func LoadDataSource(ctx context.Context, get SecretGetter, mesh string, ds *meshv1.DataSource, o LoadOptions) ([]byte, error) {
	switch s := ds.GetType().(type) {
	case *meshv1.DataSource_Secret:
		if get == nil {
			return nil, fmt.Errorf("secret %q: no secret source", s.Secret)
		}
		b, err := get(ctx, mesh, s.Secret)
		if err != nil {
			return nil, fmt.Errorf("secret %q of mesh %q: %w", s.Secret, mesh, err)
		}
		return b, nil
	case *meshv1.DataSource_File:
		if !o.ReadFiles {
			return nil, ErrFileSourceSkipped
		}
		f, err := os.Open(s.File)
		if err != nil {
			return nil, fmt.Errorf("file %q: %w", s.File, err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, MaxPEMSize+1))
		if err != nil {
			return nil, fmt.Errorf("file %q: %w", s.File, err)
		}
		if len(b) > MaxPEMSize {
			return nil, fmt.Errorf("file %q: %w", s.File, ErrTooLarge)
		}
		return b, nil
	case *meshv1.DataSource_Inline:
		return s.Inline, nil
	case *meshv1.DataSource_InlineString:
		return []byte(s.InlineString), nil
	}
	return nil, errors.New("data source has none of secret, file, inline, inlineString")
}

// LoadProvided reads and checks a provided backend's CA.
func LoadProvided(ctx context.Context, get SecretGetter, mesh string, b *meshv1.CertificateAuthorityBackend, now time.Time, o LoadOptions) (*Authority, error) {
	certPEM, err := LoadDataSource(ctx, get, mesh, b.GetProvided().GetCert(), o)
	if err != nil {
		return nil, &FieldError{Field: "cert", Err: err}
	}
	keyPEM, err := LoadDataSource(ctx, get, mesh, b.GetProvided().GetKey(), o)
	if err != nil {
		return nil, &FieldError{Field: "key", Err: err}
	}
	a, err := Parse(certPEM, keyPEM, now)
	if err != nil {
		field := "cert"
		if errors.Is(err, ErrNoKey) || errors.Is(err, ErrBadKey) || errors.Is(err, ErrKeyMismatch) {
			field = "key"
		}
		return nil, &FieldError{Field: field, Err: err}
	}
	return a, nil
}

// FieldError is a problem with one field (cert or key) of a provided
// backend.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// ValidateMeshCA checks every provided CA backend of a Mesh deeply: the
// certificate parses, is a CA, is valid now and matches its key. It returns
// a *resource.ValidationError with field paths such as
// "mtls.backends[0].provided.cert", or nil. Secrets are read with get; file
// sources are skipped (they name files on ca-service's host). The shape of
// the Mesh is resource.Validate's job and is not repeated here.
func ValidateMeshCA(ctx context.Context, get SecretGetter, mesh *resource.Resource) error {
	m, ok := mesh.Spec.(*meshv1.Mesh)
	if !ok {
		return nil
	}
	v := resource.NewValidator()
	now := time.Now()
	for i, b := range m.GetMtls().GetBackends() {
		if b.GetType() != TypeProvided || b.GetProvided() == nil {
			continue
		}
		pv := v.Field("mtls").Field("backends").Index(i).Field("provided")
		if _, err := LoadProvided(ctx, get, mesh.Meta.GetName(), b, now, LoadOptions{}); err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				if errors.Is(fe.Err, ErrFileSourceSkipped) {
					continue
				}
				pv.Field(fe.Field).Addf("%v", fe.Err)
			} else {
				pv.Addf("%v", err)
			}
		}
	}
	return v.Err()
}

// StoreSecrets reads mesh Secrets from a store, for ValidateMeshCA:
//
//	err := ca.ValidateMeshCA(ctx, ca.StoreSecrets(st), mesh)
func StoreSecrets(st *store.Store) SecretGetter {
	return func(ctx context.Context, mesh, name string) ([]byte, error) {
		r, err := st.Get(ctx, resource.SecretType, mesh, name)
		if err != nil {
			return nil, err
		}
		s, ok := r.Spec.(*meshv1.Secret)
		if !ok {
			return nil, fmt.Errorf("secret %s/%s: unexpected spec %T", mesh, name, r.Spec)
		}
		return s.GetData(), nil
	}
}
