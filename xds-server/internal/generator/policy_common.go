package generator

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/pkg/policy"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/sni"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// policyPieces are the resources shaped by policies other than
// TrafficPermission. Many proxies select the same policies, so each piece
// is built once per snapshot and selection (keyed by policy.Outbound.Key),
// validated once, and treated like the shared pieces (digest cached).
type policyPieces struct {
	// built: key → types.Resource; what it holds is shared too, with its
	// digest in lazy (a plain map: read on every generation, for every
	// resource, so cheaper than a sync.Map).
	built  sync.Map
	lazyMu sync.RWMutex
	lazy   map[types.Resource][32]byte
	// templates: ProxyTemplate resource → *parsedTemplate
	templates sync.Map
	// selectors: source signature → *outboundSelector
	selectors sync.Map
	// dests: destKey → a destination's clusters and endpoints, shared by
	// callers selecting the same policies for it
	dests sync.Map
	// grpcClients: the selections over every service → a proxyless
	// client's resources
	grpcClients sync.Map
	// endpointTags: service → its endpoints with their inbound tags, for
	// subsets (filled by buildEndpoints, read-only afterwards).
	endpointTags map[string][]taggedEndpoint
	// remoteTags: service → the tag sets other zones' ingresses offer it
	// with, and their instance counts, for subsets across zones (filled by
	// remoteEndpoints, read-only afterwards).
	remoteTags map[string][]remoteTagSet
}

// remoteTagSet is one availableServices entry of another zone's ingress:
// key is the ingress (zone, advertised address, port).
type remoteTagSet struct {
	key       endpointKey
	tags      map[string]string
	instances uint32
}

type taggedEndpoint struct {
	key  endpointKey
	tags map[string]string
}

func (s *Snapshot) noteEndpointTags(svc string, e endpointKey, tags map[string]string) {
	if s.pol.endpointTags == nil {
		s.pol.endpointTags = map[string][]taggedEndpoint{}
	}
	s.pol.endpointTags[svc] = append(s.pol.endpointTags[svc], taggedEndpoint{key: e, tags: tags})
}

// isShared reports whether a resource was built once for the snapshot
// (validated when built, digest cached).
func (s *Snapshot) isShared(res types.Resource) bool {
	if s.sharedPiece(res) {
		return true
	}
	_, ok := s.lazyDigest(res)
	return ok
}

func (s *Snapshot) lazyDigest(res types.Resource) ([32]byte, bool) {
	s.pol.lazyMu.RLock()
	d, ok := s.pol.lazy[res]
	s.pol.lazyMu.RUnlock()
	return d, ok
}

// memo returns the piece built under key (a string or a comparable
// struct), building and validating it on first use. Concurrent first uses may both build; one result wins.
func (s *Snapshot) memo(key any, build func() types.Resource) (types.Resource, error) {
	if r, ok := s.pol.built.Load(key); ok {
		return r.(types.Resource), nil
	}
	r := build()
	if v, ok := r.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return nil, fmt.Errorf("%s %q: %w", typeURLOf(r)[strings.LastIndexByte(typeURLOf(r), '.')+1:], cachev3.GetResourceName(r), err)
		}
	}
	actual, loaded := s.pol.built.LoadOrStore(key, r)
	if !loaded {
		d := digestOf(actual.(types.Resource))
		s.pol.lazyMu.Lock()
		if s.pol.lazy == nil {
			s.pol.lazy = map[types.Resource][32]byte{}
		}
		s.pol.lazy[actual.(types.Resource)] = d
		s.pol.lazyMu.Unlock()
	}
	return actual.(types.Resource), nil
}

// outboundSelector is what policies select for one caller: per
// destination service, its TrafficTrace and ProxyTemplate. Proxies with
// the same tag sets select the same, so one selector is shared by them for
// the snapshot's life (selections, keys and whole pieces cached in it).
type outboundSelector struct {
	set     *policy.Set
	sources []map[string]string
	// trace is the TrafficTrace (nil: none, or its backend is not in the
	// mesh); service names the caller in traces.
	trace    *tracing
	template *resource.Resource
	service  string
	protocol func(svc string) string // a destination's protocol

	mu       sync.Mutex
	selected map[string]selected           // destination service → selection
	pieces   map[pieceKey][]types.Resource // cached pieces (see piece)
}

// pieceKey names a cached piece of one caller's configuration (struct
// keys: no string is built per proxy to look one up).
type pieceKey struct {
	kind, name, svc string
	flag            bool
}

type selected struct {
	o   policy.Outbound
	key string // o.Key()
}

