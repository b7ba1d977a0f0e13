package generator

import (
	"sort"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// rbacRules turns the TrafficPermissions that apply to an inbound into an
// ALLOW rule set: one policy per TrafficPermission whose destinations match
// the inbound's tags (ranked by selector specificity, most specific first), with a principal per source service. Workload
// certificates carry only the service identity, so a source selector with
// tags other than weft.io/service cannot be enforced and is skipped (it
// allows nothing) rather than widened. No matching policy means an empty
// ALLOW set: everything is denied.
func rbacRules(s *Snapshot, inboundTags map[string]string) *rbacv3.RBAC {
	rules := &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{}}
	for _, c := range s.Policies.ByDestination(resource.TrafficPermissionType, inboundTags) {
		tp := c.Resource.Spec.(*meshv1.TrafficPermission)
		var principals []*rbacv3.Principal
		seen := map[string]bool{}
		for _, src := range tp.GetSources() {
			p, key := sourcePrincipal(s.Mesh, src.GetMatch())
			if p == nil || seen[key] {
				continue
			}
			seen[key] = true
			principals = append(principals, p)
		}
		if len(principals) == 0 {
			continue
		}
		sort.SliceStable(principals, func(i, j int) bool { return principalKey(principals[i]) < principalKey(principals[j]) })
		rules.Policies[c.Resource.Meta.GetName()] = &rbacv3.Policy{
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
			Principals:  principals,
		}
	}
	return rules
}

func sourcePrincipal(mesh string, match map[string]string) (*rbacv3.Principal, string) {
	svc, ok := match[resource.ServiceTag]
	if !ok || len(match) != 1 {
		return nil, ""
	}
	var m *matcherv3.StringMatcher
	key := ""
	if svc == resource.Wildcard {
		key = "prefix:" + SpiffeID(mesh, "")
		m = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: SpiffeID(mesh, "")}}
	} else {
		key = "exact:" + SpiffeID(mesh, svc)
		m = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: SpiffeID(mesh, svc)}}
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{
		Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: m},
	}}, key
}

func principalKey(p *rbacv3.Principal) string {
	m := p.GetAuthenticated().GetPrincipalName()
	if e := m.GetExact(); e != "" {
		return "exact:" + e
	}
	return "prefix:" + m.GetPrefix()
}
