package caexpiry

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/ca"
	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// TestReaderCachesWhileTheMeshIsUnchanged: on real etcd, an answer is
// reused for TTL while the mesh's mtls is unchanged, re-read after TTL or
// at once when mtls changes; a root Secret's NotAfter is read.
func TestReaderCachesWhileTheMeshIsUnchanged(t *testing.T) {
	ctx := context.Background()
	kr, err := seal.New(seal.Key{ID: "k", Bytes: bytes.Repeat([]byte{9}, seal.KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(etcdtest.Client(t, nil), store.WithKeyring(kr))
	if _, err := st.Create(ctx, resource.New(resource.MeshType, "", "m")); err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := New(st)
	r.now = func() time.Time { return clock }
	mesh := &meshv1.Mesh{Mtls: &meshv1.Mesh_Mtls{EnabledBackend: "ca-1", Backends: []*meshv1.CertificateAuthorityBackend{{Name: "ca-1", Type: ca.TypeBuiltin}}}}

	if got := r.Mesh(ctx, "m", mesh); len(got) != 1 || got[0].NotAfter != nil || got[0].Error == "" {
		t.Fatalf("before the root exists: %+v", got)
	}
	certPEM, keyPEM, err := ca.GenerateRoot(ca.RootOptions{Validity: 48 * time.Hour, CommonName: "r", Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	sec := resource.New(resource.SecretType, "m", ca.BuiltinSecretName("ca-1"))
	sec.Spec = &meshv1.Secret{Data: append(certPEM, keyPEM...)}
	if _, err := st.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	if got := r.Mesh(ctx, "m", mesh); got[0].NotAfter != nil {
		t.Fatalf("within TTL and unchanged: not reused: %+v", got)
	}
	clock = clock.Add(TTL)
	got := r.Mesh(ctx, "m", mesh)
	if got[0].NotAfter == nil || !got[0].NotAfter.Equal(clock.Add(-TTL).Add(48*time.Hour)) || !got[0].Enabled {
		t.Fatalf("after TTL: %+v", got)
	}
	// A changed mtls is read at once.
	changed := &meshv1.Mesh{Mtls: &meshv1.Mesh_Mtls{EnabledBackend: "ca-1", Backends: append(mesh.Mtls.Backends, &meshv1.CertificateAuthorityBackend{Name: "ca-2", Type: ca.TypeBuiltin})}}
	if got := r.Mesh(ctx, "m", changed); len(got) != 2 || got[1].Name != "ca-2" || got[1].NotAfter != nil {
		t.Fatalf("after an mtls change: %+v", got)
	}
}