// sourceSignature names a caller's tag sets canonically.
func sourceSignature(sets []map[string]string) string {
	parts := make([]string, len(sets))
	for i, tags := range sets {
		kv := make([]string, 0, len(tags))
		for _, k := range sortedKeys(tags) {
			kv = append(kv, k+"="+tags[k])
		}
		parts[i] = strings.Join(kv, ",")
	}
	sort.Strings(parts)
	return strings.Join(parts, ";")
}

func newOutboundSelector(s *Snapshot, p *Proxy) *outboundSelector {
	sources := policy.SourceTags(p.Dataplane)
	sig := sourceSignature(sources)
	if v, ok := s.pol.selectors.Load(sig); ok {
		return v.(*outboundSelector)
	}
	o := &outboundSelector{set: s.Policies, sources: sources, protocol: s.Protocol, selected: map[string]selected{}, pieces: map[pieceKey][]types.Resource{}}
	if svcs := resource.DataplaneServices(p.Dataplane); len(svcs) > 0 {
		o.service = svcs[0]
	}
	if s.Policies.Len(resource.TrafficTraceType) > 0 {
		o.trace = resolveTracing(s.MeshSpec, s.Policies.Best(resource.TrafficTraceType, sources, nil))
	}
	if s.Policies.Len(resource.ProxyTemplateType) > 0 {
		o.template = s.Policies.Best(resource.ProxyTemplateType, sources, nil)
	}
	v, _ := s.pol.selectors.LoadOrStore(sig, o)
	return v.(*outboundSelector)
}

// any reports whether the mesh has a policy that shapes outbounds.
func (o *outboundSelector) any() bool { return o.set.Len(policy.OutboundTypes...) > 0 }

func (o *outboundSelector) lookup(svc string) selected {
	if !o.any() {
		return selected{}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if v, ok := o.selected[svc]; ok {
		return v
	}
	out := o.set.Outbound(o.sources, svc, o.protocol(svc))
	v := selected{o: out, key: out.Key()}
	o.selected[svc] = v
	return v
}

func (o *outboundSelector) get(svc string) policy.Outbound { return o.lookup(svc).o }

// piece returns the resources cached under key for this caller, building
// them on first use.
func (o *outboundSelector) piece(key pieceKey, build func() ([]types.Resource, error)) ([]types.Resource, error) {
	o.mu.Lock()
	v, ok := o.pieces[key]
	o.mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := build()
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	o.pieces[key] = v
	o.mu.Unlock()
	return v, nil
}

// subset is a destination of a TrafficRoute: a service and, optionally,
// more tags its endpoints must carry.
type subset struct {
	service string
	tags    map[string]string // without the service tag
}

func subsetOf(dest map[string]string) subset {
	ss := subset{service: dest[resource.ServiceTag]}
	for k, v := range dest {
		if k != resource.ServiceTag {
			if ss.tags == nil {
				ss.tags = map[string]string{}
			}
			ss.tags[k] = v
		}
	}
	return ss
}

// clusterName is the service for the whole service, else
// "<service>{k=v,k2=v2}" (tags sorted).
func (ss subset) clusterName() string {
	if len(ss.tags) == 0 {
		return ss.service
	}
	keys := sortedKeys(ss.tags)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + ss.tags[k]
	}
	return ss.service + "{" + strings.Join(parts, ",") + "}"
}

func (ss subset) matches(tags map[string]string) bool {
	for k, v := range ss.tags {
		if tags[k] != v {
			return false
		}
	}
	return true
}

// subsetEndpoints is the load assignment of a subset: the service's healthy
// endpoints that carry the subset's tags and, behind them (EDS priority 1,
// or 0 without a local one), every other zone's ingress with a tag set of
// the service that contains the subset, weighted by the instances of those
// tag sets. Remote endpoints need the subset to have a server name
// (subsetSNI): a subset too long to be named stays local.
func (s *Snapshot) subsetEndpoints(ss subset) (*endpointv3.ClusterLoadAssignment, error) {
	if len(ss.tags) == 0 {
		if cla := s.endpoints[ss.service]; cla != nil {
			return cla, nil
		}
		return loadAssignment(ss.service, nil, nil), nil
	}
	r, err := s.memo("endpoints|"+ss.clusterName(), func() types.Resource {
		var keys []endpointKey
		for _, e := range s.pol.endpointTags[ss.service] {
			if ss.matches(e.tags) {
				keys = append(keys, e.key)
			}
		}
		var remote []endpointKey
		if _, ok := s.subsetSNI(ss); ok {
			remote = s.remoteSubset(ss)
		}
		return loadAssignment(ss.clusterName(), keys, remote)
	})
	if err != nil {
		return nil, err
	}
	return r.(*endpointv3.ClusterLoadAssignment), nil
}

