package generator

import (
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	fileaccesslogv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	grpcaccesslogv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/pkg/policy"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/xdsnames"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// envoyOutbound returns the outbound listener of a service as the policies
// of the caller shape it; without policies it is the plain one (shared is
// the mesh's shared VIP listener, or nil).
func envoyOutbound(s *Snapshot, sel *outboundSelector, shared *listenerv3.Listener, name, addr string, port uint32, svc string, bind bool) (*listenerv3.Listener, error) {
	sl, tr := sel.lookup(svc), sel.trace
	o := sl.o
	if !isHTTP(s.Protocol(svc)) {
		tr = nil // tracing is HTTP's
	}
	if o.Empty() && tr == nil {
		if shared != nil {
			return shared, nil
		}
		return envoyOutboundListener(s, name, addr, port, svc, bind), nil
	}
	list, err := sel.piece(pieceKey{kind: "listener", name: name, svc: svc, flag: bind}, func() ([]types.Resource, error) {
		lk := listenerKey{name: name, svc: svc, bind: bind, o: o}
		if tr != nil {
			lk.traceBackend = tr.backend
			if tr.namesService() {
				lk.traceService = sel.service
			}
		}
		r, err := s.memo(lk, func() types.Resource {
			l := envoyOutboundListener(s, name, addr, port, svc, bind)
			if isHTTP(s.Protocol(svc)) {
				hcm := envoyPolicyHCM(s, o, name, svc)
				if tr != nil {
					hcm.Tracing = tr.hcmTracing(sel.service)
				}
				l.FilterChains[0].Filters = []*listenerv3.Filter{hcmFilter(hcm)}
			} else {
				l.FilterChains[0].Filters = []*listenerv3.Filter{envoyPolicyTCPProxy(s, o, name, svc)}
			}
			return l
		})
		if err != nil {
			return nil, err
		}
		return []types.Resource{r}, nil
	})
	if err != nil {
		return nil, err
	}
	r := list[0]
	return r.(*listenerv3.Listener), nil
}

func envoyPolicyHCM(s *Snapshot, o policy.Outbound, name, svc string) *hcmv3.HttpConnectionManager {
	protocol := s.Protocol(svc)
	var routes []*routev3.Route
	for _, e := range routeEntries(o, svc, true) {
		a := &routev3.RouteAction{}
		clusterSpecifier(a, e.to)
		applyEnvoyRetry(a, o.Retry, protocol)
		applyEnvoyTimeout(a, o.Timeout, protocol)
		routes = append(routes, &routev3.Route{Match: routeMatch(e.match), Action: &routev3.Route_Route{Route: a}})
	}
	var filters []*hcmv3.HttpFilter
	if o.FaultInjection != nil {
		filters = append(filters, faultFilter(o.FaultInjection, false))
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name:             name,
			VirtualHosts:     []*routev3.VirtualHost{{Name: svc, Domains: []string{"*"}, Routes: routes}},
			ValidateClusters: wrapperspb.Bool(false),
		}},
		HttpFilters: append(filters, routerFilter()),
		AccessLog:   accessLogs(s, o.TrafficLog, true),
	}
	if t := o.Timeout; t != nil {
		hcm.StreamIdleTimeout = duration(t.Spec.(*meshv1.Timeout).GetConf().GetGrpc().GetStreamIdleTimeout())
	}
	return hcm
}

func envoyPolicyTCPProxy(s *Snapshot, o policy.Outbound, name, svc string) *listenerv3.Filter {
	tp := &tcpproxyv3.TcpProxy{StatPrefix: name, AccessLog: accessLogs(s, o.TrafficLog, false)}
	to := routeEntries(o, svc, false)[0].to
	if len(to) == 1 {
		tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_Cluster{Cluster: to[0].subset.clusterName()}
	} else {
		wc := &tcpproxyv3.TcpProxy_WeightedCluster{}
		for _, w := range to {
			wc.Clusters = append(wc.Clusters, &tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{Name: w.subset.clusterName(), Weight: w.weight})
		}
		tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: wc}
	}
	if o.Timeout != nil {
		tp.IdleTimeout = duration(o.Timeout.Spec.(*meshv1.Timeout).GetConf().GetTcp().GetIdleTimeout())
	}
	if o.Retry != nil {
		if n := o.Retry.Spec.(*meshv1.Retry).GetConf().GetTcp().GetMaxConnectAttempts(); n > 0 {
			tp.MaxConnectAttempts = wrapperspb.UInt32(n)
		}
	}
	return &listenerv3.Filter{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(tp)}}
}

