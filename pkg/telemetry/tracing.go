package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Propagator is the trace-context propagator every Weft service uses
// (W3C traceparent and baggage). Pass it explicitly: the global one is
// never relied on.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// Tracing is one service's tracer provider. Services sharing a process
// (weftctl up) each have their own, so each span names its service.
type Tracing struct {
	Provider trace.TracerProvider
	shutdown func(context.Context) error
}

// NoTracing is a provider that creates no spans (it still carries an
// incoming trace context through).
func NoTracing() *Tracing {
	return &Tracing{Provider: noop.NewTracerProvider(), shutdown: func(context.Context) error { return nil }}
}

// Tracer returns the provider of t, or a no-op one when t is nil.
func (t *Tracing) Tracer() trace.TracerProvider {
	if t == nil || t.Provider == nil {
		return noop.NewTracerProvider()
	}
	return t.Provider
}

// Shutdown flushes the spans not yet exported and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}

// TracingEnabled reports whether OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) asks for traces to be exported.
func TracingEnabled() bool {
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// NewTracing builds service's tracer provider: when TracingEnabled, an
// OTLP/gRPC exporter (configured by the standard OTEL_EXPORTER_OTLP_*
// variables) behind a batcher; otherwise NoTracing. The resource names the
// service, and OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES from the
// environment win over it. It never touches the global provider. attrs
// are added to the resource (e.g. the control plane under weftctl up).
func NewTracing(ctx context.Context, service string, log *slog.Logger, attrs ...attribute.KeyValue) (*Tracing, error) {
	if !TracingEnabled() {
		return NoTracing(), nil
	}
	exp, err := otlptracegrpc.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	res, err := Resource(ctx, service, attrs...)
	if err != nil {
		return nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	if log != nil {
		log.Info("exporting traces over OTLP", "service", service)
	}
	return &Tracing{Provider: tp, shutdown: tp.Shutdown}, nil
}

// Resource is the OTel resource of a service: service.name (overridden by
// OTEL_SERVICE_NAME), the SDK's attributes, then OTEL_RESOURCE_ATTRIBUTES.
func Resource(ctx context.Context, service string, attrs ...attribute.KeyValue) (*sdkresource.Resource, error) {
	all := []sdkresource.Option{
		sdkresource.WithAttributes(append([]attribute.KeyValue{semconv.ServiceName(service)}, attrs...)...),
		sdkresource.WithTelemetrySDK(),
	}
	// Last, so the environment wins.
	all = append(all, sdkresource.WithFromEnv())
	res, err := sdkresource.New(ctx, all...)
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	return res, nil
}
