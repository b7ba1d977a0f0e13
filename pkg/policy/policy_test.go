package policy_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/weftmesh/weft/pkg/policy"
	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

const svc = resource.ServiceTag

func tags(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func sels(ms ...map[string]string) []*meshv1.Selector {
	var out []*meshv1.Selector
	for _, m := range ms {
		out = append(out, &meshv1.Selector{Match: m})
	}
	return out
}

func retry(name string, src, dst map[string]string) *resource.Resource {
	return &resource.Resource{Meta: &meshv1.Meta{Type: "Retry", Mesh: "m", Name: name},
		Spec: &meshv1.Retry{Sources: sels(src), Destinations: sels(dst)}}
}

func timeout(name string, src, dst map[string]string) *resource.Resource {
	return &resource.Resource{Meta: &meshv1.Meta{Type: "Timeout", Mesh: "m", Name: name},
		Spec: &meshv1.Timeout{Sources: sels(src), Destinations: sels(dst)}}
}

func trace(name string, sel ...map[string]string) *resource.Resource {
	return &resource.Resource{Meta: &meshv1.Meta{Type: "TrafficTrace", Mesh: "m", Name: name},
		Spec: &meshv1.TrafficTrace{Selectors: sels(sel...)}}
}

func nameOf(r *resource.Resource) string {
	if r == nil {
		return ""
	}
	return r.Meta.GetName()
}

func names(cs []resource.Candidate) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Resource.Meta.GetName())
	}
	return strings.Join(out, ",")
}

func dataplane(inbounds ...map[string]string) *meshv1.Dataplane {
	dp := &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{}}
	for _, t := range inbounds {
		dp.Networking.Inbound = append(dp.Networking.Inbound, &meshv1.Dataplane_Networking_Inbound{Tags: t})
	}
	return dp
}

// TestConnectionSelection pins which Retry wins for a caller (all its
// inbounds count) and a destination service: the most specific sum of the
// best source and destination selectors, ties by name; both sides must
// match.
func TestConnectionSelection(t *testing.T) {
	all := tags(svc, "*")
	set := policy.NewSet([]*resource.Resource{
		retry("z-all", all, all),
		retry("a-all", all, all), // ties with z-all: the name decides
		retry("web-any", tags(svc, "web"), all),
		retry("any-api", all, tags(svc, "api")),
		retry("web-api", tags(svc, "web"), tags(svc, "api")),
		retry("web-v2-api", tags(svc, "web", "version", "v2"), tags(svc, "api")),
		retry("db-only", tags(svc, "db"), tags(svc, "db")),
		timeout("t-web-api", tags(svc, "web"), tags(svc, "api")),
	})
	for _, tc := range []struct {
		name    string
		dp      *meshv1.Dataplane
		dest    string
		ranked  string
		best    string
		timeout string
	}{
		{"exact both sides", dataplane(tags(svc, "web", "version", "v1")), "api", "web-api,any-api,web-any,a-all,z-all", "web-api", "t-web-api"},
		{"an extra source tag is more specific", dataplane(tags(svc, "web", "version", "v2")), "api", "web-v2-api,web-api,any-api,web-any,a-all,z-all", "web-v2-api", "t-web-api"},
		{"wildcards tie: name order", dataplane(tags(svc, "other")), "other", "a-all,z-all", "a-all", ""},
		{"a specific source beats wildcards", dataplane(tags(svc, "web")), "cache", "web-any,a-all,z-all", "web-any", ""},
		{"any inbound of the caller counts", dataplane(tags(svc, "other"), tags(svc, "db")), "db", "db-only,a-all,z-all", "db-only", ""},
		{"a client without inbounds matches wildcards only", dataplane(), "api", "any-api,a-all,z-all", "any-api", ""},
	} {
		src := policy.SourceTags(tc.dp)
		if got := names(set.Ranked(resource.RetryType, src, policy.Destination(tc.dest))); got != tc.ranked {
			t.Errorf("%s: ranked %s, want %s", tc.name, got, tc.ranked)
		}
		o := set.Outbound(src, tc.dest)
		if got := nameOf(o.Retry); got != tc.best {
			t.Errorf("%s: best %s, want %s", tc.name, got, tc.best)
		}
		if b := set.Best(resource.RetryType, src, policy.Destination(tc.dest)); b != o.Retry {
			t.Errorf("%s: Best and Outbound disagree", tc.name)
		}
		if got := nameOf(o.Timeout); got != tc.timeout {
			t.Errorf("%s: timeout %q, want %q", tc.name, got, tc.timeout)
		}
		if o.Route != nil || o.FaultInjection != nil {
			t.Errorf("%s: types with no policies selected something", tc.name)
		}
	}
}