// applyEnvoyRetry: gRPC services use the policy's grpc section when it has
// one, HTTP ones (and gRPC without it) the http section.
func applyEnvoyRetry(a *routev3.RouteAction, r *resource.Resource, protocol string) {
	if r == nil {
		return
	}
	conf := r.Spec.(*meshv1.Retry).GetConf()
	if g := conf.GetGrpc(); g != nil && protocol == "grpc" {
		rp := &routev3.RetryPolicy{RetryOn: grpcRetryOn(g.GetRetryOn()), PerTryTimeout: duration(g.GetPerTryTimeout()), RetryBackOff: backOff(g.GetBackOff())}
		if g.GetNumRetries() > 0 {
			rp.NumRetries = wrapperspb.UInt32(g.GetNumRetries())
		}
		a.RetryPolicy = rp
		return
	}
	h := conf.GetHttp()
	if h == nil {
		return
	}
	rp := &routev3.RetryPolicy{RetryOn: "5xx,reset,connect-failure,refused-stream", PerTryTimeout: duration(h.GetPerTryTimeout()), RetryBackOff: backOff(h.GetBackOff())}
	if len(h.GetRetriableStatusCodes()) > 0 {
		rp.RetryOn += ",retriable-status-codes"
		rp.RetriableStatusCodes = h.GetRetriableStatusCodes()
	}
	if h.GetNumRetries() > 0 {
		rp.NumRetries = wrapperspb.UInt32(h.GetNumRetries())
	}
	a.RetryPolicy = rp
}

func applyEnvoyTimeout(a *routev3.RouteAction, t *resource.Resource, protocol string) {
	if t == nil {
		return
	}
	conf := t.Spec.(*meshv1.Timeout).GetConf()
	a.Timeout = duration(conf.GetHttp().GetRequestTimeout())
	a.IdleTimeout = duration(conf.GetHttp().GetIdleTimeout())
	if d := duration(conf.GetGrpc().GetMaxStreamDuration()); d != nil && protocol == "grpc" {
		a.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: d}
		if a.Timeout == nil {
			// The route's default 15 s would cut streams first.
			a.Timeout = durationpb.New(0)
		}
	}
}

// accessLogs sends a TrafficLog to its mesh logging backend. Envoy writes
// file backends itself. A tcp backend has no Envoy logger of its own: Envoy
// logs over gRPC (http_grpc on an HTTP connection manager, tcp_grpc on a
// tcp_proxy) to weft-dp's access-log service through the bootstrap's
// xdsnames.AccessLogSinkCluster, and weft-dp formats each entry and streams
// it to the backend's address (both in the log_name).
func accessLogs(s *Snapshot, tl *resource.Resource, http bool) []*accesslogv3.AccessLog {
	if tl == nil {
		return nil
	}
	b := loggingBackend(s.MeshSpec, tl.Spec.(*meshv1.TrafficLog).GetConf().GetBackend())
	switch {
	case b == nil:
		return nil
	case b.GetType() == "tcp":
		// weft-dp refuses a log_name it cannot parse (Envoy would retry it
		// forever): an address that is not host:port logs nothing.
		if _, _, err := xdsnames.ParseAccessLogName(xdsnames.AccessLogName(b.GetAddress(), b.GetFormat())); err != nil {
			return nil
		}
		return []*accesslogv3.AccessLog{grpcAccessLog(b, http)}
	case b.GetType() != "file" || b.GetPath() == "":
		return nil
	}
	f := &fileaccesslogv3.FileAccessLog{Path: b.GetPath()}
	if b.GetFormat() != "" {
		f.AccessLogFormat = &fileaccesslogv3.FileAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
			Format: &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: b.GetFormat() + "\n"}}},
		}}
	}
	return []*accesslogv3.AccessLog{{Name: "envoy.access_loggers.file", ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(f)}}}
}

// grpcAccessLog is the gRPC access logger of a tcp backend.
func grpcAccessLog(b *meshv1.Logging_Backend, http bool) *accesslogv3.AccessLog {
	common := &grpcaccesslogv3.CommonGrpcAccessLogConfig{
		LogName: xdsnames.AccessLogName(b.GetAddress(), b.GetFormat()),
		GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
			EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: xdsnames.AccessLogSinkCluster}}},
		TransportApiVersion: corev3.ApiVersion_V3,
	}
	if !http {
		return &accesslogv3.AccessLog{Name: "envoy.access_loggers.tcp_grpc", ConfigType: &accesslogv3.AccessLog_TypedConfig{
			TypedConfig: mustAny(&grpcaccesslogv3.TcpGrpcAccessLogConfig{CommonConfig: common})}}
	}
	req, resp := formatHeaders(b.GetFormat())
	return &accesslogv3.AccessLog{Name: "envoy.access_loggers.http_grpc", ConfigType: &accesslogv3.AccessLog_TypedConfig{
		TypedConfig: mustAny(&grpcaccesslogv3.HttpGrpcAccessLogConfig{CommonConfig: common,
			AdditionalRequestHeadersToLog: req, AdditionalResponseHeadersToLog: resp})}}
}

