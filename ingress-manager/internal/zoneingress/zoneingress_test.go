package zoneingress

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func dp(mesh, name string, ready bool, tags ...map[string]string) *resource.Resource {
	r := resource.New(resource.DataplaneType, mesh, name)
	d := &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: "10.0.0.1"}}
	for i, tg := range tags {
		d.Networking.Inbound = append(d.Networking.Inbound, &meshv1.Dataplane_Networking_Inbound{Port: uint32(8000 + i), Tags: tg,
			Health: &meshv1.Dataplane_Networking_Inbound_Health{Ready: ready}})
	}
	r.Spec = d
	return r
}

func TestServicesCountsHealthyInstancesPerTagSet(t *testing.T) {
	v1 := map[string]string{resource.ServiceTag: "greeter", "version": "v1"}
	v2 := map[string]string{resource.ServiceTag: "greeter", "version": "v2"}
	got := Services("m", []*resource.Resource{
		dp("m", "a", true, v1), dp("m", "b", true, v1, map[string]string{resource.ServiceTag: "admin"}),
		dp("m", "c", true, v2), dp("m", "d", false, v2), dp("other", "e", true, v1),
	})
	want := map[string]uint32{"admin": 1, "greeter/v1": 2, "greeter/v2": 1}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for _, s := range got {
		k := s.GetTags()[resource.ServiceTag]
		if v := s.GetTags()["version"]; v != "" {
			k += "/" + v
		}
		if s.GetMesh() != "m" || want[k] != s.GetInstances() {
			t.Errorf("%s: %d instances in mesh %s, want %d", k, s.GetInstances(), s.GetMesh(), want[k])
		}
	}
}

// TestKeeperFollowsDataplanes: against a real etcd, the ZoneIngress follows
// Dataplanes as they come, turn unhealthy and go, and the cap holds.
func TestKeeperFollowsDataplanes(t *testing.T) {
	cli := etcdtest.Client(t, etcdtest.Start(t))
	st := store.New(cli)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, m := range []string{"m", "n"} {
		if _, err := st.Create(ctx, resource.New(resource.MeshType, "", m)); err != nil {
			t.Fatal(err)
		}
	}
	inf := store.NewInformers(st)
	k := New(Config{Store: st, Dataplanes: inf.For(resource.DataplaneType), Name: "ingress", Zone: "zone-1", MaxServices: 3,
		Networking: &meshv1.ZoneIngress_Networking{Address: "10.1.0.1", Port: 10001, AdvertisedAddress: "lb.example", AdvertisedPort: 443},
		Registerer: prometheus.NewRegistry()})
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	defer func() { cancel(); <-done }()

	get := func() *meshv1.ZoneIngress {
		r, err := st.Get(ctx, resource.ZoneIngressType, "", "ingress")
		if err != nil {
			return nil
		}
		return r.Spec.(*meshv1.ZoneIngress)
	}
	wait := func(what string, cond func(*meshv1.ZoneIngress) bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			if zi := get(); zi != nil && cond(zi) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %v", what, get())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait("the empty ZoneIngress", func(zi *meshv1.ZoneIngress) bool {
		return zi.GetZone() == "zone-1" && zi.GetNetworking().GetAdvertisedPort() == 443 && len(zi.GetAvailableServices()) == 0
	})
	greeter := map[string]string{resource.ServiceTag: "greeter"}
	if _, err := st.Create(ctx, dp("m", "g1", true, greeter)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, dp("m", "g2", true, greeter)); err != nil {
		t.Fatal(err)
	}
	wait("two greeters", func(zi *meshv1.ZoneIngress) bool {
		s := zi.GetAvailableServices()
		return len(s) == 1 && s[0].GetInstances() == 2 && s[0].GetMesh() == "m"
	})
	// One turns unhealthy.
	g2, _ := st.Get(ctx, resource.DataplaneType, "m", "g2")
	g2.Spec.(*meshv1.Dataplane).Networking.Inbound[0].Health.Ready = false
	if _, err := st.Update(ctx, g2); err != nil {
		t.Fatal(err)
	}
	wait("one healthy greeter", func(zi *meshv1.ZoneIngress) bool {
		s := zi.GetAvailableServices()
		return len(s) == 1 && s[0].GetInstances() == 1
	})
	// More tag sets than the cap: three are kept, the rest reported.
	for i := 0; i < 4; i++ {
		if _, err := st.Create(ctx, dp("n", fmt.Sprintf("s%d", i), true, map[string]string{resource.ServiceTag: fmt.Sprintf("s%d", i)})); err != nil {
			t.Fatal(err)
		}
	}
	// Wait for all 5 tag sets: with 4 of them the cap holds already
	// (dropped 1).
	wait("the cap with 5 tag sets (3 kept, dropped = 2)", func(zi *meshv1.ZoneIngress) bool {
		return len(zi.GetAvailableServices()) == 3 && testutil.ToFloat64(k.dropped) == 2
	})
	// Everything goes: the ZoneIngress stays, empty.
	for _, n := range []string{"g1", "g2"} {
		if err := st.Delete(ctx, resource.DataplaneType, "m", n, 0); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 4; i++ {
		if err := st.Delete(ctx, resource.DataplaneType, "n", fmt.Sprintf("s%d", i), 0); err != nil {
			t.Fatal(err)
		}
	}
	wait("no service", func(zi *meshv1.ZoneIngress) bool { return len(zi.GetAvailableServices()) == 0 })
	if err := resource.Validate(&resource.Resource{Meta: &meshv1.Meta{Type: "ZoneIngress", Name: "ingress"}, Spec: get()}); err != nil {
		t.Errorf("the written ZoneIngress does not validate: %v", err)
	}
}