// TestDataplaneSelection: TrafficTrace/ProxyTemplate match through their
// selectors against any of the dataplane's tag sets.
func TestDataplaneSelection(t *testing.T) {
	set := policy.NewSet([]*resource.Resource{
		trace("all", tags(svc, "*")),
		trace("web", tags(svc, "web")),
		trace("web-v1", tags(svc, "web", "version", "v1"), tags(svc, "never")),
	})
	for _, tc := range []struct {
		dp   *meshv1.Dataplane
		want string
	}{
		{dataplane(tags(svc, "web", "version", "v1")), "web-v1,web,all"},
		{dataplane(tags(svc, "api")), "all"},
		{dataplane(tags(svc, "api"), tags(svc, "web")), "web,all"},
		{dataplane(), "all"},
	} {
		if got := names(set.Ranked(resource.TrafficTraceType, policy.SourceTags(tc.dp), nil)); got != tc.want {
			t.Errorf("%v: %s, want %s", policy.SourceTags(tc.dp), got, tc.want)
		}
	}
}

// TestKey: the key changes with the selection and is empty without one.
func TestKey(t *testing.T) {
	all := tags(svc, "*")
	a, b := retry("a", all, all), retry("b", tags(svc, "web"), all)
	set := policy.NewSet([]*resource.Resource{a, b})
	web := set.Outbound(policy.SourceTags(dataplane(tags(svc, "web"))), "api")
	api := set.Outbound(policy.SourceTags(dataplane(tags(svc, "api"))), "api")
	if web.Key() == api.Key() || web.Key() == "" || api.Key() == "" {
		t.Errorf("keys: %q %q", web.Key(), api.Key())
	}
	if k := policy.NewSet().Outbound(nil, "api").Key(); k != "" {
		t.Errorf("empty set key %q", k)
	}
	// Non-policies are ignored; Len counts by type.
	m := &resource.Resource{Meta: &meshv1.Meta{Type: "Mesh", Name: "m"}, Spec: &meshv1.Mesh{}}
	if n := policy.NewSet([]*resource.Resource{a, m}).Len(); n != 1 {
		t.Errorf("Len = %d", n)
	}
	if set.Len(resource.TimeoutType) != 0 || set.Len(resource.RetryType) != 2 {
		t.Error("Len by type")
	}
}

// TestIndexMatchesScan: Best and Ranked, which look only at the policies
// indexed under the destination's service and the unindexed ones, agree
// with a scan of every policy on random policy sets.
func TestIndexMatchesScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(opts ...map[string]string) map[string]string { return opts[rng.IntN(len(opts))] }
	sel := func() map[string]string {
		return pick(tags(svc, "a"), tags(svc, "b"), tags(svc, "*"), tags(svc, "a", "version", "v1"), tags("version", "v1"), tags(svc, "c"))
	}
	for round := 0; round < 200; round++ {
		var ps []*resource.Resource
		for i := 0; i < 1+rng.IntN(8); i++ {
			r := &meshv1.Retry{}
			for j := 0; j < 1+rng.IntN(2); j++ {
				r.Sources = append(r.Sources, &meshv1.Selector{Match: sel()})
				r.Destinations = append(r.Destinations, &meshv1.Selector{Match: sel()})
			}
			ps = append(ps, &resource.Resource{Meta: &meshv1.Meta{Type: "Retry", Mesh: "m", Name: fmt.Sprintf("p%d-%d", rng.IntN(20), i)}, Spec: r})
		}
		set := policy.NewSet(ps)
		src := []map[string]string{sel()}
		for _, dest := range []string{"a", "b", "c", "d"} {
			d := policy.Destination(dest)
			var want *resource.Resource
			var wantRank resource.Rank
			for _, p := range set.Of(resource.RetryType) { // sorted by name: first of a tie stays
				if r := policy.Rank(p, src, d); r.Matched() && (want == nil || r.Compare(wantRank) > 0) {
					want, wantRank = p, r
				}
			}
			if got := set.Best(resource.RetryType, src, d); got != want {
				t.Fatalf("round %d, %v → %s: Best %s, scan %s", round, src, dest, nameOf(got), nameOf(want))
			}
			if r := set.Ranked(resource.RetryType, src, d); (len(r) == 0) != (want == nil) || (want != nil && r[0].Resource != want) {
				t.Fatalf("round %d, %v → %s: Ranked disagrees", round, src, dest)
			}
		}
	}
}
