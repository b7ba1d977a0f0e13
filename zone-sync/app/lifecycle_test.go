package app_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/token"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"

	"github.com/weftmesh/weft/zone-sync/app"
	"github.com/weftmesh/weft/zone-sync/apptest"
	"github.com/weftmesh/weft/zone-sync/internal/global"
)

// A Zone disabled on global loses its stream (and gets it back when
// enabled); a Zone deleted by an operator has its resources removed from
// global; until then they stay even while the zone is away.
func TestZoneDisabledAndDeleted(t *testing.T) {
	ctx := context.Background()
	c := apptest.Start(t, apptest.Options{Zones: 1, JanitorInterval: 200 * time.Millisecond})
	g, z := c.Global, c.Zones[0]
	if _, err := z.Store.Create(ctx, apptest.Dataplane("web-1", "web", 8080), store.WithoutMeshCheck()); err != nil {
		t.Fatal(err)
	}
	has(t, g.Store, resource.DataplaneType, "default", "zone-1.web-1", "zone-1", nil)

	setEnabled := func(on bool) {
		zr, err := g.Store.Get(ctx, resource.ZoneType, "", "zone-1")
		if err != nil {
			t.Fatal(err)
		}
		zr.Spec = &meshv1.Zone{Enabled: wrapperspb.Bool(on)}
		if _, err := g.Store.Update(ctx, zr); err != nil {
			t.Fatal(err)
		}
	}
	setEnabled(false)
	apptest.Eventually(t, wait, func() error {
		if z.App.Connected() || status.Code(z.App.LastError()) != codes.PermissionDenied {
			return fmt.Errorf("connected=%v lastError=%v", z.App.Connected(), z.App.LastError())
		}
		return nil
	})
	t.Logf("disabled: %v", z.App.LastError())
	// The zone records its link in its own etcd (GET /global-insight on
	// its api-server): offline, with global's answer.
	apptest.Eventually(t, wait, func() error {
		zi, err := z.Store.Get(ctx, resource.ZoneInsightType, "", "zone-1")
		if err != nil {
			return err
		}
		state, reason := resource.LinkState(zi.Spec.(*meshv1.ZoneInsight))
		if state != resource.ZoneOffline || !strings.Contains(reason, "disabled on global") {
			return fmt.Errorf("link %s: %s", state, reason)
		}
		return nil
	})
	// Away (refused) is not gone: global keeps the zone's resources.
	if _, err := g.Store.Get(ctx, resource.DataplaneType, "default", "zone-1.web-1"); err != nil {
		t.Fatalf("global dropped a disabled zone's dataplane: %v", err)
	}
	setEnabled(true)
	apptest.Eventually(t, wait, func() error {
		if !z.App.Connected() {
			return errors.New("not reconnected")
		}
		zi, err := z.Store.Get(ctx, resource.ZoneInsightType, "", "zone-1")
		if err != nil {
			return err
		}
		if state, reason := resource.LinkState(zi.Spec.(*meshv1.ZoneInsight)); state != resource.ZoneOnline {
			return fmt.Errorf("link %s: %s", state, reason)
		}
		return nil
	})

	if err := g.Store.Delete(ctx, resource.ZoneType, "", "zone-1", 0); err != nil {
		t.Fatal(err)
	}
	gone(t, g.Store, resource.DataplaneType, "default", "zone-1.web-1")
	// The zone itself keeps everything.
	if _, err := z.Store.Get(ctx, resource.DataplaneType, "default", "web-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := z.Store.Get(ctx, resource.MeshType, "", "default"); err != nil {
		t.Fatal(err)
	}
}

// With a retention, a zone offline for longer has its resources removed.
func TestRetention(t *testing.T) {
	ctx := context.Background()
	c := apptest.Start(t, apptest.Options{Zones: 1, JanitorInterval: 100 * time.Millisecond, Retention: 500 * time.Millisecond, LeaseTTL: time.Second})
	g, z := c.Global, c.Zones[0]
	if _, err := z.Store.Create(ctx, apptest.Dataplane("web-1", "web", 8080), store.WithoutMeshCheck()); err != nil {
		t.Fatal(err)
	}
	has(t, g.Store, resource.DataplaneType, "default", "zone-1.web-1", "zone-1", nil)
	z.Stop(t)
	gone(t, g.Store, resource.DataplaneType, "default", "zone-1.web-1")
	// Back again: everything is sent up again.
	c.StartZone(t, 0, c.ZoneToken(t, "zone-1"))
	has(t, g.Store, resource.DataplaneType, "default", "zone-1.web-1", "zone-1", nil)
}

