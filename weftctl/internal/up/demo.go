package up

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/weftmesh/weft/examples/greeter"
	"github.com/weftmesh/weft/pkg/cptls"
	"github.com/weftmesh/weft/pkg/run"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/token"
	"github.com/weftmesh/weft/weft-dp/agent"
)

// DemoAppCommand is the first argument of a demo workload: `weftctl up
// --demo` runs the greeter and the client as child processes of its own
// binary (`weftctl demo-app greeter|client FLAGS`), each with its own
// GRPC_XDS_BOOTSTRAP, since grpc-go reads one bootstrap per process.
const DemoAppCommand = "demo-app"

// DemoApp is the entry point of a demo child process; it returns the exit
// code. The code is the example's (examples/greeter), as a user runs it.
func DemoApp(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case len(args) > 0 && args[0] == "greeter":
		err = greeter.ServerMain(ctx, args[1:], stdout)
	case len(args) > 0 && args[0] == "client":
		err = greeter.ClientMain(ctx, args[1:], stdout)
	default:
		err = errors.New("usage: weftctl demo-app greeter|client FLAGS")
	}
	if err != nil {
		fmt.Fprintln(stderr, "demo-app:", err)
		return 1
	}
	return 0
}

// Default ports of the demo workloads (plus the plane's base).
const (
	portDemoGreeter = 7070
	portDemoClient  = 7071
)

// demoSummaryEvery is how often the demo client prints its call counts.
const demoSummaryEvery = 5 * time.Second

// demoApp is one demo workload: a Dataplane, weft-dp's certificate loop
// (in this process) and the application (a child process).
type demoApp struct {
	plane         *plane
	name, service string
	role          string // greeter or client
	port          int
}

// demoApps places the workloads: standalone runs both; with zones the
// client runs in zone-1 and the greeter in zone-2 (zone-1 with one zone),
// so the client's calls cross zones.
func demoApps(planes []*plane) ([]*demoApp, error) {
	clientPlane, greeterPlane := planes[0], planes[0]
	if len(planes) > 1 {
		clientPlane, greeterPlane = planes[1], planes[min(2, len(planes)-1)]
	}
	suffix := func(p *plane) string {
		if p.zone == "" {
			return ""
		}
		return "-" + p.zone
	}
	apps := []*demoApp{
		{plane: greeterPlane, name: "greeter-1" + suffix(greeterPlane), service: "greeter", role: "greeter", port: portDemoGreeter},
		{plane: clientPlane, name: "client-1" + suffix(clientPlane), service: "client", role: "client", port: portDemoClient},
	}
	for _, a := range apps {
		if a.plane.ephemeral {
			port, err := freePort(a.plane.host)
			if err != nil {
				return nil, err
			}
			a.port = port
		} else {
			a.port += a.plane.base
		}
	}
	return apps, nil
}

func freePort(host string) (int, error) {
	lis, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer lis.Close()
	return lis.Addr().(*net.TCPAddr).Port, nil
}

// demoRun is the running demo; wait returns once every workload stopped.
type demoRun struct{ wg sync.WaitGroup }

func (d *demoRun) wait() {
	if d != nil {
		d.wg.Wait()
	}
}

