// Package policymatch answers which policies apply to one dataplane, for
// GET /meshes/{mesh}/dataplanes/{name}/policies: every policy with a
// selector matching one of the dataplane's tag sets (pkg/policy.SourceTags,
// the sets xds-server's generators match it by), and in which role.
// Which of several matching policies wins is pkg/policy's rule (Best).
package policymatch

import (
	"sort"

	"github.com/weftmesh/weft/pkg/policy"
	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// Roles of a dataplane in a matched policy.
const (
	// RoleDestination: a destination selector matches one of its inbounds
	// (the policy applies to traffic to it).
	RoleDestination = "destination"
	// RoleSource: a source selector matches one of its inbounds (the policy
	// applies to traffic it sends).
	RoleSource = "source"
	// RoleSelected: a selector of a policy without sources and
	// destinations (TrafficTrace, ProxyTemplate) matches it.
	RoleSelected = "selected"
)

// Matched is one policy that applies to the dataplane, and how.
type Matched struct {
	Type string `json:"type"`
	Name string `json:"name"`
	Role string `json:"role"`
	// Service is the weft.io/service of the inbound the selector matched.
	Service string `json:"service"`
}

type selectorPolicy interface {
	GetSelectors() []*meshv1.Selector
}

// Match returns the policies among policies that apply to dp: per policy,
// each role in which one of dp's inbounds (or its gateway) matches, in
// type, name, role order.
func Match(dp *meshv1.Dataplane, policies []*resource.Resource) []Matched {
	tagSets := policy.SourceTags(dp) // the tag sets the generators match it by
	var out []Matched
	for _, p := range policies {
		seen := map[string]bool{}
		add := func(role string, sels []*meshv1.Selector) {
			for _, tags := range tagSets {
				if !seen[role] && resource.BestSelector(sels, tags).Matched() {
					seen[role] = true
					out = append(out, Matched{Type: p.Meta.GetType(), Name: p.Meta.GetName(), Role: role, Service: tags[resource.ServiceTag]})
				}
			}
		}
		switch spec := p.Spec.(type) {
		case resource.Policy:
			add(RoleDestination, spec.GetDestinations())
			add(RoleSource, spec.GetSources())
		case selectorPolicy:
			add(RoleSelected, spec.GetSelectors())
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Type != b.Type {
			return a.Type < b.Type
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Role < b.Role
	})
	return out
}
