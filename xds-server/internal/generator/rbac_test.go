package generator

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// TestRBACMatchesBestConnectionPolicy: for every caller identity, the
// generated RBAC allows exactly when resource.BestConnectionPolicy finds a
// TrafficPermission for traffic from {weft.io/service: caller} to the
// inbound — the policy ranking of pkg/resource, compiled to principals.
func TestRBACMatchesBestConnectionPolicy(t *testing.T) {
	services := []string{"web", "api", "redis", "db"}
	pick := func(r *rand.Rand) map[string]string {
		switch r.IntN(5) {
		case 0:
			return map[string]string{resource.ServiceTag: "*"}
		case 1:
			return map[string]string{resource.ServiceTag: services[r.IntN(len(services))], "version": "v2"}
		case 2:
			return map[string]string{"version": "v1"}
		default:
			return map[string]string{resource.ServiceTag: services[r.IntN(len(services))]}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		var tps []*resource.Resource
		for i := 0; i < r.IntN(5); i++ {
			tp := resource.New(resource.TrafficPermissionType, "m", fmt.Sprintf("tp-%d", i))
			spec := &meshv1.TrafficPermission{}
			for k := 0; k <= r.IntN(2); k++ {
				spec.Sources = append(spec.Sources, &meshv1.Selector{Match: pick(r)})
				spec.Destinations = append(spec.Destinations, &meshv1.Selector{Match: pick(r)})
			}
			tp.Spec = spec
			tps = append(tps, tp)
		}
		s := NewSnapshot("m", &meshv1.Mesh{}, nil, tps, nil)
		for _, dst := range services {
			inbound := map[string]string{resource.ServiceTag: dst, "version": "v1"}
			rules := rbacRules(s, inbound)
			for _, src := range services {
				id := SpiffeID("m", src)
				allowed := false
				for _, p := range rules.GetPolicies() {
					for _, pr := range p.GetPrincipals() {
						m := pr.GetAuthenticated().GetPrincipalName()
						if (m.GetExact() != "" && m.GetExact() == id) || (m.GetPrefix() != "" && strings.HasPrefix(id, m.GetPrefix())) {
							allowed = true
						}
					}
				}
				want := resource.BestConnectionPolicy(tps, map[string]string{resource.ServiceTag: src}, inbound) != nil
				if allowed != want {
					t.Fatalf("round %d: %s → %s: RBAC allows=%v, BestConnectionPolicy=%v\npolicies: %v", round, src, dst, allowed, want, tps)
				}
			}
		}
	}
}
