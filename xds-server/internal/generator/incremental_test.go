package generator

import (
	"fmt"
	"math/rand"
	"reflect"
	"testing"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	"github.com/weftmesh/weft/xds-server/internal/meshview"
)

// TestIncrementalSnapshot applies random sequences of Dataplane, VIP,
// policy, ingress and Mesh changes and checks that a snapshot built from
// its predecessor (FromViewAfter) gives every proxy, Envoy and proxyless,
// the same resources as a snapshot built from scratch: the same per-type
// versions (digests of every resource), and an error exactly when it has one.
// Versions of the incremental snapshot go through its digest cache, so a
// stale carried digest fails too.
func TestIncrementalSnapshot(t *testing.T) {
	for seed := int64(1); seed <= randomSeeds(); seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			w := newRandomMesh(rng)
			var prev *Snapshot
			for step := 0; step < 40; step++ {
				w.mutate(rng)
				v := w.view()
				// Some steps use the previous snapshot's lazy pieces
				// first, so that both carried and uncarried paths run.
				if prev != nil && rng.Intn(2) == 0 {
					useSome(prev, v, rng)
				}
				inc := FromViewAfter("m", v, prev)
				fresh := FromView("m", v)
				compareSnapshots(t, fmt.Sprintf("step %d (%s)", step, w.last), inc, fresh, v)
				prev = inc
			}
		})
	}
}

func useSome(s *Snapshot, v *meshview.Mesh, rng *rand.Rand) {
	for _, d := range v.Dataplanes {
		if rng.Intn(4) != 0 {
			continue
		}
		kind := KindEnvoy
		if rng.Intn(2) == 0 {
			kind = KindGRPC
		}
		name := d.Meta.GetName()
		_, _ = Generate(s, &Proxy{Mesh: "m", Name: name, Kind: kind, Dataplane: s.Dataplanes[name], Identity: identity})
	}
}

func compareSnapshots(t *testing.T, what string, inc, fresh *Snapshot, v *meshview.Mesh) {
	t.Helper()
	if !reflect.DeepEqual(inc.Services(), fresh.Services()) {
		t.Fatalf("%s: services %v, from scratch %v", what, inc.Services(), fresh.Services())
	}
	for _, svc := range fresh.Services() {
		if inc.Protocol(svc) != fresh.Protocol(svc) {
			t.Fatalf("%s: protocol of %s %q, from scratch %q", what, svc, inc.Protocol(svc), fresh.Protocol(svc))
		}
	}
	for _, d := range v.Dataplanes {
		name := d.Meta.GetName()
		for _, kind := range []string{KindEnvoy, KindGRPC} {
			gi, erri := Generate(inc, &Proxy{Mesh: "m", Name: name, Kind: kind, Dataplane: inc.Dataplanes[name], Identity: identity})
			gf, errf := Generate(fresh, &Proxy{Mesh: "m", Name: name, Kind: kind, Dataplane: fresh.Dataplanes[name], Identity: identity})
			// Both fail or neither (which duplicate an invalid
			// configuration reports first depends on map order).
			if (erri == nil) != (errf == nil) {
				t.Fatalf("%s: %s %s: error %v, from scratch %v", what, kind, name, erri, errf)
			}
			if errf != nil {
				continue
			}
			vi, vf := inc.Versions(gi), gf.Versions()
			if !reflect.DeepEqual(vi, vf) {
				t.Fatalf("%s: %s %s: versions %v, from scratch %v\nincremental: %v\nfrom scratch: %v", what, kind, name, vi, vf, resourceNames(gi), resourceNames(gf))
			}
			if raw := gi.Versions(); !reflect.DeepEqual(raw, vf) {
				t.Fatalf("%s: %s %s: cached versions agree but content differs: %v vs %v", what, kind, name, raw, vf)
			}
		}
	}
}

