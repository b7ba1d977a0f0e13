package resource

import (
	"sort"

	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// Wildcard matches any tag value.
const Wildcard = "*"

// Rank is how specifically a selector matched a set of tags: exact tag
// matches count more than wildcards, and more tags count more than fewer.
// The zero Rank means no match.
type Rank struct {
	Exact    int
	Wildcard int
	matched  bool
}

// Matched reports whether the rank is a match at all.
func (r Rank) Matched() bool { return r.matched }

// Compare orders ranks: -1 when r is less specific than o, 1 when more.
func (r Rank) Compare(o Rank) int {
	switch {
	case r.matched != o.matched:
		if r.matched {
			return 1
		}
		return -1
	case r.Exact != o.Exact:
		if r.Exact > o.Exact {
			return 1
		}
		return -1
	case r.Wildcard != o.Wildcard:
		if r.Wildcard > o.Wildcard {
			return 1
		}
		return -1
	}
	return 0
}

// Add sums two ranks (a source rank and a destination rank); both must match.
func (r Rank) Add(o Rank) Rank {
	if !r.matched || !o.matched {
		return Rank{}
	}
	return Rank{Exact: r.Exact + o.Exact, Wildcard: r.Wildcard + o.Wildcard, matched: true}
}

// MatchSelector ranks how a selector's tags match a tag set: every selector
// tag must be present with an equal value, or any value for "*".
func MatchSelector(match, tags map[string]string) Rank {
	r := Rank{matched: true}
	for k, want := range match {
		got, ok := tags[k]
		switch {
		case want == Wildcard && (ok || k == ServiceTag):
			// "weft.io/service: *" matches every dataplane, even one
			// queried with partial tags.
			r.Wildcard++
		case ok && got == want:
			r.Exact++
		default:
			return Rank{}
		}
	}
	return r
}

// BestSelector ranks the best-matching selector of a list.
func BestSelector(sels []*meshv1.Selector, tags map[string]string) Rank {
	var best Rank
	for _, s := range sels {
		if r := MatchSelector(s.GetMatch(), tags); r.Compare(best) > 0 {
			best = r
		}
	}
	return best
}

// Policy is a policy seen through its selectors.
type Policy interface {
	GetSources() []*meshv1.Selector
	GetDestinations() []*meshv1.Selector
}

// Candidate is one policy resource and its rank against a connection.
type Candidate struct {
	Resource *Resource
	Rank     Rank
}

// BestConnectionPolicy picks, among policies of one type, the one that
// applies to traffic from a source (tags of the calling dataplane) to a
// destination (tags of the called service): the most specific sum of the
// best source and best destination selector wins; ties go to the name that
// sorts first. It returns nil when none matches.
func BestConnectionPolicy(policies []*Resource, source, destination map[string]string) *Resource {
	ranked := RankConnectionPolicies(policies, source, destination)
	if len(ranked) == 0 {
		return nil
	}
	return ranked[0].Resource
}

// RankConnectionPolicies returns the matching policies, most specific first.
func RankConnectionPolicies(policies []*Resource, source, destination map[string]string) []Candidate {
	var out []Candidate
	for _, p := range policies {
		sp, ok := p.Spec.(Policy)
		if !ok {
			continue
		}
		r := BestSelector(sp.GetSources(), source).Add(BestSelector(sp.GetDestinations(), destination))
		if r.Matched() {
			out = append(out, Candidate{Resource: p, Rank: r})
		}
	}
	sortCandidates(out)
	return out
}

func sortCandidates(c []Candidate) {
	sort.SliceStable(c, func(i, j int) bool {
		if cmp := c[i].Rank.Compare(c[j].Rank); cmp != 0 {
			return cmp > 0
		}
		return c[i].Resource.Meta.GetName() < c[j].Resource.Meta.GetName()
	})
}
