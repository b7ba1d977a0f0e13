package run

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"go.opentelemetry.io/otel"

	"github.com/weftmesh/weft/pkg/config"
	"github.com/weftmesh/weft/pkg/telemetry"
)

// Runner is a built service: Run serves until ctx ends.
type Runner interface {
	Run(ctx context.Context) error
}

// Env is what Main sets up once per process and hands to the service:
// the logger and the service's tracer provider. Services never build
// either themselves in New.
type Env struct {
	Log     *slog.Logger
	Tracing *telemetry.Tracing
}

// Program is a service command.
type Program struct {
	// Name is the service name: flag set, WEFT_<NAME>_* environment
	// overrides, logs and the trace resource's service.name.
	Name string
	// Flags binds the service's configuration to fs.
	Flags func(fs *flag.FlagSet)
	// Logging is the service's logging configuration, read once the flags
	// are parsed.
	Logging *telemetry.Logging
	// Validate, when set, checks the configuration once the flags are
	// parsed; an error exits with 2 like a bad flag.
	Validate func() error
	// Start builds the service (binding its listeners).
	Start func(ctx context.Context, env Env) (Runner, error)
}

// Main is the entry point of every service command: flags and environment
// overrides, logging, tracing, SIGINT/SIGTERM, then the service's Run
// until a signal or a component stops it; the tracer provider is flushed
// after every component has stopped. It returns the exit code: 0, 1 when
// the service failed, 2 for bad flags.
func Main(ctx context.Context, args []string, stderr io.Writer, p Program) int {
	fs := flag.NewFlagSet(p.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	p.Flags(fs)
	if err := config.Parse(fs, p.Name, args, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, p.Name+":", err)
		return 2
	}
	validate := p.Logging.Validate
	if p.Validate != nil {
		validate = p.Validate
	}
	if err := validate(); err != nil {
		fmt.Fprintln(stderr, p.Name+":", err)
		return 2
	}
	log := p.Logging.NewLogger(stderr)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Libraries that read the global propagator get the same one; the
	// global tracer provider is never set (each service has its own).
	otel.SetTextMapPropagator(telemetry.Propagator())
	tr, err := telemetry.NewTracing(ctx, p.Name, log)
	if err != nil {
		fmt.Fprintln(stderr, p.Name+":", err)
		return 1
	}
	defer Flush(log, tr)
	svc, err := p.Start(ctx, Env{Log: log, Tracing: tr})
	if err != nil {
		fmt.Fprintln(stderr, p.Name+":", err)
		return 1
	}
	if err := svc.Run(ctx); err != nil {
		log.Error(p.Name+" stopped", "error", err)
		fmt.Fprintln(stderr, p.Name+":", err)
		return 1
	}
	return 0
}

// Flush shuts tracer providers down (exporting what is buffered), waiting
// at most Grace; call it after the components have stopped.
func Flush(log *slog.Logger, trs ...*telemetry.Tracing) {
	ctx, cancel := context.WithTimeout(context.Background(), Grace)
	defer cancel()
	for _, tr := range trs {
		if err := tr.Shutdown(ctx); err != nil && log != nil {
			log.Warn("traces not flushed; check the OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT)", "error", err)
		}
	}
}