func resourceNames(r Resources) map[string][]string {
	out := map[string][]string{}
	for typ, list := range r {
		for _, res := range list {
			out[typ] = append(out[typ], fmt.Sprintf("%s", res.(interface{ String() string }).String()[:min(60, len(res.(interface{ String() string }).String()))]))
		}
	}
	return out
}

// randomMesh is a small mesh that is changed one random step at a time.
type randomMesh struct {
	mesh      *resource.Resource
	dps       map[string]*resource.Resource
	vips      map[string]*resource.Resource
	tps       map[string]*resource.Resource
	policies  map[string]*resource.Resource
	ingresses map[string]*resource.Resource
	last      string
	next      int
}

const randomServices = 6

func newRandomMesh(rng *rand.Rand) *randomMesh {
	w := &randomMesh{dps: map[string]*resource.Resource{}, vips: map[string]*resource.Resource{}, tps: map[string]*resource.Resource{},
		policies: map[string]*resource.Resource{}, ingresses: map[string]*resource.Resource{}}
	w.setMesh(rng)
	for i := 0; i < 30; i++ {
		w.putDataplane(rng, fmt.Sprintf("dp-%d", i))
	}
	w.next = 30
	for s := 0; s < randomServices; s++ {
		w.putVIP(rng, s)
		w.putPermission(rng, s)
	}
	return w
}

func (w *randomMesh) view() *meshview.Mesh {
	v := &meshview.Mesh{Name: "m", Spec: w.mesh.Spec.(*meshv1.Mesh)}
	// Map order: the view's lists come in no particular order.
	for _, r := range w.dps {
		v.Dataplanes = append(v.Dataplanes, r)
	}
	for _, r := range w.vips {
		v.VirtualIPs = append(v.VirtualIPs, r)
	}
	for _, r := range w.tps {
		v.TrafficPermissions = append(v.TrafficPermissions, r)
	}
	for _, r := range w.policies {
		v.Policies = append(v.Policies, r)
	}
	for _, r := range w.ingresses {
		v.ZoneIngresses = append(v.ZoneIngresses, r)
	}
	return v
}

func svcName(i int) string { return fmt.Sprintf("svc-%d", i) }

func (w *randomMesh) setMesh(rng *rand.Rand) {
	m := resource.New(resource.MeshType, "", "m")
	spec := &meshv1.Mesh{}
	if rng.Intn(2) == 0 {
		spec.Mtls = &meshv1.Mesh_Mtls{EnabledBackend: "ca", Backends: []*meshv1.CertificateAuthorityBackend{{Name: "ca", Type: "builtin"}}}
	}
	m.Spec = spec
	w.mesh = m
}

func (w *randomMesh) putDataplane(rng *rand.Rand, name string) {
	dp := &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: fmt.Sprintf("10.0.%d.%d", rng.Intn(4), rng.Intn(250)+1)}}
	if rng.Intn(5) == 0 {
		dp.Networking.AdvertisedAddress = fmt.Sprintf("192.168.0.%d", rng.Intn(250)+1)
	}
	for k, n := 0, 1+rng.Intn(2); k < n; k++ {
		svc := svcName(rng.Intn(randomServices))
		tags := map[string]string{resource.ServiceTag: svc, "version": []string{"v1", "v2"}[rng.Intn(2)]}
		switch rng.Intn(4) {
		case 0:
			tags[resource.ProtocolTag] = "http"
		case 1:
			tags[resource.ProtocolTag] = "grpc"
		case 2:
			tags[resource.ProtocolTag] = "tcp"
		}
		if rng.Intn(4) == 0 {
			tags[resource.ZoneTag] = []string{"z1", "z2"}[rng.Intn(2)]
		}
		in := &meshv1.Dataplane_Networking_Inbound{Port: uint32(8080 + k), ServicePort: uint32(80 + k), Tags: tags}
		if rng.Intn(4) == 0 {
			in.Health = &meshv1.Dataplane_Networking_Inbound_Health{Ready: rng.Intn(2) == 0}
		}
		if rng.Intn(6) == 0 {
			in.Address = fmt.Sprintf("10.1.0.%d", rng.Intn(250)+1)
		}
		dp.Networking.Inbound = append(dp.Networking.Inbound, in)
	}
	for k, n := 0, rng.Intn(3); k < n; k++ {
		dp.Networking.Outbound = append(dp.Networking.Outbound, &meshv1.Dataplane_Networking_Outbound{
			Port: uint32(10001 + k), Tags: map[string]string{resource.ServiceTag: svcName(rng.Intn(randomServices + 1))}})
	}
	if rng.Intn(2) == 0 {
		dp.Networking.TransparentProxying = &meshv1.Dataplane_Networking_TransparentProxying{RedirectPortInbound: 15006, RedirectPortOutbound: 15001}
	}
	r := resource.New(resource.DataplaneType, "m", name)
	r.Spec = dp
	w.dps[name] = r
}

