package app_test

import (
	"bytes"
	"testing"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	cav1 "github.com/weftmesh/weft/proto/gen/go/weft/ca/v1"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// TestStartsAndSignsWithUndecodableValues: a Secret sealed with a removed
// key, a corrupt Mesh and a corrupt Dataplane in etcd do not keep
// ca-service from becoming ready and signing for the healthy mesh.
func TestStartsAndSignsWithUndecodableValues(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	e.put(meshRes("default", "ca-1", builtin("ca-1")))
	e.put(dataplane("default", "dp-1", "web"))
	gone, _ := seal.New(seal.Key{ID: "removed", Bytes: bytes.Repeat([]byte{5}, 32)})
	sec := resource.New(resource.SecretType, "default", "lost-key")
	sec.Spec = &meshv1.Secret{Data: []byte("x")}
	if _, err := store.New(e.cli, store.WithKeyring(gone)).Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{e.st.Key(resource.MeshType, "", "broken"), e.st.Key(resource.DataplaneType, "default", "dp-broken")} {
		if _, err := e.cli.Put(ctx, k, "\xff\xfe corrupt"); err != nil {
			t.Fatal(err)
		}
	}
	a := e.start(e.config())
	eventually(t, "readyz", func() bool { code, _ := get(t, "http://"+a.AdminAddr()+"/readyz"); return code == 200 })
	_, pub := newKey(t)
	if _, err := e.serviceClient(a).SignWorkloadCertificate(ctx, &cav1.SignWorkloadCertificateRequest{Mesh: "default", Dataplane: "dp-1", PublicKey: pub}); err != nil {
		t.Fatal(err)
	}
	if _, body := get(t, "http://"+a.AdminAddr()+"/metrics"); !bytes.Contains([]byte(body), []byte(`weft_store_undecodable_total{type="Secret"}`)) {
		t.Errorf("metrics lack weft_store_undecodable_total for the Secret")
	}
}
