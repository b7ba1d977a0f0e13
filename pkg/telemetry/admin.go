package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// NewRegistry returns a Prometheus registry with the Go and process
// collectors. Each service gets its own, so services sharing a process
// (weftctl up) keep separate /metrics.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Check is a readiness check: nil means ready.
type Check func(ctx context.Context) error

// EtcdCheck is ready while etcd answers a read within a second.
func EtcdCheck(cli *clientv3.Client) Check {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if _, err := cli.Get(ctx, "/weft/health", clientv3.WithCountOnly()); err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
		return nil
	}
}

// Admin is the admin HTTP server: /healthz, /readyz, /metrics and any
// extra handlers a service adds.
type Admin struct {
	mux    *http.ServeMux
	reg    *prometheus.Registry
	log    *slog.Logger
	mu     sync.Mutex
	checks map[string]Check
	ln     net.Listener
	srv    *http.Server
}

// NewAdmin listens on addr (host:port, port 0 picks one).
func NewAdmin(addr string, reg *prometheus.Registry, log *slog.Logger) (*Admin, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener %s: %w", addr, err)
	}
	a := &Admin{mux: http.NewServeMux(), reg: reg, log: log, checks: map[string]Check{}, ln: ln}
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	a.mux.HandleFunc("GET /readyz", a.readyz)
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	a.srv = &http.Server{Handler: a.mux, ReadHeaderTimeout: 5 * time.Second}
	return a, nil
}

// Addr is the bound address.
func (a *Admin) Addr() string { return a.ln.Addr().String() }

// Handle adds a handler (e.g. a debug endpoint).
func (a *Admin) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, h) }

// AddCheck adds a named readiness check.
func (a *Admin) AddCheck(name string, c Check) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.checks[name] = c
}

func (a *Admin) readyz(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	checks := make(map[string]Check, len(a.checks))
	for k, v := range a.checks {
		checks[k] = v
	}
	a.mu.Unlock()
	failed := false
	var body []byte
	for name, c := range checks {
		if err := c(r.Context()); err != nil {
			failed = true
			body = fmt.Appendf(body, "%s: %v\n", name, err)
		}
	}
	if failed {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write(body)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// Serve serves until ctx ends, then shuts down gracefully.
func (a *Admin) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- a.srv.Serve(a.ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = a.srv.Shutdown(sctx)
		return nil
	}
}
