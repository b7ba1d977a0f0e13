// Package backend loads the CA of a mesh backend: a builtin root that
// ca-service generates once and keeps as a sealed mesh Secret, or a
// provided CA read from a Secret, file or inline data.
package backend

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/weftmesh/weft/pkg/ca"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// SecretName names the Secret of a builtin backend's root
// (ca.BuiltinSecretName, shared with the api-server, which shows the
// root's expiry).
func SecretName(backend string) string { return ca.BuiltinSecretName(backend) }

// ErrNoRoot is a builtin backend whose root does not exist and may not be
// created here.
var ErrNoRoot = errors.New("builtin root not created yet")

// Loader loads backends' CAs.
type Loader struct {
	st *store.Store
	// Create allows creating builtin roots (off in a zone, where roots come
	// from global through zone-sync).
	Create bool
	Now    func() time.Time
}

// New returns a loader.
func New(st *store.Store, create bool) *Loader { return &Loader{st: st, Create: create, Now: time.Now} }

// Load returns the CA of backend b of mesh.
func (l *Loader) Load(ctx context.Context, mesh string, b *meshv1.CertificateAuthorityBackend) (*ca.Authority, error) {
	switch b.GetType() {
	case ca.TypeBuiltin:
		return l.Builtin(ctx, mesh, b)
	case ca.TypeProvided:
		a, err := ca.LoadProvided(ctx, l.secret, mesh, b, l.Now(), ca.LoadOptions{ReadFiles: true})
		if err != nil {
			return nil, fmt.Errorf("provided backend %q of mesh %q: %w", b.GetName(), mesh, err)
		}
		return a, nil
	}
	return nil, fmt.Errorf("backend %q of mesh %q: unknown type %q", b.GetName(), mesh, b.GetType())
}

func (l *Loader) secret(ctx context.Context, mesh, name string) ([]byte, error) {
	r, err := l.st.Get(ctx, resource.SecretType, mesh, name)
	if err != nil {
		return nil, err
	}
	return r.Spec.(*meshv1.Secret).GetData(), nil
}

// Builtin returns the builtin root of backend b, creating it when absent.
// Replicas racing to create it all end up with the one that etcd stored
// first: the store's create is a transaction on "key absent", and losers
// read the winner's root back.
func (l *Loader) Builtin(ctx context.Context, mesh string, b *meshv1.CertificateAuthorityBackend) (*ca.Authority, error) {
	name := SecretName(b.GetName())
	for attempt := 0; attempt < 3; attempt++ {
		data, err := l.secret(ctx, mesh, name)
		if store.IsNotFound(err) {
			if !l.Create {
				return nil, fmt.Errorf("backend %q of mesh %q: %w (waiting for Secret %s)", b.GetName(), mesh, ErrNoRoot, name)
			}
			if err := l.create(ctx, mesh, b); err != nil && !store.IsAlreadyExists(err) {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read builtin root of %s/%s: %w", mesh, b.GetName(), err)
		}
		certs, keys := ca.SplitPEM(data)
		// A root past its validity is still loaded (so the bundle and the
		// expiry metric show it); signing checks validity itself.
		cert, _, err := ca.ParseCertificate(certs)
		if err != nil {
			return nil, fmt.Errorf("builtin root of %s/%s (Secret %s): %w", mesh, b.GetName(), name, err)
		}
		a, err := ca.Parse(certs, keys, cert.NotBefore)
		if err != nil {
			return nil, fmt.Errorf("builtin root of %s/%s (Secret %s): %w", mesh, b.GetName(), name, err)
		}
		return a, nil
	}
	return nil, fmt.Errorf("builtin root of %s/%s: could not create or read", mesh, b.GetName())
}

func (l *Loader) create(ctx context.Context, mesh string, b *meshv1.CertificateAuthorityBackend) error {
	cc := b.GetBuiltin().GetCaCert()
	validity := ca.DefaultRootValidity
	if s := cc.GetExpiration(); s != "" {
		d, err := resource.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("backend %q: caCert.expiration: %w", b.GetName(), err)
		}
		validity = d
	}
	certPEM, keyPEM, err := ca.GenerateRoot(ca.RootOptions{
		KeyType: cc.GetKeyType(), RSABits: int(cc.GetRsaBits()), Validity: validity,
		CommonName: fmt.Sprintf("Weft mesh %s CA (%s)", mesh, b.GetName()), Organization: "weft", Now: l.Now(),
	})
	if err != nil {
		return fmt.Errorf("generate root for %s/%s: %w", mesh, b.GetName(), err)
	}
	sec := resource.New(resource.SecretType, mesh, SecretName(b.GetName()))
	sec.Spec = &meshv1.Secret{Data: append(certPEM, keyPEM...)}
	if sec.Meta.Labels == nil {
		sec.Meta.Labels = map[string]string{}
	}
	sec.Meta.Labels["weft.io/ca-backend"] = b.GetName()
	if _, err := l.st.Create(ctx, sec); err != nil {
		if store.IsAlreadyExists(err) {
			return err
		}
		return fmt.Errorf("store builtin root of %s/%s: %w", mesh, b.GetName(), err)
	}
	return nil
}
