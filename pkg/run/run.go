// Package run is the one lifecycle every Weft service shares: a Group of
// components, each a Run(ctx) error, under one stop policy, and Main, the
// entry point of every cmd/*/main.go (flags, logging, tracing, signals).
//
// The stop policy: when any component returns (an error, or nil while the
// group is still running) or the context ends (a signal), the group stops:
// the reason is logged once, every component's context is cancelled, and
// they get Grace to return. Run returns the error that stopped the group,
// joined with the errors of components that failed while stopping and a
// note naming the components that did not stop in time.
package run

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
)

// Grace is how long components have to return once a group stops. It is
// the same in every service.
const Grace = 5 * time.Second

// Drain is how long the server adapters (GRPC, HTTP) wait for in-flight
// calls before closing connections, so they return within Grace.
const Drain = Grace - time.Second

// ErrExited is the cause when a component returns nil while the group
// still runs: a component of a server is not meant to end on its own.
var ErrExited = errors.New("exited while the service was running")

// Component is one long-running part of a service.
type Component struct {
	Name string
	Run  func(ctx context.Context) error
}

// Group runs components under the stop policy. The zero value is not
// usable; use New.
type Group struct {
	log   *slog.Logger
	grace time.Duration
	comps []Component
}

// Option configures a Group.
type Option func(*Group)

// WithGrace overrides Grace (tests only: every service uses Grace).
func WithGrace(d time.Duration) Option { return func(g *Group) { g.grace = d } }

// New returns an empty group logging to log (nil: discard).
func New(log *slog.Logger, opts ...Option) *Group {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Group{log: log, grace: Grace}
	for _, o := range opts {
		o(g)
	}
	return g
}

// Add adds a component; components added after Run starts are ignored.
func (g *Group) Add(name string, fn func(ctx context.Context) error) {
	g.comps = append(g.comps, Component{Name: name, Run: fn})
}

type result struct {
	name string
	err  error
}

// Run starts every component and blocks until the group has stopped (see
// the package comment). It returns nil only when ctx ended and every
// component returned nil or a context error within the grace period.
func (g *Group) Run(ctx context.Context) error {
	if len(g.comps) == 0 {
		<-ctx.Done()
		return nil
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	results := make(chan result, len(g.comps))
	for _, c := range g.comps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- result{c.Name, safeRun(cctx, c)}
		}()
	}
	running := len(g.comps)
	done := map[string]bool{}
	var errs []error
	stopping := func(r result) {
		running--
		done[r.name] = true
		if r.err != nil && !isCancel(r.err) {
			g.log.Error("component failed while stopping", "component", r.name, "error", r.err)
			errs = append(errs, fmt.Errorf("%s: %w", r.name, r.err))
		}
	}
	select {
	case <-ctx.Done():
		g.log.Info("stopping", "reason", context.Cause(ctx))
	case r := <-results:
		if ctx.Err() != nil { // the component saw the end of ctx first
			g.log.Info("stopping", "reason", context.Cause(ctx))
			stopping(r)
			break
		}
		running--
		done[r.name] = true
		if r.err == nil {
			r.err = ErrExited
		}
		errs = append(errs, fmt.Errorf("%s: %w", r.name, r.err))
		if isCancel(r.err) {
			g.log.Info("stopping: a component ended", "component", r.name, "error", r.err)
		} else {
			g.log.Error("stopping: a component failed", "component", r.name, "error", r.err)
		}
	}
	cancel()
	deadline := time.NewTimer(g.grace)
	defer deadline.Stop()
	for running > 0 {
		select {
		case r := <-results:
			stopping(r)
		case <-deadline.C:
			var late []string
			for _, c := range g.comps {
				if !done[c.Name] {
					late = append(late, c.Name)
				}
			}
			g.log.Error("components did not stop in time; leaving them behind (each must return when its context ends)",
				"components", late, "grace", g.grace)
			return errors.Join(append(errs, fmt.Errorf("did not stop within %s: %s", g.grace, strings.Join(late, ", ")))...)
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

func safeRun(ctx context.Context, c Component) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return c.Run(ctx)
}

func isCancel(err error) bool {
	return errors.Is(err, context.Canceled)
}

// GRPC serves srv on ln until ctx ends, then stops it gracefully, closing
// the connections still open after Drain (long-lived streams).
func GRPC(srv *grpc.Server, ln net.Listener) func(context.Context) error {
	return func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(ln) }()
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
		}
		stopped := make(chan struct{})
		go func() { srv.GracefulStop(); close(stopped) }()
		t := time.NewTimer(Drain)
		defer t.Stop()
		select {
		case <-stopped:
		case <-t.C:
			srv.Stop()
			<-stopped
		}
		<-errc
		return nil
	}
}

// HTTP serves srv on ln until ctx ends, then shuts it down, waiting at
// most Drain for requests in flight.
func HTTP(srv *http.Server, ln net.Listener) func(context.Context) error {
	return func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(ln) }()
		select {
		case err := <-errc:
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return err
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), Drain)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
		<-errc
		return nil
	}
}

// Func adapts a function without an error result.
func Func(fn func(ctx context.Context)) func(context.Context) error {
	return func(ctx context.Context) error { fn(ctx); return nil }
}
