package generator

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// tracing is a TrafficTrace resolved against its mesh backend.
type tracing struct {
	policy  *resource.Resource
	backend *meshv1.Tracing_Backend
	host    string
	port    uint32
	path    string
}

func (t *tracing) clusterName() string { return "tracing:" + t.backend.GetName() }

// namesService reports whether the tracing config carries the caller's
// service (OpenTelemetry's service name; Zipkin takes Envoy's own).
func (t *tracing) namesService() bool { return t.backend.GetType() != "zipkin" }

// resolveTracing finds the backend of a TrafficTrace (its conf.backend,
// else the mesh default) and parses its URL; nil when it names no backend
// of the mesh or the URL has no host and port (nothing is traced then).
func resolveTracing(m *meshv1.Mesh, tt *resource.Resource) *tracing {
	if tt == nil {
		return nil
	}
	name := tt.Spec.(*meshv1.TrafficTrace).GetConf().GetBackend()
	if name == "" {
		name = m.GetTracing().GetDefaultBackend()
	}
	for _, b := range m.GetTracing().GetBackends() {
		if b.GetName() != name {
			continue
		}
		host, port, path, err := splitCollectorURL(b.GetUrl())
		if err != nil {
			return nil
		}
		return &tracing{policy: tt, backend: b, host: host, port: port, path: path}
	}
	return nil
}

// splitCollectorURL reads "http://host:port/path" or "host:port".
func splitCollectorURL(raw string) (host string, port uint32, path string, err error) {
	hostPort := raw
	if strings.Contains(raw, "://") {
		u, err := url.Parse(raw)
		if err != nil {
			return "", 0, "", err
		}
		hostPort, path = u.Host, u.Path
	}
	h, p, err := net.SplitHostPort(hostPort)
	if err != nil {
		return "", 0, "", err
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 || h == "" {
		return "", 0, "", fmt.Errorf("collector %q: no host and port", raw)
	}
	return h, uint32(n), path, nil
}

// hcmTracing is the HTTP connection manager tracing of a backend: Zipkin
// (HTTP JSON v2) or an OpenTelemetry collector (OTLP/gRPC), sampled at
// the backend's percentage (0 means 100).
func (t *tracing) hcmTracing(service string) *hcmv3.HttpConnectionManager_Tracing {
	sampling := t.backend.GetSampling()
	if sampling == 0 {
		sampling = 100
	}
	var provider *tracev3.Tracing_Http
	switch t.backend.GetType() {
	case "zipkin":
		path := t.path
		if path == "" {
			path = "/api/v2/spans"
		}
		provider = &tracev3.Tracing_Http{Name: "envoy.tracers.zipkin", ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: mustAny(&tracev3.ZipkinConfig{
			CollectorCluster:         t.clusterName(),
			CollectorEndpoint:        path,
			CollectorEndpointVersion: tracev3.ZipkinConfig_HTTP_JSON,
			CollectorHostname:        t.host,
			TraceId_128Bit:           true,
		})}}
	default: // otel
		provider = &tracev3.Tracing_Http{Name: "envoy.tracers.opentelemetry", ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: mustAny(&tracev3.OpenTelemetryConfig{
			GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: t.clusterName()}}},
			ServiceName: service,
		})}}
	}
	return &hcmv3.HttpConnectionManager_Tracing{RandomSampling: &typev3.Percent{Value: sampling}, Provider: provider}
}

// cluster is the collector's cluster: by DNS unless the host is an IP.
func (t *tracing) cluster(s *Snapshot) (types.Resource, error) {
	return s.memo("trace-cluster|"+t.backend.GetName(), func() types.Resource {
		c := &clusterv3.Cluster{
			Name:                 t.clusterName(),
			ConnectTimeout:       durationpb.New(5e9),
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
			LoadAssignment:       loadAssignment(t.clusterName(), []endpointKey{{addr: t.host, port: t.port}}, nil),
		}
		if net.ParseIP(t.host) != nil {
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
		}
		if t.backend.GetType() == "otel" {
			c.TypedExtensionProtocolOptions = http2Options()
		}
		return c
	})
}

// addTracingCluster adds a TrafficTrace's collector cluster to a proxy
// (the inbound and outbound HTTP connection managers get their tracing
// when they are built).
func addTracingCluster(out Resources, s *Snapshot, t *tracing) error {
	if t == nil {
		return nil
	}
	c, err := t.cluster(s)
	if err != nil {
		return err
	}
	out.add(resourcev3.ClusterType, c)
	return nil
}

// inboundTracing is the tracing of the caller's inbound HTTP connection
// managers, nil without a TrafficTrace.
func (o *outboundSelector) inboundTracing() *hcmv3.HttpConnectionManager_Tracing {
	if o.trace == nil {
		return nil
	}
	return o.trace.hcmTracing(o.service)
}

// withHCM returns a copy of a listener whose HTTP connection managers are
// changed by f (the listener itself when it has none).
func withHCM(l *listenerv3.Listener, f func(*hcmv3.HttpConnectionManager)) (*listenerv3.Listener, error) {
	var cp *listenerv3.Listener
	for ci, fc := range l.GetFilterChains() {
		for fi, flt := range fc.GetFilters() {
			if flt.GetName() != "envoy.filters.network.http_connection_manager" {
				continue
			}
			h := &hcmv3.HttpConnectionManager{}
			if err := flt.GetTypedConfig().UnmarshalTo(h); err != nil {
				return nil, fmt.Errorf("listener %s: %w", l.GetName(), err)
			}
			f(h)
			if cp == nil {
				cp = proto.Clone(l).(*listenerv3.Listener)
			}
			cp.FilterChains[ci].Filters[fi] = hcmFilter(h)
		}
	}
	if cp == nil {
		return l, nil
	}
	return cp, nil
}