// headerOperator is %REQ(A?B):N% or %RESP(A?B):N%.
var headerOperator = regexp.MustCompile(`%(REQ|RESP)\(([^)]*)\)(?::[0-9]+)?%`)

// loggedRequestHeaders are the request headers http_grpc logs in fields of
// its own; any other header a format names must be asked for.
var loggedRequestHeaders = map[string]bool{":method": true, ":path": true, ":authority": true, ":scheme": true,
	"user-agent": true, "referer": true, "x-forwarded-for": true, "x-request-id": true, "x-envoy-original-path": true}

// formatHeaders lists the request and response headers a format names
// that Envoy's http_grpc logger sends only when asked (sorted, once each).
func formatHeaders(format string) (req, resp []string) {
	seen := map[string]bool{}
	for _, m := range headerOperator.FindAllStringSubmatch(format, -1) {
		for _, h := range strings.Split(m[2], "?") {
			h = strings.ToLower(strings.TrimSpace(h))
			if h == "" || seen[m[1]+h] || (m[1] == "REQ" && loggedRequestHeaders[h]) {
				continue
			}
			seen[m[1]+h] = true
			if m[1] == "REQ" {
				req = append(req, h)
			} else {
				resp = append(resp, h)
			}
		}
	}
	sort.Strings(req)
	sort.Strings(resp)
	return req, resp
}

// loggingBackend finds a mesh logging backend by name; "" is the default.
func loggingBackend(m *meshv1.Mesh, name string) *meshv1.Logging_Backend {
	if name == "" {
		name = m.GetLogging().GetDefaultBackend()
	}
	for _, b := range m.GetLogging().GetBackends() {
		if b.GetName() == name {
			return b
		}
	}
	return nil
}

// addDestination adds the clusters and endpoints traffic to svc needs:
// one per subset its TrafficRoute names (the service itself without one).
// The cluster of a subset of service X is shaped by the policies the caller
// has for X, whichever route leads there, so a name always means one
// content; a cluster already added is not added again.
func addDestination(out Resources, s *Snapshot, svc string, http bool, sel *outboundSelector, added map[string]bool, proxyless bool) error {
	pieces, err := sel.piece(pieceKey{kind: "dest", svc: svc, flag: proxyless}, func() ([]types.Resource, error) {
		// When the route stays within svc, what is built depends only on
		// the selection for svc: shared by every caller selecting it.
		o := sel.get(svc)
		key := destKey{svc: svc, proxyless: proxyless, http: http, o: o}
		stays := routeStaysIn(o, svc)
		if stays {
			if v, ok := s.pol.dests.Load(key); ok {
				return v.([]types.Resource), nil
			}
		}
		var list []types.Resource
		for _, ss := range subsetsOf(routeEntries(sel.get(svc), svc, http)) {
			c, err := policyCluster(s, ss, sel.get(ss.service), proxyless)
			if err != nil {
				return nil, err
			}
			cla, err := s.subsetEndpoints(ss)
			if err != nil {
				return nil, err
			}
			list = append(list, c, cla)
		}
		if stays {
			v, _ := s.pol.dests.LoadOrStore(key, list)
			return v.([]types.Resource), nil
		}
		return list, nil
	})
	if err != nil {
		return err
	}
	for i := 0; i < len(pieces); i += 2 {
		name := cachev3.GetResourceName(pieces[i])
		if added[name] {
			continue
		}
		added[name] = true
		out.add(resourcev3.ClusterType, pieces[i])
		out.add(resourcev3.EndpointType, pieces[i+1])
	}
	return nil
}

// listenerKey names an outbound listener by what shapes it.
type listenerKey struct {
	name, svc    string
	bind         bool
	o            policy.Outbound
	traceBackend *meshv1.Tracing_Backend
	traceService string
}

// destKey names a destination's pieces by what shapes them.
type destKey struct {
	svc             string
	proxyless, http bool
	o               policy.Outbound
}