// Two zone-sync replicas in one zone: one holds the stream, the other takes
// over when it stops.
func TestZoneReplicasElectOneLeader(t *testing.T) {
	ctx := context.Background()
	c := apptest.Start(t, apptest.Options{Zones: 1})
	first := c.Zones[0]
	second, _ := c.StartReplica(t, 0)
	time.Sleep(300 * time.Millisecond) // give a wrong second stream the chance to appear
	if second.Connected() {
		t.Fatal("the second replica connected while the first leads")
	}
	first.Stop(t)
	apptest.Eventually(t, wait, func() error {
		if !second.Connected() {
			return errors.New("second replica not connected")
		}
		return nil
	})
	if _, err := first.Store.Create(ctx, apptest.Dataplane("web-2", "web", 8080), store.WithoutMeshCheck()); err != nil {
		t.Fatal(err)
	}
	has(t, c.Global.Store, resource.DataplaneType, "default", "zone-1.web-2", "zone-1", nil)
	if on, err := app.Online(ctx, c.Global.Client, "zone-1"); !on || err != nil {
		t.Fatalf("online=%v err=%v", on, err)
	}
}

// A stream ends when its token expires; the same token is then refused.
func TestStreamEndsWhenTokenExpires(t *testing.T) {
	ctx := context.Background()
	c := apptest.Start(t, apptest.Options{Zones: 0})
	if _, err := c.Global.Store.Create(ctx, resource.New(resource.ZoneType, "", "zone-1")); err != nil {
		t.Fatal(err)
	}
	// Expired 25 s ago: still inside the 30 s verification leeway for ~5 s
	// (room for a loaded machine or the race detector to connect in time).
	issued := time.Now().Add(-time.Hour - 25*time.Second)
	tok, _, err := token.New(c.Global.Store).WithClock(func() time.Time { return issued }).
		Issue(ctx, token.Claims{Kind: token.KindZone, Zone: "zone-1", RegisteredClaims: jwt.RegisteredClaims{Subject: "zone-1"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s, cancel := rawStream(t, c, "zone-1", tok)
	defer cancel()
	if m, err := s.Recv(); err != nil || m.GetWelcome() == nil {
		t.Fatalf("no welcome: %v %v", m, err)
	}
	for {
		_, err := s.Recv()
		if err == nil {
			continue
		}
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("stream ended with %v, want Unauthenticated", err)
		}
		t.Logf("ended: %v", err)
		break
	}
	s2, cancel2 := rawStream(t, c, "zone-1", tok)
	defer cancel2()
	if _, err := s2.Recv(); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("expired token: got %v", err)
	}
}

// A connected zone whose presence lease is lost (here revoked; in real
// life etcd unavailable for longer than the TTL) gets a new one at once:
// it never looks offline for long, and retention does not delete the
// resources of a connected zone.
func TestPresenceLeaseRegranted(t *testing.T) {
	ctx := context.Background()
	c := apptest.Start(t, apptest.Options{Zones: 1, JanitorInterval: 100 * time.Millisecond, Retention: 2 * time.Second, LeaseTTL: time.Second})
	g, z := c.Global, c.Zones[0]
	if _, err := z.Store.Create(ctx, apptest.Dataplane("web-1", "web", 8080), store.WithoutMeshCheck()); err != nil {
		t.Fatal(err)
	}
	has(t, g.Store, resource.DataplaneType, "default", "zone-1.web-1", "zone-1", nil)
	cli := g.Store.Client()
	lease := func() clientv3.LeaseID {
		resp, err := cli.Get(ctx, global.PresencePrefix+"zone-1/", clientv3.WithPrefix())
		if err != nil || len(resp.Kvs) != 1 {
			return 0
		}
		return clientv3.LeaseID(resp.Kvs[0].Lease)
	}
	first := lease()
	if first == 0 {
		t.Fatal("no presence key")
	}
	for range 3 { // lost again and again: re-granted each time
		if _, err := cli.Revoke(ctx, lease()); err != nil {
			t.Fatal(err)
		}
		apptest.Eventually(t, wait, func() error {
			if l := lease(); l == 0 || l == first {
				return fmt.Errorf("presence lease %x", l)
			}
			return nil
		})
		first = lease()
	}
	// Well past the retention: the connected zone's resources are there.
	time.Sleep(3 * time.Second) // retention is a time span, not a sync point
	if _, err := g.Store.Get(ctx, resource.DataplaneType, "default", "zone-1.web-1"); err != nil {
		t.Fatalf("retention deleted a connected zone's dataplane: %v", err)
	}
	if on, err := global.Online(ctx, cli, "zone-1"); err != nil || !on {
		t.Fatalf("online = %v, %v", on, err)
	}
}
