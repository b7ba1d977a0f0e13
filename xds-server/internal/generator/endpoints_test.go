package generator

import (
	"fmt"
	"math/rand"
	"reflect"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// TestEndpointOnlyChanges drives random meshes through endpoint-only
// changes (an instance moved, marked (un)ready, added next to others of its
// service, removed) mixed with the random changes of TestIncrementalSnapshot,
// and does what the reconciler does: a sidecar whose last full generation
// was at the same epoch, with the same Dataplane object, gets its
// ClusterLoadAssignments from GenerateEndpoints and keeps its other
// resources. Every such push must equal a full generation on a snapshot
// built from scratch: the same per-type versions, and for the endpoints
// the same bytes. An endpoint-only change must keep the epoch (or the test
// would pass without ever taking the fast path).
func TestEndpointOnlyChanges(t *testing.T) {
	type pushed struct {
		epoch    uint64
		dp       *meshv1.Dataplane
		res      Resources // the last push: non-EDS from a full generation
		versions map[string]string
	}
	fastTotal := 0
	for seed := int64(1); seed <= randomSeeds(); seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			w := newRandomMesh(rng)
			if rng.Intn(2) == 0 {
				w.putRoute(rng, rng.Intn(randomServices)) // subsets by version
			}
			proxies := map[string]*pushed{}
			var prev *Snapshot
			fast := 0
			for step := 0; step < 60; step++ {
				endpointOnly := false
				if step > 0 {
					if rng.Intn(3) == 0 {
						w.mutate(rng)
					} else {
						endpointOnly = w.endpointChange(rng)
					}
				}
				v := w.view()
				if prev != nil && rng.Intn(2) == 0 {
					useSome(prev, v, rng)
				}
				s := FromViewAfter("m", v, prev)
				fresh := FromView("m", v)
				if endpointOnly && s.Epoch() != prev.Epoch() {
					t.Fatalf("step %d (%s): an endpoint-only change gave a new epoch", step, w.last)
				}
				for _, d := range v.Dataplanes {
					name := d.Meta.GetName()
					want, werr := Generate(fresh, &Proxy{Mesh: "m", Name: name, Kind: KindEnvoy, Dataplane: fresh.Dataplanes[name], Identity: identity})
					p := &Proxy{Mesh: "m", Name: name, Kind: KindEnvoy, Dataplane: s.Dataplanes[name], Identity: identity}
					last := proxies[name]
					if last != nil && last.epoch == s.Epoch() && last.dp == p.Dataplane {
						eds, err := GenerateEndpoints(s, p)
						if (err == nil) != (werr == nil) {
							t.Fatalf("step %d (%s): %s: endpoints error %v, full generation from scratch %v", step, w.last, name, err, werr)
						}
						if err != nil {
							delete(proxies, name)
							continue
						}
						fast++
						got := Resources{}
						for typ, list := range last.res {
							if typ != resourcev3.EndpointType {
								got[typ] = list
							}
						}
						if len(eds) > 0 {
							got[resourcev3.EndpointType] = eds
						}
						if gv, wv := s.Versions(got), want.Versions(); !reflect.DeepEqual(gv, wv) {
							t.Fatalf("step %d (%s): %s: endpoint-only push has versions %v, full generation from scratch %v\ngot: %v\nwant: %v", step, w.last, name, gv, wv, resourceNames(got), resourceNames(want))
						}
						if len(eds) != len(want[resourcev3.EndpointType]) {
							t.Fatalf("step %d (%s): %s: %d endpoint resources, from scratch %d", step, w.last, name, len(eds), len(want[resourcev3.EndpointType]))
						}
						for i, cla := range eds {
							if !proto.Equal(cla, want[resourcev3.EndpointType][i]) {
								t.Fatalf("step %d (%s): %s: endpoint resource %d differs from scratch:\n%v\n%v", step, w.last, name, i, cla, want[resourcev3.EndpointType][i])
							}
						}
						last.res = got
						continue
					}
					res, err := Generate(s, p)
					if (err == nil) != (werr == nil) {
						t.Fatalf("step %d (%s): %s: error %v, from scratch %v", step, w.last, name, err, werr)
					}
					if err != nil {
						delete(proxies, name)
						continue
					}
					proxies[name] = &pushed{epoch: s.Epoch(), dp: p.Dataplane, res: res}
				}
				for name := range proxies {
					if v.Dataplanes != nil && s.Dataplanes[name] == nil {
						delete(proxies, name)
					}
				}
				prev = s
			}
			if fast == 0 {
				t.Fatal("no sidecar took the endpoint-only path")
			}
			fastTotal += fast
		})
	}
	t.Logf("%d endpoint-only generations checked", fastTotal)
}

