package resource_test

import (
	"strings"
	"testing"

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

// TestMatchSelectorRank pins how one selector ranks a tag set.
func TestMatchSelectorRank(t *testing.T) {
	for _, tc := range []struct {
		name            string
		match, tags     map[string]string
		matched         bool
		exact, wildcard int
	}{
		{"exact service", tags(svc, "web"), tags(svc, "web"), true, 1, 0},
		{"other service", tags(svc, "web"), tags(svc, "api"), false, 0, 0},
		{"service wildcard", tags(svc, "*"), tags(svc, "web"), true, 0, 1},
		{"service wildcard without the tag", tags(svc, "*"), tags(), true, 0, 1},
		{"other wildcard needs the tag", tags("version", "*"), tags(svc, "web"), false, 0, 0},
		{"other wildcard with the tag", tags("version", "*"), tags("version", "v1"), true, 0, 1},
		{"two exact", tags(svc, "web", "version", "v2"), tags(svc, "web", "version", "v2", "zone", "z"), true, 2, 0},
		{"extra selector tag", tags(svc, "web", "version", "v2"), tags(svc, "web"), false, 0, 0},
		{"one exact one wildcard", tags(svc, "web", "version", "*"), tags(svc, "web", "version", "v1"), true, 1, 1},
		{"value case matters", tags(svc, "Web"), tags(svc, "web"), false, 0, 0},
		{"empty selector matches all", tags(), tags(svc, "web"), true, 0, 0},
	} {
		r := resource.MatchSelector(tc.match, tc.tags)
		if r.Matched() != tc.matched || r.Exact != tc.exact || r.Wildcard != tc.wildcard {
			t.Errorf("%s: got matched=%v exact=%d wildcard=%d, want %v %d %d", tc.name, r.Matched(), r.Exact, r.Wildcard, tc.matched, tc.exact, tc.wildcard)
		}
	}
}

// TestRankOrder pins the ordering: any match beats no match, then more
// exact tags, then more wildcards.
func TestRankOrder(t *testing.T) {
	none := resource.Rank{}
	rank := func(match map[string]string) resource.Rank {
		return resource.MatchSelector(match, tags(svc, "web", "version", "v1", "zone", "z"))
	}
	wild1 := rank(tags(svc, "*"))
	wild2 := rank(tags(svc, "*", "zone", "*"))
	exact1 := rank(tags(svc, "web"))
	exact1wild1 := rank(tags(svc, "web", "zone", "*"))
	exact2 := rank(tags(svc, "web", "version", "v1"))
	empty := rank(tags())
	ordered := []resource.Rank{none, empty, wild1, wild2, exact1, exact1wild1, exact2}
	for i := range ordered {
		for j := range ordered {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := ordered[i].Compare(ordered[j]); got != want {
				t.Errorf("Compare(%d, %d) = %d, want %d (%+v vs %+v)", i, j, got, want, ordered[i], ordered[j])
			}
		}
	}
	// Add: both sides must match; the sum adds the counts.
	if s := exact1.Add(wild1); !s.Matched() || s.Exact != 1 || s.Wildcard != 1 {
		t.Errorf("exact1+wild1 = %+v", s)
	}
	if exact2.Add(none).Matched() || none.Add(exact2).Matched() {
		t.Error("a sum with a non-match must not match")
	}
}

func TestBestSelector(t *testing.T) {
	sels := []*meshv1.Selector{{Match: tags(svc, "*")}, {Match: tags(svc, "web", "version", "v1")}, {Match: tags(svc, "web")}}
	if r := resource.BestSelector(sels, tags(svc, "web", "version", "v1")); r.Exact != 2 || r.Wildcard != 0 {
		t.Errorf("best of list: %+v", r)
	}
	if r := resource.BestSelector(sels, tags(svc, "api")); !r.Matched() || r.Wildcard != 1 {
		t.Errorf("only the wildcard matches: %+v", r)
	}
	if r := resource.BestSelector(nil, tags(svc, "web")); r.Matched() {
		t.Error("no selectors matched")
	}
}

func policy(name string, src, dst []map[string]string) *resource.Resource {
	p := &meshv1.TrafficPermission{}
	for _, m := range src {
		p.Sources = append(p.Sources, &meshv1.Selector{Match: m})
	}
	for _, m := range dst {
		p.Destinations = append(p.Destinations, &meshv1.Selector{Match: m})
	}
	return &resource.Resource{Meta: &meshv1.Meta{Type: "TrafficPermission", Mesh: "m", Name: name}, Spec: p}
}

// TestRankConnectionPolicies: the sum of the best source and the best
// destination selector orders the policies; ties go to the name that sorts
// first; a policy matches only when both sides do.
func TestRankConnectionPolicies(t *testing.T) {
	all := tags(svc, "*")
	ps := []*resource.Resource{
		policy("all", []map[string]string{all}, []map[string]string{all}),
		policy("src-exact", []map[string]string{tags(svc, "web")}, []map[string]string{all}),
		policy("dst-exact", []map[string]string{all}, []map[string]string{tags(svc, "api")}),
		policy("both-exact", []map[string]string{tags(svc, "web")}, []map[string]string{tags(svc, "api")}),
		// Several selectors: its best source (exact) counts.
		policy("multi", []map[string]string{all, tags(svc, "web")}, []map[string]string{tags(svc, "api")}),
		policy("version", []map[string]string{tags(svc, "web", "version", "v2")}, []map[string]string{tags(svc, "api")}),
		policy("no-dst-match", []map[string]string{tags(svc, "web")}, []map[string]string{tags(svc, "db")}),
	}
	names := func(cs []resource.Candidate) string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Resource.Meta.GetName())
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		src, dst map[string]string
		want     string
	}{
		{tags(svc, "web"), tags(svc, "api"), "both-exact,multi,dst-exact,src-exact,all"},
		{tags(svc, "web", "version", "v2"), tags(svc, "api"), "version,both-exact,multi,dst-exact,src-exact,all"},
		{tags(svc, "other"), tags(svc, "api"), "dst-exact,multi,all"}, // tie on rank: name order
		{tags(svc, "other"), tags(svc, "other"), "all"},
		{tags(svc, "web"), tags(svc, "db"), "no-dst-match,src-exact,all"},
	} {
		got := resource.RankConnectionPolicies(ps, tc.src, tc.dst)
		if names(got) != tc.want {
			t.Errorf("%v → %v: %s, want %s", tc.src, tc.dst, names(got), tc.want)
		}
		if best := resource.BestConnectionPolicy(ps, tc.src, tc.dst); best == nil || best.Meta.GetName() != strings.Split(tc.want, ",")[0] {
			t.Errorf("%v → %v: best %v", tc.src, tc.dst, best)
		}
	}
	if resource.BestConnectionPolicy(ps[1:2], tags(svc, "api"), tags(svc, "api")) != nil {
		t.Error("source does not match: no policy")
	}
	// A resource that is not a connection policy is skipped.
	other := &resource.Resource{Meta: &meshv1.Meta{Type: "Mesh", Name: "m"}, Spec: &meshv1.Mesh{}}
	if got := resource.RankConnectionPolicies([]*resource.Resource{other}, tags(svc, "a"), tags(svc, "b")); len(got) != 0 {
		t.Errorf("non-policy ranked: %v", names(got))
	}
}
