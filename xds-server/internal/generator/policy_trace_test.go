package generator

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// TestTracingBackends: an OpenTelemetry collector by name gets a DNS
// cluster speaking HTTP/2 and the opentelemetry tracer; a TrafficTrace
// naming no backend of the mesh, or a backend without host and port,
// traces nothing.
func TestTracingBackends(t *testing.T) {
	mesh := &meshv1.Mesh{Tracing: &meshv1.Tracing{DefaultBackend: "otel", Backends: []*meshv1.Tracing_Backend{
		{Name: "otel", Type: "otel", Url: "otel-collector.observability:4317"},
		{Name: "broken", Type: "zipkin", Url: "http://no-port/api"},
	}}}
	tt := func(backend string) *resource.Resource {
		return &resource.Resource{Meta: &meshv1.Meta{Type: "TrafficTrace", Mesh: "m", Name: "t"},
			Spec: &meshv1.TrafficTrace{Conf: &meshv1.TrafficTrace_Conf{Backend: backend}}}
	}
	tr := resolveTracing(mesh, tt(""))
	if tr == nil || tr.host != "otel-collector.observability" || tr.port != 4317 {
		t.Fatalf("default backend: %+v", tr)
	}
	s := NewSnapshot("m", mesh, nil, nil, nil)
	res, err := tr.cluster(s)
	if err != nil {
		t.Fatal(err)
	}
	c := res.(*clusterv3.Cluster)
	if c.GetType() != clusterv3.Cluster_STRICT_DNS || c.GetTypedExtensionProtocolOptions() == nil {
		t.Errorf("otel cluster: %v", c)
	}
	h := tr.hcmTracing("web")
	if err := h.ValidateAll(); err != nil || h.GetProvider().GetName() != "envoy.tracers.opentelemetry" || h.GetRandomSampling().GetValue() != 100 {
		t.Errorf("otel tracing: %v %v", h, err)
	}
	for _, b := range []string{"broken", "missing"} {
		if tr := resolveTracing(mesh, tt(b)); tr != nil {
			t.Errorf("backend %q resolved: %+v", b, tr)
		}
	}
}
