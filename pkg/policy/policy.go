// Package policy is the one place that decides which policy applies where:
// for traffic from a dataplane to a destination service (connection
// policies: TrafficPermission, TrafficRoute, Retry, Timeout, CircuitBreaker,
// HealthCheck, FaultInjection, TrafficLog) and for a dataplane as a whole
// (TrafficTrace, ProxyTemplate). Every generator (Envoy and proxyless) and
// every explaining API use it, so they cannot disagree.
//
// The rule is the model's: a connection policy matches when one of its
// source selectors matches the calling dataplane (any of its inbound or
// gateway tag sets) and one of its destination selectors matches the
// destination; among matches the most specific (sum of the best source and
// destination ranks, see resource.Rank) wins, ties go to the name that sorts
// first. A dataplane policy matches through its selectors alone.
package policy

import (
	"sort"
	"strings"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// OutboundTypes are the connection types that shape the caller's side
// (what Outbound selects).
var OutboundTypes = []*resource.Type{
	resource.TrafficRouteType,
	resource.RetryType,
	resource.TimeoutType,
	resource.CircuitBreakerType,
	resource.HealthCheckType,
	resource.FaultInjectionType,
	resource.TrafficLogType,
}

// ConnectionTypes are the policy types selected per (source, destination):
// TrafficPermission (applied at the destination's inbound) and
// OutboundTypes.
var ConnectionTypes = append([]*resource.Type{resource.TrafficPermissionType}, OutboundTypes...)

// DataplaneTypes are the policy types selected per dataplane.
var DataplaneTypes = []*resource.Type{resource.TrafficTraceType, resource.ProxyTemplateType}

// Types are every policy type, connection types first.
var Types = append(append([]*resource.Type(nil), ConnectionTypes...), DataplaneTypes...)

// IsPolicy reports whether t is one of Types.
func IsPolicy(t *resource.Type) bool {
	for _, p := range Types {
		if p == t {
			return true
		}
	}
	return false
}

// Set holds a mesh's policies by type, each list sorted by name. It is
// read-only once built and safe for concurrent use.
type Set struct {
	byType map[*resource.Type][]*resource.Resource
	// byDest indexes connection policies by the service their destination
	// selectors name: a policy whose destinations all name services
	// exactly is listed under each of them, any other under "" (it may
	// match any service). Each list is sorted by name.
	byDest map[*resource.Type]map[string][]*resource.Resource
}

// NewSet groups policies (of any types; non-policies are ignored) by type.
func NewSet(policies ...[]*resource.Resource) *Set {
	s := &Set{byType: map[*resource.Type][]*resource.Resource{}, byDest: map[*resource.Type]map[string][]*resource.Resource{}}
	for _, list := range policies {
		for _, r := range list {
			if t := r.Type(); t != nil && IsPolicy(t) {
				s.byType[t] = append(s.byType[t], r)
			}
		}
	}
	for t, list := range s.byType {
		sort.Slice(list, func(i, j int) bool { return list[i].Meta.GetName() < list[j].Meta.GetName() })
		idx := map[string][]*resource.Resource{}
		for _, r := range list {
			for _, svc := range destinationServices(r) {
				idx[svc] = append(idx[svc], r)
			}
		}
		s.byDest[t] = idx
	}
	return s
}

// destinationServices are the index keys of a policy: the services its
// destination selectors name exactly, or [""] when one may match any.
func destinationServices(r *resource.Resource) []string {
	cp, ok := r.Spec.(connectionPolicy)
	if !ok {
		return []string{""}
	}
	var out []string
	seen := map[string]bool{}
	for _, sel := range cp.GetDestinations() {
		svc, ok := sel.GetMatch()[resource.ServiceTag]
		if !ok || svc == resource.Wildcard {
			return []string{""}
		}
		if !seen[svc] {
			seen[svc] = true
			out = append(out, svc)
		}
	}
	if len(out) == 0 {
		return []string{""}
	}
	return out
}

// candidates are the policies of type t that may match dest: by the index
// when dest names a service, else all of them.
func (s *Set) candidates(t *resource.Type, dest map[string]string) (exact, any []*resource.Resource) {
	if s == nil {
		return nil, nil
	}
	svc, ok := dest[resource.ServiceTag]
	idx := s.byDest[t]
	if !ok || idx == nil || svc == resource.Wildcard {
		return nil, s.byType[t]
	}
	return idx[svc], idx[""]
}

// Of returns the policies of one type, sorted by name.
func (s *Set) Of(t *resource.Type) []*resource.Resource {
	if s == nil {
		return nil
	}
	return s.byType[t]
}

// Len counts the policies of the given types (all when none given).
func (s *Set) Len(types ...*resource.Type) int {
	if s == nil {
		return 0
	}
	if len(types) == 0 {
		types = Types
	}
	n := 0
	for _, t := range types {
		n += len(s.byType[t])
	}
	return n
}

// Destination is the tag set a destination service is matched with: its
// name and, when given, its protocol (a FaultInjection names the protocol
// of its destination, as in Kuma).
func Destination(service string, protocol ...string) map[string]string {
	d := map[string]string{resource.ServiceTag: service}
	if len(protocol) > 0 && protocol[0] != "" {
		d[resource.ProtocolTag] = protocol[0]
	}
	return d
}

// SourceTags are the tag sets a dataplane is matched with as a caller or
// by a dataplane policy: each inbound's tags, and the gateway's. A
// dataplane with neither (a pure client) is matched by its empty tag set,
// which only wildcard service selectors match.
func SourceTags(dp *meshv1.Dataplane) []map[string]string {
	var out []map[string]string
	for _, in := range dp.GetNetworking().GetInbound() {
		out = append(out, in.GetTags())
	}
	if gw := dp.GetNetworking().GetGateway(); gw != nil {
		out = append(out, gw.GetTags())
	}
	if len(out) == 0 {
		out = append(out, map[string]string{})
	}
	return out
}

// bestOf ranks the best selector of a list over several tag sets.
func bestOf(sels []*meshv1.Selector, tagSets []map[string]string) resource.Rank {
	var best resource.Rank
	for _, tags := range tagSets {
		if r := resource.BestSelector(sels, tags); r.Compare(best) > 0 {
			best = r
		}
	}
	return best
}

type connectionPolicy interface {
	GetSources() []*meshv1.Selector
	GetDestinations() []*meshv1.Selector
}

type dataplanePolicy interface {
	GetSelectors() []*meshv1.Selector
}

// Rank ranks one policy against a caller (its tag sets) and a destination;
// a dataplane policy is ranked against the caller's tag sets only (dest is
// ignored). The zero Rank means it does not apply.
func Rank(p *resource.Resource, sources []map[string]string, dest map[string]string) resource.Rank {
	switch sp := p.Spec.(type) {
	case connectionPolicy:
		return bestOf(sp.GetSources(), sources).Add(resource.BestSelector(sp.GetDestinations(), dest))
	case dataplanePolicy:
		return bestOf(sp.GetSelectors(), sources)
	}
	return resource.Rank{}
}

// Ranked returns the policies of type t that apply, most specific first
// (ties by name). For dataplane types dest is ignored.
func (s *Set) Ranked(t *resource.Type, sources []map[string]string, dest map[string]string) []resource.Candidate {
	var out []resource.Candidate
	exact, any := s.candidates(t, dest)
	for _, list := range [][]*resource.Resource{exact, any} {
		for _, p := range list {
			if r := Rank(p, sources, dest); r.Matched() {
				out = append(out, resource.Candidate{Resource: p, Rank: r})
			}
		}
	}
	sortCandidates(out)
	return out
}

// ByDestination returns the connection policies of type t whose
// destinations select an inbound's tags, whatever their sources, most
// specific destination first (ties by name): what an inbound enforces per
// source itself (TrafficPermission → RBAC).
func (s *Set) ByDestination(t *resource.Type, inboundTags map[string]string) []resource.Candidate {
	var out []resource.Candidate
	for _, p := range s.Of(t) {
		cp, ok := p.Spec.(connectionPolicy)
		if !ok {
			continue
		}
		if r := resource.BestSelector(cp.GetDestinations(), inboundTags); r.Matched() {
			out = append(out, resource.Candidate{Resource: p, Rank: r})
		}
	}
	sortCandidates(out)
	return out
}

// sortCandidates orders most specific first, ties by name.
func sortCandidates(c []resource.Candidate) {
	sort.SliceStable(c, func(i, j int) bool {
		if cmp := c[i].Rank.Compare(c[j].Rank); cmp != 0 {
			return cmp > 0
		}
		return c[i].Resource.Meta.GetName() < c[j].Resource.Meta.GetName()
	})
}

// Best returns the policy of type t that applies (see Ranked), or nil.
func (s *Set) Best(t *resource.Type, sources []map[string]string, dest map[string]string) *resource.Resource {
	var best *resource.Resource
	var bestRank resource.Rank
	exact, any := s.candidates(t, dest)
	for _, list := range [][]*resource.Resource{exact, any} {
		for _, p := range list {
			r := Rank(p, sources, dest)
			if !r.Matched() {
				continue
			}
			if c := r.Compare(bestRank); best == nil || c > 0 || (c == 0 && p.Meta.GetName() < best.Meta.GetName()) {
				best, bestRank = p, r
			}
		}
	}
	return best
}

// Outbound is what applies to a dataplane's traffic to one service: the
// winning policy of each connection type that shapes the caller's side, nil
// where none matches.
type Outbound struct {
	Route          *resource.Resource
	Retry          *resource.Resource
	Timeout        *resource.Resource
	CircuitBreaker *resource.Resource
	HealthCheck    *resource.Resource
	FaultInjection *resource.Resource
	TrafficLog     *resource.Resource
}

// Outbound selects the policies for traffic from a caller to a service
// (speaking protocol, when known: see Destination).
func (s *Set) Outbound(sources []map[string]string, service string, protocol ...string) Outbound {
	if s.Len(OutboundTypes...) == 0 {
		return Outbound{}
	}
	d := Destination(service, protocol...)
	return Outbound{
		Route:          s.Best(resource.TrafficRouteType, sources, d),
		Retry:          s.Best(resource.RetryType, sources, d),
		Timeout:        s.Best(resource.TimeoutType, sources, d),
		CircuitBreaker: s.Best(resource.CircuitBreakerType, sources, d),
		HealthCheck:    s.Best(resource.HealthCheckType, sources, d),
		FaultInjection: s.Best(resource.FaultInjectionType, sources, d),
		TrafficLog:     s.Best(resource.TrafficLogType, sources, d),
	}
}

// Empty reports whether no policy applies.
func (o Outbound) Empty() bool { return o == Outbound{} }

// Key names the selection: equal keys (within one mesh revision) select
// the same policies, so what is built from them can be shared.
func (o Outbound) Key() string {
	if o.Empty() {
		return ""
	}
	var b strings.Builder
	for _, r := range []*resource.Resource{o.Route, o.Retry, o.Timeout, o.CircuitBreaker, o.HealthCheck, o.FaultInjection, o.TrafficLog} {
		if r != nil {
			b.WriteString(r.Meta.GetName())
		}
		b.WriteByte('|')
	}
	return b.String()
}
