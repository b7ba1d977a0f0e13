package policy_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/weftmesh/weft/pkg/policy"
	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

func dpResource(name string, inbounds ...map[string]string) *resource.Resource {
	return &resource.Resource{Meta: &meshv1.Meta{Type: "Dataplane", Mesh: "m", Name: name}, Spec: dataplane(inbounds...)}
}

func impacts(list []policy.Impact) string {
	var out []string
	for _, im := range list {
		s := fmt.Sprintf("%s→%s", im.Dataplane, im.Destination)
		if im.Applies {
			s += " applies"
		} else {
			s += " loses to " + nameOf(im.LosesTo)
		}
		if im.Replaces != nil {
			s += " replacing " + nameOf(im.Replaces)
		}
		out = append(out, s)
	}
	return strings.Join(out, "; ")
}

// TestExplain: which dataplanes a new policy matches, whether it wins,
// and what it overrides — by the rules the generators use.
func TestExplain(t *testing.T) {
	all := tags(svc, "*")
	dps := []*resource.Resource{
		dpResource("web-1", tags(svc, "web")),
		dpResource("api-1", tags(svc, "api", "version", "v1")),
		dpResource("db-1", tags(svc, "db")),
	}
	existing := []*resource.Resource{
		retry("retry-all", all, all),
		retry("retry-web-db", tags(svc, "web"), tags(svc, "db")),
	}
	got := impacts(policy.Explain(existing, dps, retry("retry-web", tags(svc, "web"), all)))
	want := "web-1→api applies replacing retry-all; web-1→db loses to retry-web-db replacing retry-web-db; web-1→web applies replacing retry-all"
	if got != want {
		t.Errorf("Retry from web:\n got %s\nwant %s", got, want)
	}
	// Replacing a policy by a new version of itself.
	got = impacts(policy.Explain(existing, dps, retry("retry-web-db", tags(svc, "web"), tags(svc, "db"))))
	if want := "web-1→db applies replacing retry-web-db"; got != want {
		t.Errorf("same policy again: %s", got)
	}
	// Dataplane policies: per dataplane.
	got = impacts(policy.Explain(nil, dps, trace("api-trace", tags(svc, "api"))))
	if want := "api-1→ applies"; got != want {
		t.Errorf("TrafficTrace: %s", got)
	}
	// TrafficPermission: at the destination's inbound.
	tp := &resource.Resource{Meta: &meshv1.Meta{Type: "TrafficPermission", Mesh: "m", Name: "to-api"},
		Spec: &meshv1.TrafficPermission{Sources: sels(tags(svc, "web")), Destinations: sels(tags(svc, "api"))}}
	got = impacts(policy.Explain(nil, dps, tp))
	if want := "api-1→api applies"; got != want {
		t.Errorf("TrafficPermission: %s", got)
	}
	// A non-policy explains nothing.
	if got := policy.Explain(nil, dps, dps[0]); got != nil {
		t.Errorf("Dataplane: %v", got)
	}
}
