// Package telemetry sets up what every service shares for being operated:
// structured logs, OpenTelemetry traces, Prometheus metrics and the admin
// HTTP server with /healthz, /readyz and /metrics.
package telemetry

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
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
