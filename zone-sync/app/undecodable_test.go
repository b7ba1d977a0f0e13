package app_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"

	"github.com/weftmesh/weft/zone-sync/apptest"
)

// TestUndecodableValuesDoNotStopSync: a Secret on global sealed with a key
// global no longer has, and a corrupt synced copy in a zone, do not stop
// zone-sync: the zone reconnects, everything else syncs, and the zone's
// broken copy is replaced by global's.
func TestUndecodableValuesDoNotStopSync(t *testing.T) {
	ctx := context.Background()
	c := apptest.Start(t, apptest.Options{Zones: 1})
	g, z := c.Global, c.Zones[0]
	mk := func(name, data string) *resource.Resource {
		r := resource.New(resource.SecretType, "default", name)
		r.Spec = &meshv1.Secret{Data: []byte(data)}
		return r
	}
	dataIs := func(want string) func(*resource.Resource) error {
		return func(r *resource.Resource) error {
			if got := string(r.Spec.(*meshv1.Secret).GetData()); got != want {
				return errors.New("data " + got + ", want " + want)
			}
			return nil
		}
	}
	if _, err := g.Store.Create(ctx, mk("synced", "one")); err != nil {
		t.Fatal(err)
	}
	has(t, z.Store, resource.SecretType, "default", "synced", "global", dataIs("one"))
	z.Stop(t)

	// Break the zone's copy, and put on global a secret sealed with a key
	// global does not have.
	if _, err := z.Client.Put(ctx, z.Store.Key(resource.SecretType, "default", "synced"), "\xff\xfe corrupt"); err != nil {
		t.Fatal(err)
	}
	gone, _ := seal.New(seal.Key{ID: "removed", Bytes: bytes.Repeat([]byte{5}, 32)})
	if _, err := store.New(g.Client, store.WithKeyring(gone)).Create(ctx, mk("lost-key", "x")); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Store.Create(ctx, mk("after", "two")); err != nil {
		t.Fatal(err)
	}

	c.StartZone(t, 0, c.ZoneToken(t, z.Name))
	apptest.Eventually(t, wait, func() error {
		if !z.App.Connected() {
			return errors.New("zone not connected: " + errString(z.App.LastError()))
		}
		return nil
	})
	has(t, z.Store, resource.SecretType, "default", "after", "global", dataIs("two"))
	has(t, z.Store, resource.SecretType, "default", "synced", "global", dataIs("one"))
	if _, err := z.Store.Get(ctx, resource.SecretType, "default", "lost-key"); !store.IsNotFound(err) {
		t.Fatalf("an unreadable global value reached the zone: %v", err)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
