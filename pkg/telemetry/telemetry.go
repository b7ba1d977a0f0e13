// Package telemetry sets up what every service shares for being operated:
// structured logs, OpenTelemetry traces, Prometheus metrics and the admin
// HTTP server with /healthz, /readyz and /metrics.
package telemetry

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
)

// Logging configures a service's logger.
type Logging struct {
	Level  string
	Format string
}

// RegisterFlags adds --log-level and --log-format.
func (l *Logging) RegisterFlags(fs *flag.FlagSet) {
	if l.Level == "" {
		l.Level = "info"
	}
	if l.Format == "" {
		l.Format = "text"
	}
	fs.StringVar(&l.Level, "log-level", l.Level, "debug, info, warn or error")
	fs.StringVar(&l.Format, "log-format", l.Format, "text or json")
}

// Validate checks the settings.
func (l *Logging) Validate() error {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(l.Level)); err != nil {
		return fmt.Errorf("log-level: %q is not debug, info, warn or error", l.Level)
	}
	if l.Format != "text" && l.Format != "json" && l.Format != "" {
		return fmt.Errorf("log-format: %q is not text or json", l.Format)
	}
	return nil
}

// NewLogger builds a logger writing to w.
func (l *Logging) NewLogger(w io.Writer) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(l.Level))
	opts := &slog.HandlerOptions{Level: lv}
	if strings.EqualFold(l.Format, "json") {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// SetupTracing installs the W3C trace-context propagator and, when
// OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set, an OTLP/gRPC
// exporter as the global tracer provider. Without an endpoint spans are
// created (so trace ids propagate) but not exported. The returned function
// flushes and stops the exporter.
func SetupTracing(ctx context.Context, service string, log *slog.Logger) (func(context.Context) error, error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracegrpc.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	res, err := sdkresource.Merge(sdkresource.Default(), sdkresource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(service)))
	if err != nil && !errors.Is(err, sdkresource.ErrSchemaURLConflict) {
		return nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	log.Info("exporting traces over OTLP", "service", service)
	return tp.Shutdown, nil
}
