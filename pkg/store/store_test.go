package store_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

func newStore(t *testing.T) (*store.Store, *clientv3.Client) {
	t.Helper()
	cli := etcdtest.Client(t, nil)
	keys, err := seal.New(seal.Key{ID: "k1", Bytes: bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	return store.New(cli, store.WithKeyring(keys)), cli
}

func mesh(name string) *resource.Resource {
	return &resource.Resource{Meta: &meshv1.Meta{Type: "Mesh", Name: name}, Spec: &meshv1.Mesh{}}
}

func dataplane(mesh, name string, port uint32) *resource.Resource {
	return &resource.Resource{Meta: &meshv1.Meta{Type: "Dataplane", Mesh: mesh, Name: name}, Spec: &meshv1.Dataplane{
		Networking: &meshv1.Dataplane_Networking{Address: "10.0.0.1", Inbound: []*meshv1.Dataplane_Networking_Inbound{{Port: port, Tags: map[string]string{resource.ServiceTag: "web"}}}},
	}}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestCRUDAndConflicts(t *testing.T) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	if _, err := s.Create(ctx, dataplane("default", "dp-1", 80)); !store.IsMeshNotFound(err) {
		t.Fatalf("create in missing mesh: got %v, want mesh not found", err)
	}
	if _, err := s.Create(ctx, mesh("default")); err != nil {
		t.Fatal(err)
	}
	created, err := s.Create(ctx, dataplane("default", "dp-1", 80))
	if err != nil {
		t.Fatal(err)
	}
	if created.Meta.Version == 0 || created.Meta.CreationTime == nil {
		t.Fatalf("create did not set metadata: %v", created.Meta)
	}
	if _, err := s.Create(ctx, dataplane("default", "dp-1", 80)); !store.IsAlreadyExists(err) {
		t.Fatalf("second create: got %v", err)
	}
	got, err := s.Get(ctx, resource.DataplaneType, "default", "dp-1")
	if err != nil || got.Meta.Version != created.Meta.Version {
		t.Fatalf("get: %v %v", got, err)
	}
	upd := dataplane("default", "dp-1", 81)
	upd.Meta.Version = created.Meta.Version
	updated, err := s.Update(ctx, upd)
	if err != nil {
		t.Fatal(err)
	}
	if updated.Meta.Version <= created.Meta.Version || !updated.Meta.CreationTime.AsTime().Equal(created.Meta.CreationTime.AsTime()) {
		t.Fatalf("update metadata wrong: %v", updated.Meta)
	}
	stale := dataplane("default", "dp-1", 82)
	stale.Meta.Version = created.Meta.Version
	if _, err := s.Update(ctx, stale); !store.IsConflict(err) {
		t.Fatalf("stale update: got %v, want conflict", err)
	}
	if _, _, err := s.Upsert(ctx, stale); !store.IsConflict(err) {
		t.Fatalf("stale upsert: got %v, want conflict", err)
	}
	cur, _ := s.Get(ctx, resource.DataplaneType, "default", "dp-1")
	if p := cur.Spec.(*meshv1.Dataplane).Networking.Inbound[0].Port; p != 81 {
		t.Fatalf("stale write changed the resource: port %d", p)
	}
	if err := s.Delete(ctx, resource.DataplaneType, "default", "dp-1", created.Meta.Version); !store.IsConflict(err) {
		t.Fatalf("stale delete: %v", err)
	}
	if err := s.Delete(ctx, resource.DataplaneType, "default", "nope", 0); !store.IsNotFound(err) {
		t.Fatalf("delete missing: %v", err)
	}
	if err := s.Delete(ctx, resource.DataplaneType, "default", "dp-1", updated.Meta.Version); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, resource.DataplaneType, "default", "dp-1"); !store.IsNotFound(err) {
		t.Fatalf("get deleted: %v", err)
	}
}

func TestDeleteMeshCascades(t *testing.T) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	for _, m := range []string{"a", "ab"} {
		if _, err := s.Create(ctx, mesh(m)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Create(ctx, dataplane(m, "dp", 80)); err != nil {
			t.Fatal(err)
		}
		sec := &resource.Resource{Meta: &meshv1.Meta{Type: "Secret", Mesh: m, Name: "s"}, Spec: &meshv1.Secret{Data: []byte("x")}}
		if _, err := s.Create(ctx, sec); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, resource.MeshType, "", "a", 0); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []*resource.Type{resource.DataplaneType, resource.SecretType} {
		if _, err := s.Get(ctx, typ, "a", typ.Name); !store.IsNotFound(err) {
			t.Fatalf("%s survived mesh deletion: %v", typ.Name, err)
		}
	}
	// A mesh whose name shares a prefix is untouched.
	if _, err := s.Get(ctx, resource.DataplaneType, "ab", "dp"); err != nil {
		t.Fatalf("mesh ab lost its dataplane: %v", err)
	}
}

func TestSecretsAreSealed(t *testing.T) {
	s, cli := newStore(t)
	ctx := ctxT(t)
	secret := []byte("-----BEGIN PRIVATE KEY----- very secret")
	r := &resource.Resource{Meta: &meshv1.Meta{Type: "GlobalSecret", Name: "signing-key"}, Spec: &meshv1.GlobalSecret{Data: secret}}
	if _, err := s.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	raw, err := cli.Get(ctx, s.Key(resource.GlobalSecretType, "", "signing-key"))
	if err != nil || len(raw.Kvs) != 1 {
		t.Fatal(err)
	}
	if bytes.Contains(raw.Kvs[0].Value, []byte("very secret")) {
		t.Fatal("secret stored in plaintext")
	}
	got, err := s.Get(ctx, resource.GlobalSecretType, "", "signing-key")
	if err != nil || !bytes.Equal(got.Spec.(*meshv1.GlobalSecret).Data, secret) {
		t.Fatalf("round trip: %v", err)
	}
	// A sealed value copied under another key does not open.
	if _, err := cli.Put(ctx, s.Key(resource.GlobalSecretType, "", "copy"), string(raw.Kvs[0].Value)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, resource.GlobalSecretType, "", "copy"); err == nil {
		t.Fatal("moved ciphertext opened")
	}
	// Without a keyring, secrets are refused rather than stored in the clear.
	plain := store.New(cli)
	if _, err := plain.Create(ctx, &resource.Resource{Meta: &meshv1.Meta{Type: "GlobalSecret", Name: "x"}, Spec: &meshv1.GlobalSecret{Data: []byte("y")}}); err == nil {
		t.Fatal("secret stored without a key")
	}
}

func TestListPagination(t *testing.T) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	if _, err := s.Create(ctx, mesh("m")); err != nil {
		t.Fatal(err)
	}
	const n = 25
	for i := 0; i < n; i++ {
		if _, err := s.Create(ctx, dataplane("m", fmt.Sprintf("dp-%02d", i), 80)); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	o := store.ListOptions{Limit: 10}
	pages := 0
	for {
		page, err := s.List(ctx, resource.DataplaneType, "m", o)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if page.Total != n {
			t.Fatalf("total %d, want %d", page.Total, n)
		}
		for _, it := range page.Items {
			if seen[it.Meta.Name] {
				t.Fatalf("%s on two pages", it.Meta.Name)
			}
			seen[it.Meta.Name] = true
		}
		if page.Next == "" {
			break
		}
		o.Continue = page.Next
	}
	if len(seen) != n || pages != 3 {
		t.Fatalf("saw %d items on %d pages", len(seen), pages)
	}
	if _, err := s.List(ctx, resource.DataplaneType, "m", store.ListOptions{Continue: "!!"}); err != store.ErrInvalidContinue {
		t.Fatalf("bad token: %v", err)
	}
}

func next(t *testing.T, ch <-chan store.Event) store.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch closed")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return store.Event{}
}

