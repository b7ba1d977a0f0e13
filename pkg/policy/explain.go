package policy

import (
	"sort"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// Impact is what writing one policy would do to one dataplane, for one
// destination service (connection policies) or for the dataplane as a
// whole (dataplane policies: Destination is empty). For TrafficPermission
// the destination is the dataplane's own inbound service, the side that
// enforces it.
type Impact struct {
	Dataplane   string
	Destination string
	// Applies: the policy would be the one in force. When false it
	// matches but a more specific policy (LosesTo) stays in force.
	Applies bool
	LosesTo *resource.Resource
	// Replaces is the policy in force before (nil: none; the policy's own
	// previous version when it replaces itself).
	Replaces *resource.Resource
}

// Explain answers, before anything is stored, which dataplanes of a mesh a
// policy would match and which policy it would override for each, by the
// same selection rules the generators use. existing is the mesh's policies
// (a policy of the same type and name is replaced by p); dataplanes the
// mesh's Dataplanes. The result is sorted by dataplane, then destination.
func Explain(existing []*resource.Resource, dataplanes []*resource.Resource, p *resource.Resource) []Impact {
	t := p.Type()
	if t == nil || !IsPolicy(t) {
		return nil
	}
	var rest []*resource.Resource
	for _, r := range existing {
		if r.Type() == t && r.Meta.GetName() == p.Meta.GetName() {
			continue
		}
		rest = append(rest, r)
	}
	before, after := NewSet(existing), NewSet(rest, []*resource.Resource{p})
	services := map[string]bool{}
	for _, d := range dataplanes {
		if dp, ok := d.Spec.(*meshv1.Dataplane); ok {
			for _, s := range resource.DataplaneServices(dp) {
				services[s] = true
			}
		}
	}
	dests := make([]string, 0, len(services))
	for s := range services {
		dests = append(dests, s)
	}
	sort.Strings(dests)

	var out []Impact
	add := func(dp, dest string, sources []map[string]string, destTags map[string]string, pick func(*Set) *resource.Resource) {
		if !Rank(p, sources, destTags).Matched() {
			return
		}
		now := pick(after)
		im := Impact{Dataplane: dp, Destination: dest, Applies: now == p, Replaces: pick(before)}
		if !im.Applies {
			im.LosesTo = now
		}
		out = append(out, im)
	}
	for _, d := range dataplanes {
		dp, ok := d.Spec.(*meshv1.Dataplane)
		if !ok {
			continue
		}
		name := d.Meta.GetName()
		sources := SourceTags(dp)
		switch {
		case t == resource.TrafficPermissionType:
			// Enforced per inbound, for any caller: the destinations rank.
			for _, in := range dp.GetNetworking().GetInbound() {
				tags := in.GetTags()
				if !resource.BestSelector(p.Spec.(connectionPolicy).GetDestinations(), tags).Matched() {
					continue
				}
				first := func(s *Set) *resource.Resource {
					if c := s.ByDestination(t, tags); len(c) > 0 {
						return c[0].Resource
					}
					return nil
				}
				now := first(after)
				im := Impact{Dataplane: name, Destination: tags[resource.ServiceTag], Applies: now == p, Replaces: first(before)}
				if !im.Applies {
					im.LosesTo = now
				}
				out = append(out, im)
			}
		case isConnection(t):
			for _, dest := range dests {
				dt := Destination(dest)
				add(name, dest, sources, dt, func(s *Set) *resource.Resource { return s.Best(t, sources, dt) })
			}
		default:
			add(name, "", sources, nil, func(s *Set) *resource.Resource { return s.Best(t, sources, nil) })
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Dataplane != out[j].Dataplane {
			return out[i].Dataplane < out[j].Dataplane
		}
		return out[i].Destination < out[j].Destination
	})
	return out
}

func isConnection(t *resource.Type) bool {
	for _, c := range ConnectionTypes {
		if c == t {
			return true
		}
	}
	return false
}
