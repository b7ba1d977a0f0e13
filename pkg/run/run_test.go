package run_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/weftmesh/weft/pkg/run"
	"github.com/weftmesh/weft/pkg/telemetry"
)

// runGroup runs g in the background and returns its result, failing the
// test when it does not return within a generous deadline.
func runGroup(t *testing.T, ctx context.Context, g *run.Group) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("the group did not return within 30s")
		return nil
	}
}

// waitForCtx is a well-behaved component: it returns when its context ends.
func waitForCtx(stopped *atomic.Int32) func(context.Context) error {
	return func(ctx context.Context) error {
		<-ctx.Done()
		stopped.Add(1)
		return ctx.Err()
	}
}

func TestAComponentErrorStopsEveryComponentAndIsReturned(t *testing.T) {
	var logs bytes.Buffer
	g := run.New(slog.New(slog.NewTextHandler(&logs, nil)))
	var stopped atomic.Int32
	boom := errors.New("boom")
	g.Add("ok-1", waitForCtx(&stopped))
	g.Add("failing", func(context.Context) error { return boom })
	g.Add("ok-2", waitForCtx(&stopped))
	err := runGroup(t, context.Background(), g)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "failing: boom") {
		t.Fatalf("Run = %v, want the failing component's error named", err)
	}
	if stopped.Load() != 2 {
		t.Fatalf("%d of 2 other components stopped", stopped.Load())
	}
	if !strings.Contains(logs.String(), "component=failing") || !strings.Contains(logs.String(), "stopping") {
		t.Fatalf("the reason is not logged: %s", logs.String())
	}
}

func TestAComponentReturningNilStopsTheGroupWithAnError(t *testing.T) {
	g := run.New(nil)
	var stopped atomic.Int32
	g.Add("server", waitForCtx(&stopped))
	g.Add("quitter", func(context.Context) error { return nil })
	err := runGroup(t, context.Background(), g)
	if !errors.Is(err, run.ErrExited) || !strings.Contains(err.Error(), "quitter") {
		t.Fatalf("Run = %v, want ErrExited naming quitter", err)
	}
	if stopped.Load() != 1 {
		t.Fatal("the other component was not stopped")
	}
}

func TestCancellingTheContextStopsCleanly(t *testing.T) {
	g := run.New(nil)
	var stopped atomic.Int32
	for _, n := range []string{"a", "b", "c"} {
		g.Add(n, waitForCtx(&stopped))
	}
	g.Add("returns-nil-on-stop", run.Func(func(ctx context.Context) { <-ctx.Done() }))
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(10*time.Millisecond, cancel)
	if err := runGroup(t, ctx, g); err != nil {
		t.Fatalf("Run = %v, want nil after a clean stop", err)
	}
	if stopped.Load() != 3 {
		t.Fatalf("%d of 3 stopped", stopped.Load())
	}
}

func TestErrorsWhileStoppingAreSurfaced(t *testing.T) {
	g := run.New(nil)
	flushErr := errors.New("flush failed")
	g.Add("flusher", func(ctx context.Context) error { <-ctx.Done(); return flushErr })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := runGroup(t, ctx, g)
	if !errors.Is(err, flushErr) || !strings.Contains(err.Error(), "flusher") {
		t.Fatalf("Run = %v, want the stop error", err)
	}
}

func TestAComponentIgnoringItsContextIsLeftAfterTheGracePeriod(t *testing.T) {
	const grace = 200 * time.Millisecond
	g := run.New(nil, run.WithGrace(grace))
	release := make(chan struct{})
	defer close(release)
	g.Add("stubborn", func(context.Context) error { <-release; return nil })
	var stopped atomic.Int32
	g.Add("polite", waitForCtx(&stopped))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	err := runGroup(t, ctx, g)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "did not stop within") || !strings.Contains(err.Error(), "stubborn") ||
		strings.Contains(err.Error(), "polite") {
		t.Fatalf("Run = %v, want the stubborn component named (only)", err)
	}
	if took < grace {
		t.Fatalf("returned after %s, before the grace period %s", took, grace)
	}
	if stopped.Load() != 1 {
		t.Fatal("the polite component did not stop")
	}
}

