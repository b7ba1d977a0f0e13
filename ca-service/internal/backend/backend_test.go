package backend_test

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"github.com/weftmesh/weft/ca-service/internal/backend"
	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

func TestBuiltinRootCreatedOnceUnderRace(t *testing.T) {
	ctx := context.Background()
	keys, _ := seal.New(seal.Key{ID: "k", Bytes: bytes.Repeat([]byte{1}, 32)})
	cli := etcdtest.Client(t, nil)
	st := store.New(cli, store.WithKeyring(keys))
	m := resource.New(resource.MeshType, "", "default")
	m.Spec = &meshv1.Mesh{}
	if _, err := st.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	b := &meshv1.CertificateAuthorityBackend{Name: "ca-1", Type: "builtin", Builtin: &meshv1.CertificateAuthorityBackend_BuiltinConfig{
		CaCert: &meshv1.CertificateAuthorityBackend_BuiltinConfig_CaCert{KeyType: "rsa", RsaBits: 2048, Expiration: "1y"}}}
	const n = 8
	certs := make([][]byte, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Separate loaders, as in separate replicas.
			a, err := backend.New(store.New(cli, store.WithKeyring(keys)), true).Load(ctx, "default", b)
			if err != nil {
				t.Error(err)
				return
			}
			certs[i] = a.Cert.Raw
		}()
	}
	wg.Wait()
	for i := 1; i < n; i++ {
		if !bytes.Equal(certs[i], certs[0]) {
			t.Fatalf("loader %d got a different root", i)
		}
	}
	// Zone mode does not create roots.
	if _, err := backend.New(st, false).Load(ctx, "default", &meshv1.CertificateAuthorityBackend{Name: "other", Type: "builtin"}); err == nil {
		t.Error("root created with creation off")
	}
	resp, _ := cli.Get(ctx, st.Key(resource.SecretType, "default", backend.SecretName("ca-1")))
	if len(resp.Kvs) != 1 || bytes.Contains(resp.Kvs[0].Value, []byte("PRIVATE KEY")) {
		t.Error("root secret missing or not sealed")
	}
}
