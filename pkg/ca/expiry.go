package ca

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// BuiltinSecretPrefix starts the name of the mesh Secret holding a builtin
// backend's root: "ca-builtin-<backend>", data = certificate PEM then key
// PEM. One Secret (not two) so that one etcd create-if-absent decides the
// root. ca-service creates it; the api-server reads its certificate part
// only (CertificatePEM) to show the root's expiry.
const BuiltinSecretPrefix = "ca-builtin-"

// BuiltinSecretName names the Secret of a builtin backend's root.
func BuiltinSecretName(backend string) string { return BuiltinSecretPrefix + backend }

const (
	pemCertBegin = "-----BEGIN CERTIFICATE-----"
	pemCertEnd   = "-----END CERTIFICATE-----"
)

// CertificatePEM returns a copy of the CERTIFICATE blocks of data, found
// by their BEGIN/END lines: nothing else in data (a private key block) is
// decoded or copied. It returns nil when data has no complete certificate
// block.
func CertificatePEM(data []byte) []byte {
	var out []byte
	rest := data
	for {
		i := bytes.Index(rest, []byte(pemCertBegin))
		if i < 0 {
			return out
		}
		rest = rest[i:]
		j := bytes.Index(rest, []byte(pemCertEnd))
		if j < 0 {
			return out
		}
		end := j + len(pemCertEnd)
		out = append(out, rest[:end]...)
		out = append(out, '\n')
		rest = rest[end:]
	}
}

// RootNotAfter is the NotAfter of the first certificate in data, a
// Secret's data or a provided backend's cert: only the certificate block
// is parsed.
func RootNotAfter(data []byte) (time.Time, error) {
	certs := CertificatePEM(data)
	if certs == nil {
		return time.Time{}, ErrNoCertificate
	}
	c, _, err := ParseCertificate(certs)
	if err != nil {
		return time.Time{}, err
	}
	return c.NotAfter.UTC(), nil
}

// BackendExpiry is when the root certificate of one CA backend of a mesh
// expires.
type BackendExpiry struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Enabled marks the mesh's mtls.enabledBackend.
	Enabled bool `json:"enabled"`
	// NotAfter is the root certificate's expiry; nil when it could not be
	// read (Error says why).
	NotAfter *time.Time `json:"notAfter,omitempty"`
	Error    string     `json:"error,omitempty"`
}

// ErrBuiltinNotCreated is a builtin backend whose root ca-service has not
// created yet (it does when the mesh's first certificate is signed).
var ErrBuiltinNotCreated = errors.New("root not created yet by ca-service")

// MeshExpiry reads the root certificate expiry of every CA backend of a
// Mesh. get reads a Secret of the mesh (for a builtin backend its Secret
// BuiltinSecretName; for a provided one its cert data source). A file
// data source names a file on ca-service's host and is not read here. A
// get error satisfying notFound(err) on a builtin backend's Secret is
// ErrBuiltinNotCreated. One backend's problem is in its Error only.
func MeshExpiry(ctx context.Context, get SecretGetter, notFound func(error) bool, mesh string, m *meshv1.Mesh) []BackendExpiry {
	out := []BackendExpiry{}
	enabled := m.GetMtls().GetEnabledBackend()
	for _, b := range m.GetMtls().GetBackends() {
		e := BackendExpiry{Name: b.GetName(), Type: b.GetType(), Enabled: b.GetName() == enabled}
		var data []byte
		var err error
		switch b.GetType() {
		case TypeBuiltin:
			data, err = get(ctx, mesh, BuiltinSecretName(b.GetName()))
			if err != nil && notFound != nil && notFound(err) {
				err = ErrBuiltinNotCreated
			}
		case TypeProvided:
			data, err = LoadDataSource(ctx, get, mesh, b.GetProvided().GetCert(), LoadOptions{})
		default:
			err = fmt.Errorf("unknown backend type %q", b.GetType())
		}
		if err == nil {
			var t time.Time
			if t, err = RootNotAfter(data); err == nil {
				e.NotAfter = &t
			}
		}
		if err != nil {
			e.Error = err.Error()
		}
		out = append(out, e)
	}
	return out
}

// StoreCertificates reads mesh Secrets from a store and returns only their
// certificate blocks (CertificatePEM); the Secret's data, key included, is
// zeroed before it returns. For readers of a CA's expiry that must not
// hold a CA key (the api-server).
func StoreCertificates(st *store.Store) SecretGetter {
	get := StoreSecrets(st)
	return func(ctx context.Context, mesh, name string) ([]byte, error) {
		data, err := get(ctx, mesh, name)
		if err != nil {
			return nil, err
		}
		certs := CertificatePEM(data)
		clear(data)
		return certs, nil
	}
}

// StoreMeshExpiry is MeshExpiry over a store's Secrets, reading their
// certificate parts only.
func StoreMeshExpiry(ctx context.Context, st *store.Store, mesh string, m *meshv1.Mesh) []BackendExpiry {
	return MeshExpiry(ctx, StoreCertificates(st), func(err error) bool { return store.IsNotFound(err) || store.IsMeshNotFound(err) }, mesh, m)
}