func TestAPanicIsAnError(t *testing.T) {
	g := run.New(nil)
	g.Add("panicky", func(context.Context) error { panic("oops") })
	err := runGroup(t, context.Background(), g)
	if err == nil || !strings.Contains(err.Error(), "panicky: panic: oops") {
		t.Fatalf("Run = %v", err)
	}
}

func TestGRPCAndHTTPAdaptersStopWithTheContext(t *testing.T) {
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := run.New(nil)
	g.Add("grpc", run.GRPC(grpc.NewServer(), gl))
	g.Add("http", run.HTTP(&http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: time.Second}, hl))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	// Both serve.
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + hl.Addr().String() + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("http never served: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("adapters did not stop")
	}
}

func TestAListenerClosedUnderTheServerStopsTheGroup(t *testing.T) {
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := run.New(nil)
	var stopped atomic.Int32
	g.Add("other", waitForCtx(&stopped))
	g.Add("http", run.HTTP(&http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: time.Second}, hl))
	hl.Close()
	err = runGroup(t, context.Background(), g)
	if err == nil || !strings.Contains(err.Error(), "http:") {
		t.Fatalf("Run = %v", err)
	}
}

type runnerFunc func(ctx context.Context) error

func (f runnerFunc) Run(ctx context.Context) error { return f(ctx) }

func program(start func(ctx context.Context, env run.Env) (run.Runner, error)) (run.Program, *string) {
	var lg telemetry.Logging
	name := new(string)
	return run.Program{Name: "test-svc", Logging: &lg, Flags: func(fs *flag.FlagSet) {
		lg.RegisterFlags(fs)
		fs.StringVar(name, "name", "", "a name")
	}, Start: start}, name
}

func TestMainExitCodes(t *testing.T) {
	never := func(context.Context, run.Env) (run.Runner, error) { t.Error("started"); return nil, nil }
	var out bytes.Buffer
	p, _ := program(never)
	if code := run.Main(context.Background(), []string{"--help"}, &out, p); code != 0 {
		t.Errorf("--help: %d", code)
	}
	if code := run.Main(context.Background(), []string{"--nope"}, &out, p); code != 2 {
		t.Errorf("bad flag: %d", code)
	}
	if code := run.Main(context.Background(), []string{"--log-level=loud"}, &out, p); code != 2 {
		t.Errorf("bad log level: %d", code)
	}
	p, _ = program(func(context.Context, run.Env) (run.Runner, error) { return nil, errors.New("cannot bind") })
	out.Reset()
	if code := run.Main(context.Background(), nil, &out, p); code != 1 || !strings.Contains(out.String(), "test-svc: cannot bind") {
		t.Errorf("start failure: %d %q", code, out.String())
	}
	p, _ = program(func(context.Context, run.Env) (run.Runner, error) {
		return runnerFunc(func(context.Context) error { return errors.New("lost etcd") }), nil
	})
	out.Reset()
	if code := run.Main(context.Background(), nil, &out, p); code != 1 || !strings.Contains(out.String(), "lost etcd") {
		t.Errorf("run failure: %d %q", code, out.String())
	}
}

func TestMainStopsOnSIGTERMAndHandsDownLoggerAndTracing(t *testing.T) {
	t.Setenv("WEFT_TEST_SVC_NAME", "from-env")
	var gotEnv run.Env
	var once sync.Once
	p, name := program(func(_ context.Context, env run.Env) (run.Runner, error) {
		gotEnv = env
		return runnerFunc(func(ctx context.Context) error {
			once.Do(func() { _ = syscall.Kill(syscall.Getpid(), syscall.SIGTERM) })
			<-ctx.Done()
			return nil
		}), nil
	})
	var out bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run.Main(context.Background(), nil, &out, p) }()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d after SIGTERM: %s", code, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Main did not stop on SIGTERM")
	}
	if *name != "from-env" {
		t.Errorf("environment override not applied: %q", *name)
	}
	if gotEnv.Log == nil || gotEnv.Tracing == nil || gotEnv.Tracing.Provider == nil {
		t.Errorf("env not set up: %+v", gotEnv)
	}
}