// endpointChange changes one instance's endpoint but nothing else a
// sidecar's other resources depend on: it moves one (a new address), flips
// its readiness, adds an instance like an existing one (same tags) or
// removes one whose services keep another instance with the same tags.
// It reports whether it did (false: it fell back to a random change).
func (w *randomMesh) endpointChange(rng *rand.Rand) bool {
	names := sortedKeys(w.dps)
	name := names[rng.Intn(len(names))]
	old := w.dps[name].Spec.(*meshv1.Dataplane)
	dp := proto.Clone(old).(*meshv1.Dataplane)
	r := resource.New(resource.DataplaneType, "m", name)
	r.Spec = dp
	// A service's protocol is the first one its instances (by Dataplane
	// name) give: adding or removing an instance keeps it only when all
	// its instances agree.
	for _, in := range old.GetNetworking().GetInbound() {
		if !w.oneProtocol(in.GetTags()[resource.ServiceTag]) {
			w.mutate(rng)
			return false
		}
	}
	switch rng.Intn(4) {
	case 0:
		dp.Networking.Address = fmt.Sprintf("10.2.%d.%d", rng.Intn(4), rng.Intn(250)+1)
		for _, in := range dp.Networking.Inbound {
			in.Address = ""
		}
		dp.Networking.AdvertisedAddress = ""
		w.dps[name] = r
		w.last = "move " + name
	case 1:
		in := dp.Networking.Inbound[rng.Intn(len(dp.Networking.Inbound))]
		in.Health = &meshv1.Dataplane_Networking_Inbound_Health{Ready: in.GetHealth() != nil && !in.GetHealth().GetReady()}
		w.dps[name] = r
		w.last = "readiness " + name
	case 2:
		dp.Networking.Address = fmt.Sprintf("10.3.%d.%d", rng.Intn(4), rng.Intn(250)+1)
		nn := fmt.Sprintf("dp-%d", w.next)
		w.next++
		r.Meta.Name = nn
		w.dps[nn] = r
		w.last = "add like " + name + ": " + nn
	default:
		// Remove it when every one of its inbounds has a twin (same
		// tags) on another Dataplane: the services stay.
		for _, in := range old.GetNetworking().GetInbound() {
			twin := false
			for other, o := range w.dps {
				for _, oin := range o.Spec.(*meshv1.Dataplane).GetNetworking().GetInbound() {
					if other != name && reflect.DeepEqual(oin.GetTags(), in.GetTags()) {
						twin = true
					}
				}
			}
			if !twin {
				w.mutate(rng)
				return false
			}
		}
		delete(w.dps, name)
		w.last = "remove " + name
	}
	return true
}

// oneProtocol reports whether every instance of svc has the same protocol
// tag.
func (w *randomMesh) oneProtocol(svc string) bool {
	protocols := map[string]bool{}
	for _, r := range w.dps {
		for _, in := range r.Spec.(*meshv1.Dataplane).GetNetworking().GetInbound() {
			if in.GetTags()[resource.ServiceTag] == svc {
				protocols[in.GetTags()[resource.ProtocolTag]] = true
			}
		}
	}
	return len(protocols) == 1
}