// remoteSubset is one endpoint per other zone's ingress offering the
// subset, weighted by the instances of its tag sets that contain the
// subset, sorted by (zone, address, port).
func (s *Snapshot) remoteSubset(ss subset) []endpointKey {
	sums := map[endpointKey]uint32{}
	for _, ts := range s.pol.remoteTags[ss.service] {
		if ss.matches(ts.tags) {
			sums[ts.key] = min(sums[ts.key]+ts.instances, maxRemoteWeight)
		}
	}
	out := make([]endpointKey, 0, len(sums))
	for k, w := range sums {
		k.weight = w
		out = append(out, k)
	}
	sortEndpoints(out)
	return out
}

// subsetSNI is the upstream server name of a subset (pkg/sni: the
// service, the subset's tags, the mesh), so that another zone's ingress
// routes the connection to an instance of the subset; false when the
// subset cannot be named (over sni.MaxLen, or a tag sni refuses).
func (s *Snapshot) subsetSNI(ss subset) (string, bool) {
	name, err := sni.Format(s.Mesh, ss.service, ss.tags)
	return name, err == nil
}

// weightedSubset is one entry of a split.
type weightedSubset struct {
	subset subset
	weight uint32
}

// routeEntry is one route of a TrafficRoute: a match (nil: the default
// route) and where it goes.
type routeEntry struct {
	match *meshv1.TrafficRoute_Http_Match
	to    []weightedSubset
}

func splitOf(split []*meshv1.TrafficRoute_Split, dest map[string]string) []weightedSubset {
	if len(split) == 0 {
		if len(dest) == 0 {
			return nil
		}
		return []weightedSubset{{subset: subsetOf(dest), weight: 1}}
	}
	var out []weightedSubset
	for _, sp := range split {
		// Zero weights are left out: Envoy and grpc-go would keep them as
		// clusters that never get traffic.
		if sp.GetWeight() > 0 {
			out = append(out, weightedSubset{subset: subsetOf(sp.GetDestination()), weight: sp.GetWeight()})
		}
	}
	return out
}

// routeEntries are the routes of traffic to svc: the TrafficRoute's HTTP
// matches in order (http only), then its default; without a TrafficRoute,
// everything to the whole service.
func routeEntries(o policy.Outbound, svc string, http bool) []routeEntry {
	if o.Route == nil {
		return []routeEntry{{to: []weightedSubset{{subset: subset{service: svc}, weight: 1}}}}
	}
	conf := o.Route.Spec.(*meshv1.TrafficRoute).GetConf()
	var out []routeEntry
	if http {
		for _, h := range conf.GetHttp() {
			if to := splitOf(h.GetSplit(), h.GetDestination()); len(to) > 0 {
				out = append(out, routeEntry{match: h.GetMatch(), to: to})
			}
		}
	}
	def := splitOf(conf.GetSplit(), conf.GetDestination())
	if len(def) == 0 {
		def = []weightedSubset{{subset: subset{service: svc}, weight: 1}}
	}
	return append(out, routeEntry{to: def})
}

// subsetsOf lists the distinct subsets of some routes, in first-use order.
func subsetsOf(routes []routeEntry) []subset {
	seen := map[string]bool{}
	var out []subset
	for _, r := range routes {
		for _, w := range r.to {
			if n := w.subset.clusterName(); !seen[n] {
				seen[n] = true
				out = append(out, w.subset)
			}
		}
	}
	return out
}

func duration(s string) *durationpb.Duration {
	if s == "" {
		return nil
	}
	d, err := resource.ParseDuration(s)
	if err != nil || d <= 0 {
		// Validation refuses these before they are stored.
		return nil
	}
	return durationpb.New(d)
}

func durationOr(s string, def time.Duration) *durationpb.Duration {
	if d := duration(s); d != nil {
		return d
	}
	return durationpb.New(def)
}

func percent(p float64) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: uint32(p*10000 + 0.5), Denominator: typev3.FractionalPercent_MILLION}
}

func stringMatcher(m *meshv1.TrafficRoute_Http_Match_StringMatch) *matcherv3.StringMatcher {
	switch v := m.GetMatch().(type) {
	case *meshv1.TrafficRoute_Http_Match_StringMatch_Prefix:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: v.Prefix}}
	case *meshv1.TrafficRoute_Http_Match_StringMatch_Exact:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v.Exact}}
	case *meshv1.TrafficRoute_Http_Match_StringMatch_Regex:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: v.Regex}}}
	}
	return nil
}