func (w *randomMesh) putVIP(rng *rand.Rand, s int) {
	svc := svcName(s)
	v := resource.New(resource.VirtualIPType, "m", svc)
	v.Spec = &meshv1.VirtualIP{Service: svc, Ip: fmt.Sprintf("240.0.%d.%d", s, rng.Intn(250)+1)}
	w.vips[svc] = v
}

func (w *randomMesh) putPermission(rng *rand.Rand, s int) {
	svc := svcName(s)
	tp := resource.New(resource.TrafficPermissionType, "m", "to-"+svc)
	tp.Spec = &meshv1.TrafficPermission{
		Sources:      []*meshv1.Selector{{Match: map[string]string{resource.ServiceTag: svcName(rng.Intn(randomServices))}}},
		Destinations: []*meshv1.Selector{{Match: map[string]string{resource.ServiceTag: svc}}},
	}
	w.tps[tp.Meta.GetName()] = tp
}

func (w *randomMesh) putRoute(rng *rand.Rand, s int) {
	svc := svcName(s)
	all := []*meshv1.Selector{{Match: map[string]string{resource.ServiceTag: "*"}}}
	tr := resource.New(resource.TrafficRouteType, "m", "route-"+svc)
	tr.Spec = &meshv1.TrafficRoute{Sources: all, Destinations: []*meshv1.Selector{{Match: map[string]string{resource.ServiceTag: svc}}},
		Conf: &meshv1.TrafficRoute_Conf{Split: []*meshv1.TrafficRoute_Split{
			{Weight: uint32(1 + rng.Intn(90)), Destination: map[string]string{resource.ServiceTag: svc, "version": "v1"}},
			{Weight: 10, Destination: map[string]string{resource.ServiceTag: svc, "version": "v2"}},
		}}}
	w.policies[tr.Meta.GetName()] = tr
}

func (w *randomMesh) putIngress(rng *rand.Rand) {
	zone := []string{"east", "west"}[rng.Intn(2)]
	zi := &meshv1.ZoneIngress{Zone: zone, Networking: &meshv1.ZoneIngress_Networking{Address: "172.16.0.1", Port: uint32(10000 + rng.Intn(2))}}
	for k, n := 0, 1+rng.Intn(3); k < n; k++ {
		tags := map[string]string{resource.ServiceTag: svcName(rng.Intn(randomServices + 2)), "version": "v1"}
		if rng.Intn(2) == 0 {
			tags[resource.ProtocolTag] = "http"
		}
		zi.AvailableServices = append(zi.AvailableServices, &meshv1.ZoneIngress_AvailableService{Mesh: "m", Tags: tags, Instances: uint32(rng.Intn(3))})
	}
	r := resource.New(resource.ZoneIngressType, "", "zi-"+zone)
	r.Spec = zi
	w.ingresses[zone] = r
}