// TestInboundReuse drives random meshes through TestIncrementalSnapshot's
// changes (Dataplanes, VIPs, routes, permissions, ingresses, the Mesh) and
// a ProxyTemplate now and then, and does what the reconciler does: a
// sidecar whose last generation was at the same inbound epoch, with the
// same Dataplane object, is generated with Proxy.Reuse giving the wire
// forms of what it was pushed last. Every such generation must have the
// versions of a full generation on a snapshot built from scratch, and
// reuse must happen (or the test would pass without it).
func TestInboundReuse(t *testing.T) {
	type pushed struct {
		inbound uint64
		dp      *meshv1.Dataplane
		wire    Resources
	}
	total := 0
	for seed := int64(1); seed <= randomSeeds(); seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			w := newRandomMesh(rng)
			proxies := map[string]*pushed{}
			var prev *Snapshot
			reuses := 0
			for step := 0; step < 50; step++ {
				if step > 0 {
					switch rng.Intn(10) {
					case 0:
						if _, ok := w.policies["template"]; ok {
							delete(w.policies, "template")
						} else {
							w.policies["template"] = testTemplate()
						}
						w.last = "template"
					case 1, 2:
						w.endpointChange(rng)
					default:
						w.mutate(rng)
					}
				}
				v := w.view()
				s := FromViewAfter("m", v, prev)
				fresh := FromView("m", v)
				for _, d := range v.Dataplanes {
					name := d.Meta.GetName()
					want, werr := Generate(fresh, &Proxy{Mesh: "m", Name: name, Kind: KindEnvoy, Dataplane: fresh.Dataplanes[name], Identity: identity})
					p := &Proxy{Mesh: "m", Name: name, Kind: KindEnvoy, Dataplane: s.Dataplanes[name], Identity: identity}
					last := proxies[name]
					reusing := last != nil && last.inbound == s.InboundEpoch() && last.dp == p.Dataplane
					used := 0
					if reusing {
						p.Reuse = func(typ, n string) types.Resource {
							for _, r := range last.wire[typ] {
								if cachev3.GetResourceName(r) == n {
									used++
									return r
								}
							}
							return nil
						}
					}
					res, err := Generate(s, p)
					if (err == nil) != (werr == nil) {
						t.Fatalf("step %d (%s): %s (reusing %v): error %v, from scratch %v", step, w.last, name, reusing, err, werr)
					}
					if err != nil {
						delete(proxies, name)
						continue
					}
					if gv, wv := s.Versions(res), want.Versions(); !reflect.DeepEqual(gv, wv) {
						t.Fatalf("step %d (%s): %s (reusing %v): versions %v, from scratch %v\ngot: %v\nwant: %v", step, w.last, name, reusing, gv, wv, resourceNames(res), resourceNames(want))
					}
					if used > 0 {
						reuses++
					}
					wire, _ := s.Wire(res)
					proxies[name] = &pushed{inbound: s.InboundEpoch(), dp: p.Dataplane, wire: wire}
				}
				prev = s
			}
			if reuses == 0 {
				t.Fatal("no sidecar reused its inbound resources")
			}
			total += reuses
		})
	}
	t.Logf("%d generations reused inbound resources", total)
}

// testTemplate is a ProxyTemplate for every dataplane that changes the
// inbound listeners (so a reused one would be wrong after it goes).
func testTemplate() *resource.Resource {
	r := resource.New(resource.ProxyTemplateType, "m", "template")
	r.Spec = &meshv1.ProxyTemplate{
		Selectors: []*meshv1.Selector{{Match: map[string]string{resource.ServiceTag: "*"}}},
		Conf: &meshv1.ProxyTemplate_Conf{Modifications: []*meshv1.ProxyTemplate_Modification{{
			Type: "cluster", Operation: "patch", Match: &meshv1.ProxyTemplate_Modification_Match{Origin: "inbound"}, Value: "connectTimeout: 3s",
		}}},
	}
	return r
}

// randomSeeds is how many seeds the randomized equivalence tests run.
func randomSeeds() int64 {
	if raceEnabled {
		return 3
	}
	return 12
}
