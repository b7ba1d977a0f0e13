package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/pkg/etcdembed"
	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	storev1 "github.com/weftmesh/weft/proto/gen/go/weft/store/v1"
)

func keyring(t *testing.T, ids ...string) *seal.Keyring {
	t.Helper()
	var keys []seal.Key
	for _, id := range ids {
		keys = append(keys, seal.Key{ID: id, Bytes: bytes.Repeat([]byte(id[len(id)-1:]), 32)})
	}
	k, err := seal.New(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func secret(mesh, name, data string) *resource.Resource {
	if mesh == "" {
		r := resource.New(resource.GlobalSecretType, "", name)
		r.Spec = &meshv1.GlobalSecret{Data: []byte(data)}
		return r
	}
	r := resource.New(resource.SecretType, mesh, name)
	r.Spec = &meshv1.Secret{Data: []byte(data)}
	return r
}

// TestUndecodableValuesAreSkipped: a value sealed with a removed key and a
// corrupt one make lists, GetMany and watch snapshots skip them (counted
// and logged), not fail; Get names them; DeleteUndecodable removes only
// that key.
func TestUndecodableValuesAreSkipped(t *testing.T) {
	cli := etcdtest.Client(t, nil)
	ctx := ctxT(t)
	old := store.New(cli, store.WithKeyring(keyring(t, "k1")))
	reg := prometheus.NewRegistry()
	s := store.New(cli, store.WithKeyring(keyring(t, "k2")), store.WithMetrics(reg))
	if _, err := s.Create(ctx, mesh("m")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, dataplane("m", "dp", 80)); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Create(ctx, secret("m", "a-old", "x")); err != nil { // sealed with k1, which s lacks
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, secret("m", "b-good", "y")); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, s.Key(resource.SecretType, "m", "c-corrupt"), "\x0a\xff garbage"); err != nil {
		t.Fatal(err)
	}
	page, err := s.List(ctx, resource.SecretType, "m", store.ListOptions{})
	if err != nil {
		t.Fatalf("list with bad values failed: %v", err)
	}
	if len(page.Items) != 1 || page.Items[0].Meta.Name != "b-good" || len(page.Skipped) != 2 || page.Total != 1 {
		t.Fatalf("list: %d items, skipped %v, total %d", len(page.Items), page.Skipped, page.Total)
	}
	if n := undecodableCount(t, reg, "Secret"); n != 2 {
		t.Fatalf("weft_store_undecodable_total{type=Secret} = %v, want 2", n)
	}
	if _, err := s.Get(ctx, resource.SecretType, "m", "a-old"); !store.IsUndecodable(err) {
		t.Fatalf("get: %v", err)
	}
	many, err := s.GetMany(ctx, resource.SecretType, []store.ID{{Mesh: "m", Name: "a-old"}, {Mesh: "m", Name: "b-good"}})
	if err != nil || many[0] != nil || many[1] == nil {
		t.Fatalf("GetMany: %v %v", many, err)
	}
	ch, err := s.Watch(ctx, nil, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	ev := next(t, ch)
	if ev.Kind != store.EventSync || len(ev.Resources) != 3 { // mesh, dataplane, b-good
		t.Fatalf("watch snapshot of everything: %v %d", ev.Kind, len(ev.Resources))
	}
	bad, err := s.Undecodable(ctx)
	if err != nil || len(bad) != 2 {
		t.Fatalf("Undecodable: %v %v", bad, err)
	}
	if err := s.DeleteUndecodable(ctx, resource.SecretType, "m", "b-good", 0); !store.IsConflict(err) {
		t.Fatalf("DeleteUndecodable of a readable value: %v", err)
	}
	// An unreadable Mesh goes alone: its resources stay.
	if _, err := cli.Put(ctx, s.Key(resource.MeshType, "", "m"), "\xff"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUndecodable(ctx, resource.MeshType, "", "m", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, resource.DataplaneType, "m", "dp"); err != nil {
		t.Fatalf("dataplane of the removed unreadable mesh: %v", err)
	}
	for _, b := range bad {
		if err := s.DeleteUndecodable(ctx, b.Type, b.Mesh, b.Name, b.Revision); err != nil {
			t.Fatal(err)
		}
	}
	if bad, err := s.Undecodable(ctx); err != nil || len(bad) != 0 {
		t.Fatalf("after repair: %v %v", bad, err)
	}
}

// TestResealRotatesEveryValue: with a new key first, Reseal rewrites every
// sealed value (mesh Secrets, GlobalSecrets including cp-*) with it,
// keeping metadata; then a keyring without the old key reads them all, and
// a second Reseal changes nothing.
func TestResealRotatesEveryValue(t *testing.T) {
	cli := etcdtest.Client(t, nil)
	ctx := ctxT(t)
	s1 := store.New(cli, store.WithKeyring(keyring(t, "k1")))
	if _, err := s1.Create(ctx, mesh("m")); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for i := 0; i < 5; i++ {
		for _, r := range []*resource.Resource{secret("m", fmt.Sprintf("s-%d", i), fmt.Sprintf("mesh-%d", i)), secret("", fmt.Sprintf("g-%d", i), fmt.Sprintf("global-%d", i))} {
			r.Meta.Labels = map[string]string{"keep": "me"}
			if _, err := s1.Create(ctx, r); err != nil {
				t.Fatal(err)
			}
			want[r.Key()] = string(data(r))
		}
	}
	cp := secret("", "cp-signing-key", "signing")
	if _, err := s1.Create(ctx, cp); err != nil {
		t.Fatal(err)
	}
	want[cp.Key()] = "signing"

	s12 := store.New(cli, store.WithKeyring(keyring(t, "k2", "k1")))
	res, err := s12.Reseal(ctx)
	if err != nil || res.Resealed != len(want) || res.Current != 0 || len(res.Failed) != 0 {
		t.Fatalf("reseal: %+v %v", res, err)
	}
	if res, err := s12.Reseal(ctx); err != nil || res.Resealed != 0 || res.Current != len(want) {
		t.Fatalf("second reseal: %+v %v", res, err)
	}
	s2 := store.New(cli, store.WithKeyring(keyring(t, "k2")))
	got := map[string]string{}
	for _, typ := range []*resource.Type{resource.SecretType, resource.GlobalSecretType} {
		items, _, err := s2.ListAll(ctx, typ, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range items {
			got[r.Key()] = string(data(r))
			if r.Key() != cp.Key() && r.Meta.Labels["keep"] != "me" {
				t.Fatalf("%s lost its labels", r.Key())
			}
		}
	}
	if len(got) != len(want) {
		t.Fatalf("after dropping k1: read %d of %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s: %q, want %q", k, got[k], v)
		}
	}
	// Every value in etcd is sealed with k2.
	resp, err := cli.Get(ctx, store.DefaultPrefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		sr := &storev1.StoredResource{}
		if err := proto.Unmarshal(kv.Value, sr); err != nil {
			t.Fatal(err)
		}
		if sr.GetSealed() != nil && sr.GetSealed().GetKeyId() != "k2" {
			t.Fatalf("%s still sealed with %s", kv.Key, sr.GetSealed().GetKeyId())
		}
	}
}

func data(r *resource.Resource) []byte {
	switch s := r.Spec.(type) {
	case *meshv1.Secret:
		return s.GetData()
	case *meshv1.GlobalSecret:
		return s.GetData()
	}
	return nil
}

// TestEtcdDownFailsFastWithTypedErrors: with etcd stopped, reads fail as
// unavailable and writes as outcome-unknown within the store deadline.
func TestEtcdDownFailsFastWithTypedErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := etcdembed.Start(ctx, etcdembed.Config{Dir: t.TempDir(), AutoCompactionRetention: "0"})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	s := store.New(cli, store.WithTimeout(500*time.Millisecond))
	if _, err := s.Create(ctx, mesh("m")); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	start := time.Now()
	if _, err := s.Get(ctx, resource.MeshType, "", "m"); !store.IsUnavailable(err) {
		t.Fatalf("get: %v", err)
	}
	if _, err := s.List(ctx, resource.MeshType, "", store.ListOptions{}); !store.IsUnavailable(err) {
		t.Fatalf("list: %v", err)
	}
	if _, err := s.Create(ctx, mesh("n")); !store.IsOutcomeUnknown(err) {
		t.Fatalf("create: %v", err)
	}
	if err := s.Delete(ctx, resource.MeshType, "", "m", 0); !store.IsOutcomeUnknown(err) {
		t.Fatalf("delete: %v", err)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("4 calls took %v with a 500ms deadline", took)
	}
	// The caller giving up is not reported as etcd's fault.
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if _, err := s.Get(cctx, resource.MeshType, "", "m"); store.IsUnavailable(err) || !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled get: %v", err)
	}
}

// TestAcknowledgedWritesSurviveEtcdRestart: every write the store
// acknowledged is there after etcd stops and starts again on its data.
func TestAcknowledgedWritesSurviveEtcdRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	srv, err := etcdembed.Start(ctx, etcdembed.Config{Dir: dir, AutoCompactionRetention: "0"})
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Endpoint()
	cli, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	s := store.New(cli, store.WithKeyring(keyring(t, "k1")))
	if _, err := s.Create(ctx, mesh("m")); err != nil {
		t.Fatal(err)
	}
	acked := map[string]int64{}
	for i := 0; i < 200; i++ {
		r := secret("m", fmt.Sprintf("s-%03d", i), fmt.Sprint(i))
		out, err := s.Create(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		acked[r.Meta.Name] = out.Meta.Version
	}
	srv.Close()
	srv, err = etcdembed.Start(ctx, etcdembed.Config{Dir: dir, ClientAddr: addr, AutoCompactionRetention: "0"})
	if err != nil {
		t.Fatalf("restart etcd: %v", err)
	}
	defer srv.Close()
	var items []*resource.Resource
	deadline := time.Now().Add(60 * time.Second)
	for {
		items, _, err = s.ListAll(ctx, resource.SecretType, "m")
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("etcd did not come back: %v", err)
	}
	if len(items) != len(acked) {
		t.Fatalf("%d of %d acknowledged writes survived", len(items), len(acked))
	}
	for _, r := range items {
		if acked[r.Meta.Name] != r.Meta.Version || string(data(r)) == "" {
			t.Fatalf("%s: version %d, acknowledged %d", r.Meta.Name, r.Meta.Version, acked[r.Meta.Name])
		}
	}
}

// TestDeleteIfUnchanged: a delete guarded by another resource's version
// fails with a conflict naming it once that resource changed, and goes
// through while it is unchanged.
func TestDeleteIfUnchanged(t *testing.T) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	m, err := s.Create(ctx, mesh("m"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, secret("m", "k", "x")); err != nil {
		t.Fatal(err)
	}
	m2, err := s.Update(ctx, m) // the mesh changes after it was checked
	if err != nil {
		t.Fatal(err)
	}
	err = s.Delete(ctx, resource.SecretType, "m", "k", 0, s.IfUnchanged(resource.MeshType, "", "m", m.Meta.Version))
	var se *store.Error
	if !store.IsConflict(err) || !errors.As(err, &se) || se.Key != "Mesh/m" {
		t.Fatalf("guarded delete after the mesh changed: %v", err)
	}
	if _, err := s.Get(ctx, resource.SecretType, "m", "k"); err != nil {
		t.Fatalf("secret deleted anyway: %v", err)
	}
	if err := s.Delete(ctx, resource.SecretType, "m", "k", 0, s.IfUnchanged(resource.MeshType, "", "m", m2.Meta.Version)); err != nil {
		t.Fatal(err)
	}
}

func undecodableCount(t *testing.T, reg *prometheus.Registry, typ string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "weft_store_undecodable_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "type" && l.GetValue() == typ {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestWriteIfExists: a write guarded by another resource's existence fails
// with a conflict naming it when it is gone, and stores nothing.
func TestWriteIfExists(t *testing.T) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	if _, err := s.Create(ctx, mesh("m")); err != nil {
		t.Fatal(err)
	}
	guard := s.IfExists(resource.SecretType, "m", "key")
	var se *store.Error
	if _, err := s.Create(ctx, dataplane("m", "dp", 80), guard); !store.IsConflict(err) || !errors.As(err, &se) || se.Key != "Secret/m/key" {
		t.Fatalf("create with a missing guard: %v", err)
	}
	if _, err := s.Get(ctx, resource.DataplaneType, "m", "dp"); !store.IsNotFound(err) {
		t.Fatalf("created anyway: %v", err)
	}
	if _, err := s.Update(ctx, mesh("m"), guard); !store.IsConflict(err) || !strings.Contains(err.Error(), "Secret/m/key") {
		t.Fatalf("update with a missing guard: %v", err)
	}
	if _, err := s.Create(ctx, secret("m", "key", "x")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Upsert(ctx, mesh("m"), guard); err != nil {
		t.Fatalf("upsert with the guard holding: %v", err)
	}
	if _, err := s.Create(ctx, dataplane("m", "dp", 80), guard); err != nil {
		t.Fatalf("create with the guard holding: %v", err)
	}
}