// mutate applies one random change, mostly to Dataplanes.
func (w *randomMesh) mutate(rng *rand.Rand) {
	names := sortedKeys(w.dps)
	switch op := rng.Intn(20); {
	case op < 8: // re-register or change one
		name := names[rng.Intn(len(names))]
		w.putDataplane(rng, name)
		w.last = "change " + name
	case op < 10: // same spec, new object (a re-registration)
		name := names[rng.Intn(len(names))]
		r := resource.New(resource.DataplaneType, "m", name)
		r.Spec = w.dps[name].Spec
		w.dps[name] = r
		w.last = "re-put " + name
	case op < 12:
		name := fmt.Sprintf("dp-%d", w.next)
		w.next++
		w.putDataplane(rng, name)
		w.last = "add " + name
	case op < 14:
		name := names[rng.Intn(len(names))]
		if len(names) > 3 {
			delete(w.dps, name)
		}
		w.last = "delete " + name
	case op == 14: // many at once
		for _, name := range names {
			if rng.Intn(2) == 0 {
				w.putDataplane(rng, name)
			}
		}
		w.last = "change many"
	case op == 15:
		w.putVIP(rng, rng.Intn(randomServices))
		w.last = "vip"
	case op == 16:
		if rng.Intn(3) == 0 {
			delete(w.policies, "route-"+svcName(rng.Intn(randomServices)))
		} else {
			w.putRoute(rng, rng.Intn(randomServices))
		}
		w.last = "route"
	case op == 17:
		w.putPermission(rng, rng.Intn(randomServices))
		w.last = "permission"
	case op == 18:
		if rng.Intn(3) == 0 {
			delete(w.ingresses, []string{"east", "west"}[rng.Intn(2)])
		} else {
			w.putIngress(rng)
		}
		w.last = "ingress"
	default:
		w.setMesh(rng)
		w.last = "mesh"
	}
}

// TestLazyPiecesConcurrent generates Envoy and proxyless proxies of one
// snapshot (built from a predecessor whose lazy pieces were used) from
// many goroutines at once: the lazy builds run once, and every proxy gets
// what a sequential generation on a fresh snapshot gives it. Run with
// -race.
func TestLazyPiecesConcurrent(t *testing.T) {
	rng := rand.New(rand.NewSource(99))
	w := newRandomMesh(rng)
	v := w.view()
	prev := FromView("m", v)
	useSome(prev, v, rng)
	w.putDataplane(rng, "dp-3") // a Dataplane change: the rest is carried
	v = w.view()
	s := FromViewAfter("m", v, prev)
	fresh := FromView("m", v)
	type result struct {
		name, kind string
		versions   map[string]string
		err        error
	}
	results := make(chan result, 2*len(v.Dataplanes))
	done := make(chan struct{})
	for _, d := range v.Dataplanes {
		for _, kind := range []string{KindEnvoy, KindGRPC} {
			go func(name, kind string) {
				<-done
				res, err := Generate(s, &Proxy{Mesh: "m", Name: name, Kind: kind, Dataplane: s.Dataplanes[name], Identity: identity})
				r := result{name: name, kind: kind, err: err}
				if err == nil {
					r.versions = s.Versions(res)
				}
				results <- r
			}(d.Meta.GetName(), kind)
		}
	}
	close(done)
	for range 2 * len(v.Dataplanes) {
		r := <-results
		want, err := Generate(fresh, &Proxy{Mesh: "m", Name: r.name, Kind: r.kind, Dataplane: fresh.Dataplanes[r.name], Identity: identity})
		if (err == nil) != (r.err == nil) {
			t.Fatalf("%s %s: error %v, sequential from scratch %v", r.kind, r.name, r.err, err)
		}
		if err == nil && !reflect.DeepEqual(r.versions, want.Versions()) {
			t.Fatalf("%s %s: versions %v, sequential from scratch %v", r.kind, r.name, r.versions, want.Versions())
		}
	}
}