// demo seeds the demo mesh, permission and Dataplanes and starts the
// greeter and the client, which prints its call counts by serving zone.
func demo(ctx context.Context, planes []*plane, o Options) (*demoRun, error) {
	apps, err := demoApps(planes)
	if err != nil {
		return nil, err
	}
	greeterApp, clientApp := apps[0], apps[1]
	fmt.Fprintf(o.Out, "demo: mesh 'demo' (builtin mTLS CA), TrafficPermission client -> greeter, greeter %s in %s, client %s in %s calling xds:///greeter.mesh\n",
		greeterApp.name, greeterApp.plane.name, clientApp.name, clientApp.plane.name)
	if err := seedDemo(ctx, planes, apps); err != nil {
		return nil, err
	}
	for _, p := range planes {
		if p.ep.DNSAddress != "" {
			host, port, _ := net.SplitHostPort(p.ep.DNSAddress)
			fmt.Fprintf(o.Out, "demo: %s resolves .mesh names: dig @%s -p %s greeter.demo.mesh\n", p.name, host, port)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	d := &demoRun{}
	for _, a := range apps {
		boot, err := a.startAgent(ctx, o.DataDir, &d.wg)
		if err != nil {
			return d, fmt.Errorf("%s: %w", a.name, err)
		}
		var args []string
		if a.role == "greeter" {
			args = []string{"greeter", "--address", fmt.Sprintf("127.0.0.1:%d", a.port), "--zone", zoneName(a.plane), "--instance", a.name}
		} else {
			args = []string{"client", "--target", "xds:///greeter.mesh", "--name", a.name, "--count", "0",
				"--interval", "200ms", "--timeout", "2s", "--summary", demoSummaryEvery.String()}
		}
		cmd := exec.Command(self, append([]string{DemoAppCommand}, args...)...)
		cmd.Env = append(os.Environ(), "GRPC_XDS_BOOTSTRAP="+boot, "GRPC_EXPERIMENTAL_XDS_SNI=true")
		dieWithParent(cmd)
		var serving chan error
		if a.role == "greeter" {
			serving = make(chan error, 1)
		}
		if err := a.run(ctx, cmd, o.Out, a.plane.log, &d.wg, serving); err != nil {
			return d, fmt.Errorf("%s: %w", a.name, err)
		}
		if a.role == "greeter" {
			// Callers get the greeter only once it serves (its Dataplane
			// was registered not ready), and the client starts only once
			// its zone routes to it: no call fails while things start.
			if err := a.waitServing(ctx, serving); err != nil {
				return d, err
			}
			if err := markReady(ctx, a); err != nil {
				return d, err
			}
			if clientApp.plane != a.plane {
				if err := waitForRemoteService(ctx, clientApp.plane, "demo", a.service, 2*time.Minute); err != nil {
					return d, err
				}
			}
		}
	}
	fmt.Fprintf(o.Out, "demo: the client prints its call counts by serving zone every %s\n", demoSummaryEvery)
	return d, nil
}

func zoneName(p *plane) string {
	if p.zone == "" {
		return p.name
	}
	return p.zone
}

// startAgent does what `weft-dp run --proxy-type grpc` does for the
// workload, in this process: a dataplane token bound to its service, the
// bootstrap, and the certificate files kept fresh. It returns the
// bootstrap path once the first certificate is written.
func (a *demoApp) startAgent(ctx context.Context, dataDir string, wg *sync.WaitGroup) (string, error) {
	p := a.plane
	st := store.New(p.cli, store.WithKeyring(p.keys))
	c := token.Claims{Kind: token.KindDataplane, Mesh: "demo", Services: []string{a.service}}
	c.Subject = a.name
	tok, _, err := token.New(st).Issue(ctx, c, 24*time.Hour)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(dataDir, "demo", a.name)
	root, err := cptls.RootPEM(ctx, st)
	if err != nil {
		return "", err
	}
	caFile := filepath.Join(dir, "cp-ca.pem")
	if err := agent.WriteFileAtomic(caFile, root, 0o644); err != nil {
		return "", err
	}
	cfg := &agent.Config{CP: p.ep.XDSAddress, CPCAFile: caFile, Mesh: "demo", Name: a.name, Token: tok, ProxyType: agent.ProxyGRPC,
		Workdir: dir, CertRefresh: 2 * time.Second, Log: p.log.With("demo", a.name)}
	b, err := agent.GRPCBootstrap(cfg)
	if err != nil {
		return "", err
	}
	if err := agent.WriteFileAtomic(cfg.GRPCBootstrapPath(), b, 0o600); err != nil {
		return "", err
	}
	// A certificate from an earlier run may be stale: wait for this run's.
	_ = os.Remove(filepath.Join(cfg.CertDir(), "cert.pem"))
	written := make(chan struct{}, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := agent.RunCertificates(ctx, cfg, func() {
			select {
			case written <- struct{}{}:
			default:
			}
		})
		if err != nil {
			cfg.Log.Error("demo: the certificate loop stopped", "err", err)
		}
	}()
	select {
	case <-written:
		return cfg.GRPCBootstrapPath(), nil
	case <-ctx.Done():
		return "", ctx.Err()
	case <-time.After(2 * time.Minute):
		return "", errors.New("no certificate within 2 minutes (see the log of the xds-server and ca-service)")
	}
}

// waitServing waits until the greeter reports it serves (grpc-go's xDS
// server got its listener from the xds-server).
func (a *demoApp) waitServing(ctx context.Context, serving <-chan error) error {
	select {
	case err := <-serving:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("%s: not serving within 2 minutes (see its output and the xds-server's log)", a.name)
	}
}

// run starts the workload's process, prefixes its output lines with its
// name, and stops it (SIGTERM, then SIGKILL after a grace) when ctx ends.
// A greeter's serving channel gets nil when it reports it serves, an
// error when it exits before.
func (a *demoApp) run(ctx context.Context, cmd *exec.Cmd, out io.Writer, log *slog.Logger, wg *sync.WaitGroup, serving chan<- error) error {
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return err
	}
	prefix := fmt.Sprintf("demo: %s (%s): ", a.name, a.plane.name)
	wg.Add(2)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		servingLine := "greeter: " + a.name + " serving on "
		for sc.Scan() {
			fmt.Fprintln(out, prefix+sc.Text())
			if serving != nil && strings.HasPrefix(sc.Text(), servingLine) {
				serving <- nil
				serving = nil
			}
		}
		if serving != nil {
			serving <- fmt.Errorf("%s exited before serving (see its output above)", a.name)
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		pw.Close()
		exited <- err
	}()
	go func() {
		defer wg.Done()
		select {
		case err := <-exited:
			if ctx.Err() == nil {
				log.Error("demo: workload exited", "demo", a.name, "err", err)
			}
			return
		case <-ctx.Done():
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(run.Grace):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	return nil
}