// routeStaysIn reports whether every destination of the selected route is
// a subset of svc (or there is no route).
func routeStaysIn(o policy.Outbound, svc string) bool {
	if o.Route == nil {
		return true
	}
	conf := o.Route.Spec.(*meshv1.TrafficRoute).GetConf()
	in := func(split []*meshv1.TrafficRoute_Split, dest map[string]string) bool {
		if len(dest) > 0 && dest[resource.ServiceTag] != svc {
			return false
		}
		for _, sp := range split {
			if sp.GetDestination()[resource.ServiceTag] != svc {
				return false
			}
		}
		return true
	}
	if !in(conf.GetSplit(), conf.GetDestination()) {
		return false
	}
	for _, h := range conf.GetHttp() {
		if !in(h.GetSplit(), h.GetDestination()) {
			return false
		}
	}
	return true
}

// policyCluster is the cluster of a subset shaped by the policies for its
// service: the shared one when nothing applies.
func policyCluster(s *Snapshot, ss subset, o policy.Outbound, proxyless bool) (*clusterv3.Cluster, error) {
	if len(ss.tags) == 0 && o.Empty() {
		if proxyless {
			g, err := s.grpc()
			if err != nil {
				return nil, err
			}
			return g.cluster(s, ss.service), nil
		}
		e, err := s.envoy()
		if err != nil {
			return nil, err
		}
		return e.cluster(s, ss.service), nil
	}
	name := ss.clusterName()
	r, err := s.memo("cluster|"+name+"|"+strconv.FormatBool(proxyless)+"|"+o.Key(), func() types.Resource {
		var c *clusterv3.Cluster
		if proxyless {
			c = newGRPCCluster(s, ss.service)
		} else {
			c = newOutboundCluster(s, ss.service)
		}
		c.Name = name
		c.EdsClusterConfig.ServiceName = name
		if c.TransportSocket != nil && len(ss.tags) > 0 {
			// The server name names the subset: another zone's ingress
			// routes by it (local endpoints do not read it).
			if sn, ok := s.subsetSNI(ss); ok {
				if proxyless {
					u := grpcUpstreamTLS(s.Mesh, ss.service)
					u.Sni = sn
					c.TransportSocket = tlsSocket(u)
				} else {
					u := envoyUpstreamTLS(s.Mesh, ss.service)
					u.Sni = sn
					c.TransportSocket = tlsSocket(u)
				}
			}
		}
		applyClusterPolicies(c, o, s.Protocol(ss.service), proxyless)
		return c
	})
	if err != nil {
		return nil, err
	}
	return r.(*clusterv3.Cluster), nil
}

var lbPolicies = map[string]clusterv3.Cluster_LbPolicy{
	"round_robin":   clusterv3.Cluster_ROUND_ROBIN,
	"least_request": clusterv3.Cluster_LEAST_REQUEST,
	"random":        clusterv3.Cluster_RANDOM,
	"ring_hash":     clusterv3.Cluster_RING_HASH,
	"maglev":        clusterv3.Cluster_MAGLEV,
}

// applyClusterPolicies: load balancer (TrafficRoute), connect timeout
// (Timeout), thresholds and outlier detection (CircuitBreaker), active
// health checks (HealthCheck). Proxyless gets what grpc-go implements:
// round robin or ring hash, max_requests, success-rate outlier detection.
func applyClusterPolicies(c *clusterv3.Cluster, o policy.Outbound, protocol string, proxyless bool) {
	if o.Route != nil {
		lb := lbPolicies[o.Route.Spec.(*meshv1.TrafficRoute).GetConf().GetLoadBalancer().GetType()]
		if !proxyless || lb == clusterv3.Cluster_RING_HASH {
			c.LbPolicy = lb
		}
	}
	if o.Timeout != nil && !proxyless {
		if d := duration(o.Timeout.Spec.(*meshv1.Timeout).GetConf().GetConnectTimeout()); d != nil {
			c.ConnectTimeout = d
		}
	}
	if o.CircuitBreaker != nil {
		conf := o.CircuitBreaker.Spec.(*meshv1.CircuitBreaker).GetConf()
		c.CircuitBreakers = circuitBreakers(conf.GetThresholds(), proxyless)
		c.OutlierDetection = outlierDetection(conf, proxyless)
	}
	if o.HealthCheck != nil && !proxyless {
		c.HealthChecks = []*corev3.HealthCheck{healthCheck(o.HealthCheck.Spec.(*meshv1.HealthCheck).GetConf(), protocol)}
	}
}

func optUInt32(v uint32) *wrapperspb.UInt32Value {
	if v == 0 {
		return nil
	}
	return wrapperspb.UInt32(v)
}