func TestWatchSyncThenEvents(t *testing.T) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	if _, err := s.Create(ctx, mesh("m")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, dataplane("m", "a", 80)); err != nil {
		t.Fatal(err)
	}
	ch, err := s.Watch(ctx, resource.DataplaneType, "m", 0)
	if err != nil {
		t.Fatal(err)
	}
	ev := next(t, ch)
	if ev.Kind != store.EventSync || len(ev.Resources) != 1 {
		t.Fatalf("first event %v with %d resources", ev.Kind, len(ev.Resources))
	}
	if _, err := s.Create(ctx, dataplane("m", "b", 80)); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Kind != store.EventPut || ev.Resource.Meta.Name != "b" {
		t.Fatalf("got %v %v", ev.Kind, ev.Resource.Meta)
	}
	if err := s.Delete(ctx, resource.DataplaneType, "m", "a", 0); err != nil {
		t.Fatal(err)
	}
	ev = next(t, ch)
	if ev.Kind != store.EventDelete || ev.Resource.Meta.Name != "a" || ev.Resource.Spec.(*meshv1.Dataplane).GetNetworking() == nil {
		t.Fatalf("delete event %v %v", ev.Kind, ev.Resource)
	}
}

func TestWatchResumesFromRevisionAndAfterCompaction(t *testing.T) {
	s, cli := newStore(t)
	ctx := ctxT(t)
	if _, err := s.Create(ctx, mesh("m")); err != nil {
		t.Fatal(err)
	}
	first, err := s.Create(ctx, dataplane("m", "a", 80))
	if err != nil {
		t.Fatal(err)
	}
	// A watcher that saw revision `first` and reconnects later gets exactly
	// the events after it, in order.
	for i := 0; i < 3; i++ {
		if _, err := s.Create(ctx, dataplane("m", fmt.Sprintf("r%d", i), 80)); err != nil {
			t.Fatal(err)
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	ch, err := s.Watch(wctx, resource.DataplaneType, "m", first.Meta.Version)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		ev := next(t, ch)
		if ev.Kind != store.EventPut || ev.Resource.Meta.Name != fmt.Sprintf("r%d", i) {
			t.Fatalf("event %d: %v %s", i, ev.Kind, ev.Resource.Meta.Name)
		}
	}
	cancel()
	for range ch {
	}
	// Compact past the watcher's revision: resuming must re-list (SYNC), not
	// lose the changes made in between.
	last, err := s.Create(ctx, dataplane("m", "late", 80))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, last.Meta.Version); err != nil {
		t.Fatal(err)
	}
	ch, err = s.Watch(ctx, resource.DataplaneType, "m", first.Meta.Version)
	if err != nil {
		t.Fatal(err)
	}
	ev := next(t, ch)
	if ev.Kind != store.EventSync || len(ev.Resources) != 5 {
		t.Fatalf("after compaction got %v with %d resources, want SYNC with 5", ev.Kind, len(ev.Resources))
	}
	if _, err := s.Create(ctx, dataplane("m", "after", 80)); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Kind != store.EventPut || ev.Resource.Meta.Name != "after" {
		t.Fatalf("after sync: %v", ev.Kind)
	}
}

func TestGetManyKeepsOrderAcrossBatches(t *testing.T) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	if _, err := s.Create(ctx, mesh("m")); err != nil {
		t.Fatal(err)
	}
	var ids []store.ID
	for i := 0; i < 150; i++ {
		name := fmt.Sprintf("dp-%03d", i)
		if i%3 == 0 {
			if _, err := s.Create(ctx, dataplane("m", name, 80)); err != nil {
				t.Fatal(err)
			}
		}
		ids = append(ids, store.ID{Mesh: "m", Name: name})
	}
	got, err := s.GetMany(ctx, resource.DataplaneType, ids)
	if err != nil || len(got) != 150 {
		t.Fatalf("got %d, %v", len(got), err)
	}
	for i, r := range got {
		switch {
		case i%3 == 0 && (r == nil || r.Meta.Name != ids[i].Name || r.Meta.Version == 0):
			t.Fatalf("item %d: %v", i, r)
		case i%3 != 0 && r != nil:
			t.Fatalf("item %d should be missing, got %s", i, r.Meta.Name)
		}
	}
}
