package telemetry_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"

	"github.com/weftmesh/weft/pkg/telemetry"
)

func counter() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weft_test_total", Help: "test"}, []string{"kind"})
}

func TestRegisterReturnsTheRegisteredCollectorOnADuplicate(t *testing.T) {
	reg := prometheus.NewRegistry()
	first, err := telemetry.Register(reg, counter())
	if err != nil {
		t.Fatal(err)
	}
	second, err := telemetry.Register(reg, counter())
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Fatal("a duplicate registration did not return the registered collector")
	}
	second.WithLabelValues("a").Inc()
	if got := testutil.ToFloat64(first.WithLabelValues("a")); got != 1 {
		t.Fatalf("the second user's increments went nowhere: %v", got)
	}
	if n, _ := testutil.GatherAndCount(reg, "weft_test_total"); n != 1 {
		t.Fatalf("%d series gathered", n)
	}
}

func TestRegisterSurfacesConflicts(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := telemetry.Register(reg, counter()); err != nil {
		t.Fatal(err)
	}
	other := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weft_test_total", Help: "other help"}, []string{"kind"})
	if _, err := telemetry.Register(reg, other); err == nil {
		t.Fatal("a conflicting registration was accepted")
	}
	// The same collector under another Go type.
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "weft_gauge", Help: "g"})
	if _, err := telemetry.Register(reg, g); err != nil {
		t.Fatal(err)
	}
	if _, err := telemetry.Register[prometheus.Collector](reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "weft_gauge", Help: "g"})); err != nil {
		t.Fatalf("an interface type parameter must accept the existing collector: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("MustRegister did not panic on a conflict")
		}
	}()
	telemetry.MustRegister(reg, other)
}

func TestRegisterWithoutRegistry(t *testing.T) {
	c := counter()
	if got, err := telemetry.Register(nil, c); err != nil || got != c {
		t.Fatal("a nil registry must register nothing and return the collector")
	}
}

func TestResourceNamesTheServiceAndTheEnvironmentWins(t *testing.T) {
	t.Setenv("OTEL_SERVICE_NAME", "")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "")
	res, err := telemetry.Resource(context.Background(), "api-server", attribute.String("weft.control_plane", "zone-1"))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := res.Set().Value(semconv.ServiceNameKey); v.AsString() != "api-server" {
		t.Fatalf("service.name = %q", v.AsString())
	}
	if v, _ := res.Set().Value("weft.control_plane"); v.AsString() != "zone-1" {
		t.Fatalf("weft.control_plane = %q", v.AsString())
	}
	t.Setenv("OTEL_SERVICE_NAME", "edge-api")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,team=mesh")
	res, err = telemetry.Resource(context.Background(), "api-server")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := res.Set().Value(semconv.ServiceNameKey); v.AsString() != "edge-api" {
		t.Fatalf("OTEL_SERVICE_NAME overwritten: service.name = %q", v.AsString())
	}
	if v, _ := res.Set().Value("team"); v.AsString() != "mesh" {
		t.Fatalf("OTEL_RESOURCE_ATTRIBUTES ignored: %s", res)
	}
}

func TestNoExporterWithoutAnEndpoint(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	tr, err := telemetry.NewTracing(context.Background(), "dns-server", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.ToLower(typeName(tr.Provider)), "noop") {
		t.Fatalf("provider %T without an endpoint", tr.Provider)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func typeName(v any) string { return fmtT(v) }

func fmtT(v any) string { return fmt.Sprintf("%T", v) }