func circuitBreakers(t *meshv1.CircuitBreaker_Conf_Thresholds, proxyless bool) *clusterv3.CircuitBreakers {
	if t == nil {
		return nil
	}
	th := &clusterv3.CircuitBreakers_Thresholds{Priority: corev3.RoutingPriority_DEFAULT, MaxRequests: optUInt32(t.GetMaxRequests())}
	if !proxyless {
		th.MaxConnections = optUInt32(t.GetMaxConnections())
		th.MaxPendingRequests = optUInt32(t.GetMaxPendingRequests())
		th.MaxRetries = optUInt32(t.GetMaxRetries())
	} else if th.MaxRequests == nil {
		return nil
	}
	return &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{th}}
}

func outlierDetection(conf *meshv1.CircuitBreaker_Conf, proxyless bool) *clusterv3.OutlierDetection {
	d := conf.GetDetectors()
	if d == nil {
		return nil
	}
	od := &clusterv3.OutlierDetection{
		Interval:           duration(conf.GetInterval()),
		BaseEjectionTime:   duration(conf.GetBaseEjectionTime()),
		MaxEjectionPercent: optUInt32(conf.GetMaxEjectionPercent()),
	}
	enforce := func(on bool) *wrapperspb.UInt32Value {
		if on {
			return wrapperspb.UInt32(100)
		}
		return wrapperspb.UInt32(0)
	}
	sd := d.GetStandardDeviation()
	od.EnforcingSuccessRate = enforce(sd != nil)
	if sd != nil {
		od.SuccessRateRequestVolume = optUInt32(sd.GetRequestVolume())
		od.SuccessRateMinimumHosts = optUInt32(sd.GetMinimumHosts())
		// Kuma's factor is the deviation multiple (1.9); Envoy takes it × 1000.
		od.SuccessRateStdevFactor = optUInt32(uint32(math.Round(sd.GetFactor() * 1000)))
	}
	if proxyless {
		// grpc-go implements success rate (and failure percentage, which
		// the model does not have); the consecutive-error detectors are
		// Envoy's only.
		if sd == nil {
			return nil
		}
		return od
	}
	od.SplitExternalLocalOriginErrors = conf.GetSplitExternalAndLocalErrors()
	od.Consecutive_5Xx = optUInt32(d.GetTotalErrors().GetConsecutive())
	od.EnforcingConsecutive_5Xx = enforce(d.GetTotalErrors() != nil)
	od.ConsecutiveGatewayFailure = optUInt32(d.GetGatewayErrors().GetConsecutive())
	od.EnforcingConsecutiveGatewayFailure = enforce(d.GetGatewayErrors() != nil)
	if conf.GetSplitExternalAndLocalErrors() {
		od.ConsecutiveLocalOriginFailure = optUInt32(d.GetLocalErrors().GetConsecutive())
		od.EnforcingConsecutiveLocalOriginFailure = enforce(d.GetLocalErrors() != nil)
	}
	return od
}

func healthCheck(conf *meshv1.HealthCheck_Conf, protocol string) *corev3.HealthCheck {
	hc := &corev3.HealthCheck{
		Timeout:            durationOr(conf.GetTimeout(), 0),
		Interval:           durationOr(conf.GetInterval(), 0),
		UnhealthyThreshold: wrapperspb.UInt32(conf.GetUnhealthyThreshold()),
		HealthyThreshold:   wrapperspb.UInt32(conf.GetHealthyThreshold()),
	}
	if h := conf.GetHttp(); h != nil && isHTTP(protocol) {
		path := h.GetPath()
		if path == "" {
			path = "/"
		}
		hh := &corev3.HealthCheck_HttpHealthCheck{Path: path}
		if isHTTP2(protocol) {
			hh.CodecClientType = typev3.CodecClientType_HTTP2
		}
		for _, st := range h.GetExpectedStatuses() {
			hh.ExpectedStatuses = append(hh.ExpectedStatuses, &typev3.Int64Range{Start: int64(st), End: int64(st) + 1})
		}
		hc.HealthChecker = &corev3.HealthCheck_HttpHealthCheck_{HttpHealthCheck: hh}
		return hc
	}
	tc := &corev3.HealthCheck_TcpHealthCheck{}
	if t := conf.GetTcp(); t != nil {
		if t.GetSend() != "" {
			tc.Send = &corev3.HealthCheck_Payload{Payload: &corev3.HealthCheck_Payload_Binary{Binary: []byte(t.GetSend())}}
		}
		for _, r := range t.GetReceive() {
			tc.Receive = append(tc.Receive, &corev3.HealthCheck_Payload{Payload: &corev3.HealthCheck_Payload_Binary{Binary: []byte(r)}})
		}
	}
	hc.HealthChecker = &corev3.HealthCheck_TcpHealthCheck_{TcpHealthCheck: tc}
	return hc
}