// routeMatch turns a TrafficRoute HTTP match into an Envoy route match
// (what grpc-go reads too: path prefix/exact/regex and header matchers).
func routeMatch(m *meshv1.TrafficRoute_Http_Match) *routev3.RouteMatch {
	rm := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	if m == nil {
		return rm
	}
	switch v := m.GetPath().GetMatch().(type) {
	case *meshv1.TrafficRoute_Http_Match_StringMatch_Prefix:
		rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: v.Prefix}
	case *meshv1.TrafficRoute_Http_Match_StringMatch_Exact:
		rm.PathSpecifier = &routev3.RouteMatch_Path{Path: v.Exact}
	case *meshv1.TrafficRoute_Http_Match_StringMatch_Regex:
		rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: v.Regex}}
	}
	header := func(name string, sm *meshv1.TrafficRoute_Http_Match_StringMatch) {
		if m := stringMatcher(sm); m != nil {
			rm.Headers = append(rm.Headers, &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: m}})
		}
	}
	if m.GetMethod() != nil {
		header(":method", m.GetMethod())
	}
	for _, k := range sortedKeys(m.GetHeaders()) {
		header(strings.ToLower(k), m.GetHeaders()[k])
	}
	return rm
}

// clusterSpecifier points a route action at one subset or a weighted split.
func clusterSpecifier(a *routev3.RouteAction, to []weightedSubset) {
	if len(to) == 1 {
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: to[0].subset.clusterName()}
		return
	}
	wc := &routev3.WeightedCluster{}
	for _, w := range to {
		wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{Name: w.subset.clusterName(), Weight: wrapperspb.UInt32(w.weight)})
	}
	a.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
}

// grpcRetryOn turns the model's gRPC status names into Envoy's retry_on
// words (what grpc-go reads); none given means unavailable.
func grpcRetryOn(codes []string) string {
	if len(codes) == 0 {
		return "unavailable"
	}
	out := make([]string, len(codes))
	for i, c := range codes {
		out[i] = strings.ReplaceAll(c, "_", "-")
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func backOff(b *meshv1.Retry_Conf_BackOff) *routev3.RetryPolicy_RetryBackOff {
	if b == nil || duration(b.GetBaseInterval()) == nil {
		return nil
	}
	return &routev3.RetryPolicy_RetryBackOff{BaseInterval: duration(b.GetBaseInterval()), MaxInterval: duration(b.GetMaxInterval())}
}

// faultFilter is the HTTP fault filter of a FaultInjection; proxyless
// leaves out what grpc-go does not implement (response bandwidth).
func faultFilter(fi *resource.Resource, proxyless bool) *hcmv3.HttpFilter {
	conf := fi.Spec.(*meshv1.FaultInjection).GetConf()
	f := &faultv3.HTTPFault{}
	if d := conf.GetDelay(); d != nil {
		f.Delay = &faultcommonv3.FaultDelay{
			FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: duration(d.GetValue())},
			Percentage:         percent(d.GetPercentage()),
		}
	}
	if a := conf.GetAbort(); a != nil {
		f.Abort = &faultv3.FaultAbort{
			ErrorType:  &faultv3.FaultAbort_HttpStatus{HttpStatus: a.GetHttpStatus()},
			Percentage: percent(a.GetPercentage()),
		}
	}
	if b := conf.GetResponseBandwidth(); b != nil && !proxyless {
		f.ResponseRateLimit = &faultcommonv3.FaultRateLimit{
			LimitType:  &faultcommonv3.FaultRateLimit_FixedLimit_{FixedLimit: &faultcommonv3.FaultRateLimit_FixedLimit{LimitKbps: bandwidthKbps(b.GetLimit())}},
			Percentage: percent(b.GetPercentage()),
		}
	}
	return &hcmv3.HttpFilter{Name: "envoy.filters.http.fault", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(f)}}
}

// bandwidthKbps reads "<n>kbps|mbps|gbps" (validated) as KiB/s, at least 1.
func bandwidthKbps(s string) uint64 {
	var n uint64
	var unit string
	if _, err := fmt.Sscanf(s, "%d%s", &n, &unit); err != nil {
		return 1
	}
	switch unit {
	case "mbps":
		n *= 1000
	case "gbps":
		n *= 1000 * 1000
	}
	// kilobits → kibibytes
	n = n * 1000 / 8 / 1024
	if n == 0 {
		n = 1
	}
	return n
}
