// Command xds-fleet is the xds-server load generator: it registers N
// Dataplanes through the REST API (with a dataplane token each), then opens
// N ADS streams as those Dataplanes — one TLS gRPC connection and one SotW
// (or, with -delta, delta) stream each, authenticated by the token as
// weft-dp's proxies are, Envoy-like (wildcard CDS/LDS, EDS by name) or
// grpc-like (named LDS, then RDS, CDS, EDS by reference) — ACKs every
// response (or NACKs on request: -nack), and measures:
//
//   - connect: dial until the first response; configured: dial until every
//     subscribed type is ACKed (p50/p99/max, and the wall time for all N);
//   - xds-server RSS and CPU (from /proc/<pid>) and Go heap and goroutines
//     (its /metrics) before and after the fleet connects, and idle CPU;
//   - convergence: (a) one endpoint added to the service every proxy calls,
//     (b) one mesh-wide policy change (a Timeout for every source and
//     destination) — from just before the REST PUT (whose etcd commit it
//     waits for) until each proxy has ACKed a response holding the change.
//
// Scenarios (scenarios.go, churn.go): -mtls turns builtin mTLS on (a
// ca-service in this process; every proxy is configured only once it has
// ACKed the SDS secrets its clusters and listeners name); -meshes M spreads
// the proxies over M meshes and (a)/(b) change mesh-0 only, checking that
// the other meshes' proxies get no response; -churn D then re-registers
// -churn-rate of the Dataplanes per minute for D (new address, new token,
// a new proxy) and finally checks every proxy's last ACKed configuration
// against a fresh replica's.
//
// Protocol (delta.go, nack.go): -delta makes the proxies speak delta xDS
// (DeltaAggregatedResources) as Envoy does with api_type DELTA_GRPC —
// wildcard CDS/LDS, EDS/RDS/SDS subscribed and unsubscribed by name, each
// response applied to the per-resource versions the proxy holds and ACKed
// with its nonce; configured and converged mean what they mean over SotW.
// Envoy-like only: gRPC's xDS clients speak SotW, so -delta -kind grpc is
// refused. -nack F makes a fraction F of the proxies NACK the first
// response that carries (a)'s and (b)'s change, then ACK every later one;
// (a)/(b) are measured over the others, and the NACKs sent, the
// xds-server's weft_xds_nacks_total and whether each NACKing proxy ACKed
// the change within 10 s are reported.
//
// By default it starts its own control plane: an embedded etcd and an
// api-server in this process and the xds-server as a child process (this
// binary re-executed), so /proc measures the xds-server alone. -api-url,
// -token, -xds, -xds-admin and -xds-pid aim it at a running one instead.
//
// -scenario restart|kill|scaleout runs several replicas instead of (a)
// and (b): see replicas.go; with -delta too (not with -nack).
//
// CPU: -xds-cpuprofile FILE profiles the started xds-server's whole run;
// -xds-connect-cpuprofile FILE the connect storm only (just before the
// first dial until every proxy is configured: connectprof.go),
// -xds-change-cpuprofile FILE (a) and (b), -xds-idle-cpuprofile FILE the
// idle window; one of them per run.
//
// Memory: -xds-heapprofile FILE writes the xds-server's heap profile once
// the fleet is connected and idle (after a forced GC, before (a)), with
// FILE.goroutines.txt (goroutines by stack) and FILE.memclasses.txt (the
// runtime's memory classes: live heap, goroutine stacks, unused spans,
// metadata) beside it. -xds-env KEY=VALUE sets GOGC, GOMEMLIMIT or GODEBUG
// in the xds-server only.
//
//	go run ./bench/xds-fleet -n 1000 -services 500
//	go run ./bench/xds-fleet -n 1000 -services 500 -mtls
//	go run ./bench/xds-fleet -n 1000 -services 500 -meshes 10
//	go run ./bench/xds-fleet -n 1000 -services 500 -churn 2m
//	go run ./bench/xds-fleet -n 1000 -services 500 -delta
//	go run ./bench/xds-fleet -n 1000 -services 500 -nack 0.1
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"

	apiapp "github.com/weftmesh/weft/api-server/app"
	"github.com/weftmesh/weft/pkg/etcdembed"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/xdsnames"
	xdsapp "github.com/weftmesh/weft/xds-server/app"
)

// roleEnv re-executes this binary as the xds-server.
const roleEnv = "WEFT_XDS_FLEET_ROLE"

type options struct {
	n, services, conc int
	kind              string
	keepDir           bool
	mesh              string
	xdsArgs           []string
	apiURL, token     string
	xds, xdsAdmin     string
	xdsPID            int
	idle, timeout     time.Duration
	settle            time.Duration
	label             string
	cpuProfile        string
	heapProfile       string
	log               io.Writer
	// Scenarios of scenarios.go.
	mtls      bool
	meshes    int
	churn     time.Duration
	churnRate float64
	// -delta and -nack (delta.go, nack.go).
	delta bool
	nack  float64
	// Replica scenarios (replicas.go).
	scenario, signal            string
	replicas                    int
	maxConnAge, maxConnAgeGrace time.Duration
	balance                     float64
}

type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, " ") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	if os.Getenv(roleEnv) == "xds-server" {
		os.Exit(xdsServer())
	}
	var o options
	var xa stringsFlag
	flag.IntVar(&o.n, "n", 1000, "simulated proxies (Dataplanes)")
	flag.IntVar(&o.services, "services", 500, "services: Dataplane i is service svc-(i mod services); every proxy has an outbound to svc-0")
	flag.IntVar(&o.conc, "c", 64, "concurrent connects and REST writes")
	flag.StringVar(&o.kind, "kind", xdsnames.KindEnvoy, "envoy (wildcard CDS/LDS, EDS by name) or grpc (named LDS → RDS → CDS → EDS)")
	flag.StringVar(&o.mesh, "mesh", "default", "mesh")
	flag.Var(&xdsEnv, "xds-env", "extra environment variable KEY=VALUE for the started xds-server(s) only (repeatable), e.g. -xds-env=GOGC=50 or -xds-env=GODEBUG=adaptivestackstart=0")
	flag.Var(&xa, "xds-arg", "extra flag for the started xds-server (repeatable), e.g. -xds-arg=--grpc-shared-write-buffer=false")
	flag.StringVar(&o.apiURL, "api-url", "", "REST API of a running control plane (default: start one)")
	flag.StringVar(&o.token, "token", "", "admin token for -api-url")
	flag.StringVar(&o.xds, "xds", "", "xDS address of a running xds-server (with -api-url)")
	flag.StringVar(&o.xdsAdmin, "xds-admin", "", "admin address of that xds-server (/metrics, /control-plane-ca.pem)")
	flag.IntVar(&o.xdsPID, "xds-pid", 0, "pid of that xds-server (for /proc; 0: not measured)")
	flag.DurationVar(&o.idle, "idle", 10*time.Second, "idle CPU measurement window")
	flag.DurationVar(&o.settle, "settle", 5*time.Second, "wait this long after the fleet is configured before measuring idle CPU (insight writes of the connect storm)")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up on a phase after this")
	flag.StringVar(&o.label, "label", "", "label of this run in the result row")
	flag.BoolVar(&o.keepDir, "keep-dir", false, "keep the started control plane's directory (etcd data, xds-server logs) and print its path at the end")
	flag.StringVar(&o.cpuProfile, "xds-cpuprofile", "", "write the started xds-server's CPU profile (whole run) to this file")
	flag.StringVar(&o.heapProfile, "xds-heapprofile", "", "write the started xds-server's heap profile (fleet connected, idle) to this file")
	flag.BoolVar(&o.mtls, "mtls", false, "builtin mTLS on every mesh: a ca-service is started too, and every proxy subscribes to the SDS secrets its clusters and listeners name (configured includes them)")
	flag.IntVar(&o.meshes, "meshes", 1, "spread the proxies over this many meshes (mesh-0 … mesh-(M-1), each with -services services); (a) and (b) then change mesh-0 only and check that the other meshes' proxies got no push")
	flag.DurationVar(&o.churn, "churn", 0, "after (a) and (b), churn for this long: -churn-rate of the Dataplanes per minute are deleted and re-registered at a new address, their proxies reconnecting; then every proxy's last ACKed config is checked against a fresh replica's")
	flag.Float64Var(&o.churnRate, "churn-rate", 0.1, "fraction of the Dataplanes churned per minute with -churn")
	flag.BoolVar(&o.delta, "delta", false, "the proxies speak delta xDS (DeltaAggregatedResources) as Envoy does with api_type DELTA_GRPC: wildcard CDS/LDS, EDS/RDS/SDS subscribed by name, every response ACKed with its nonce; Envoy-like only (gRPC's xDS clients speak SotW)")
	flag.Float64Var(&o.nack, "nack", 0, "fraction (0..1) of the proxies, spread evenly, that NACK (error_detail, the version they hold, the response's nonce) the first response carrying (a)'s and (b)'s change, then ACK every later one; (a)/(b) are measured over the other proxies, and the NACKs sent, the xds-server's weft_xds_nacks_total and how the NACKing proxies ended (converged within 10 s of the change or not) are reported")
	flag.StringVar(&o.scenario, "scenario", "", "instead of (a)/(b): restart (every replica signalled, then started again), kill (one of -replicas signalled; its proxies move), scaleout (1 replica, then -replicas; proxies rebalance within -max-connection-age)")
	flag.IntVar(&o.replicas, "replicas", 0, "xds-server replicas behind a simulated Service (each connection to a random ready one) for -scenario (default: restart 1, kill 2, scaleout 2)")
	flag.StringVar(&o.signal, "signal", "", "signal for -scenario restart or kill: term or kill (default: restart term, kill kill)")
	flag.DurationVar(&o.maxConnAge, "max-connection-age", 0, "the replicas' --max-connection-age for -scenario (0: the xds-server's default; scaleout: 30s)")
	flag.DurationVar(&o.maxConnAgeGrace, "max-connection-age-grace", 5*time.Second, "the replicas' --max-connection-age-grace, with -max-connection-age")
	flag.Float64Var(&o.balance, "balance", 0.9, "-scenario scaleout: balanced when every replica holds at least this fraction of N/replicas")
	flag.Parse()
	o.xdsArgs = xa
	o.log = os.Stderr
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "xds-fleet:", err)
		os.Exit(2)
	}
	if err := checkConnectProfile(o); err != nil {
		fmt.Fprintln(os.Stderr, "xds-fleet:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.scenario != "" {
		if o.scenario == "scaleout" && o.maxConnAge == 0 {
			o.maxConnAge = 30 * time.Second
		}
		res, err := runReplicas(ctx, o)
		if err != nil {
			fmt.Fprintln(os.Stderr, "xds-fleet:", err)
			os.Exit(1)
		}
		res.print(os.Stdout)
		return
	}
	res, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "xds-fleet:", err)
		os.Exit(1)
	}
	res.print(os.Stdout)
}

// controlPlane is what the fleet talks to.
type controlPlane struct {
	apiURL, token string
	xds, xdsAdmin string
	xdsPID        int
	etcd          *etcdembed.Server
	stop          func()
	restartXDS    func(ctx context.Context) error
	xdsLogTail    func() string
	heapProfile   func()
	newReplica    func(ctx context.Context, instance string) (addr, admin string, err error)
	// For replicas.go: the started xds-server, its flags and the temp dir.
	child   func() *xdsChild
	xdsArgs []string
	dir     string
}

func startControlPlane(ctx context.Context, o options) (*controlPlane, error) {
	if o.apiURL != "" {
		if o.xds == "" || o.xdsAdmin == "" {
			return nil, errors.New("-api-url needs -xds and -xds-admin")
		}
		return &controlPlane{apiURL: strings.TrimSuffix(o.apiURL, "/"), token: o.token, xds: o.xds, xdsAdmin: o.xdsAdmin, xdsPID: o.xdsPID, stop: func() {}}, nil
	}
	dir, err := os.MkdirTemp("", "weft-xds-fleet")
	if err != nil {
		return nil, err
	}
	cp := &controlPlane{dir: dir}
	var stops []func()
	cp.stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
		if o.keepDir {
			fmt.Fprintln(os.Stderr, "xds-fleet: kept", dir, "(etcd data, xds-server logs)")
			return
		}
		os.RemoveAll(dir)
	}
	fail := func(err error) (*controlPlane, error) { cp.stop(); return nil, err }
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	etcd, err := etcdembed.Start(ctx, etcdembed.Config{Dir: filepath.Join(dir, "etcd"), Logger: quiet})
	if err != nil {
		return fail(err)
	}
	cp.etcd = etcd
	stops = append(stops, etcd.Close)
	cli, err := etcd.Client()
	if err != nil {
		return fail(err)
	}
	stops = append(stops, func() { cli.Close() })
	keyFile := filepath.Join(dir, "encryption.key")
	keys, err := seal.GenerateKeyFile(keyFile)
	if err != nil {
		return fail(err)
	}
	cfg := apiapp.Default()
	cfg.GRPCAddress, cfg.HTTPAddress, cfg.AdminAddress = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Etcd.Client, cfg.Encryption.Keyring, cfg.Logger = cli, keys, quiet
	api, err := apiapp.New(ctx, cfg)
	if err != nil {
		return fail(err)
	}
	actx, acancel := context.WithCancel(context.Background())
	adone := make(chan struct{})
	go func() { _ = api.Run(actx); close(adone) }()
	stops = append(stops, func() { acancel(); <-adone })
	if cp.token, err = api.IssueAdminToken(ctx, "xds-fleet", 24*time.Hour); err != nil {
		return fail(err)
	}
	cp.apiURL = "http://" + api.HTTPAddr()
	caAddr := "127.0.0.1:1" // unused with mTLS off
	if o.mtls {
		addr, stopCA, err := startCA(ctx, cli, keys)
		if err != nil {
			return fail(err)
		}
		stops = append(stops, stopCA)
		caAddr = addr
	}
	args := append([]string{"--address", "127.0.0.1:0", "--admin-address", "127.0.0.1:0",
		"--instance-id", "xds-fleet", "--tls-hostnames", "127.0.0.1,localhost",
		"--etcd-endpoints", etcd.Endpoint(), "--encryption-key-file", keyFile,
		"--ca-address", caAddr, "--log-format", "json", "--log-level", "info"}, o.xdsArgs...)
	cp.xdsArgs = args
	var child *xdsChild
	var extra []*xdsChild
	// newReplica starts another xds-server replica on the same etcd (no
	// profiles), stopped with the control plane.
	cp.newReplica = func(ctx context.Context, instance string) (addr, admin string, err error) {
		a := append([]string(nil), args...)
		for i := range a {
			if a[i] == "xds-fleet" {
				a[i] = instance
			}
		}
		c, err := startXDSChild(ctx, a, filepath.Join(dir, instance+".log"), "", "")
		if err != nil {
			return "", "", err
		}
		extra = append(extra, c)
		return c.addr, c.admin, nil
	}
	stops = append(stops, func() {
		for _, c := range extra {
			c.stop()
		}
	})
	cp.restartXDS = func(ctx context.Context) error {
		if child != nil {
			child.stop()
		}
		child, err = startXDSChild(ctx, args, filepath.Join(dir, "xds-server.log"), abs(o.cpuProfile), abs(o.heapProfile))
		if err != nil {
			return err
		}
		cp.xds, cp.xdsAdmin, cp.xdsPID = child.addr, child.admin, child.cmd.Process.Pid
		return nil
	}
	if err := cp.restartXDS(ctx); err != nil {
		return fail(err)
	}
	cp.xdsLogTail = func() string { return child.tail() }
	cp.child = func() *xdsChild { return child }
	cp.heapProfile = func() { _ = child.cmd.Process.Signal(syscall.SIGUSR1) }
	stops = append(stops, func() {
		if child != nil {
			child.stop()
		}
	})
	return cp, nil
}

type xdsChild struct {
	cmd         *exec.Cmd
	addr, admin string
	done        chan struct{}
	logFile     string
}

// startXDSChild re-executes this binary as an xds-server and waits for its
// "serving xDS" log line (with the bound addresses).
func startXDSChild(ctx context.Context, args []string, logFile, cpuProfile, heapProfile string) (*xdsChild, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), roleEnv+"=xds-server", cpuProfileEnv+"="+cpuProfile, heapProfileEnv+"="+heapProfile)
	cmd.Env = append(cmd.Env, xdsEnv...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	f, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	c := &xdsChild{cmd: cmd, done: make(chan struct{}), logFile: logFile}
	ready := make(chan struct{})
	go func() {
		defer f.Close()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Bytes()
			fmt.Fprintf(f, "%s\n", line)
			var m struct{ Msg, Address, Admin string }
			if json.Unmarshal(line, &m) == nil && m.Msg == "serving xDS" {
				c.addr, c.admin = m.Address, m.Admin
				once.Do(func() { close(ready) })
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(c.done) }()
	select {
	case <-ready:
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("xds-server exited: %s", c.tail())
	case <-time.After(60 * time.Second):
		c.stop()
		return nil, fmt.Errorf("xds-server not serving after 60s: %s", c.tail())
	case <-ctx.Done():
		c.stop()
		return nil, ctx.Err()
	}
}

func (c *xdsChild) tail() string {
	b, _ := os.ReadFile(c.logFile)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

func (c *xdsChild) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// xdsEnv is -xds-env: set in the xds-server children only, not in this
// process (its etcd and api-server keep the defaults).
var xdsEnv stringsFlag

const (
	cpuProfileEnv  = "WEFT_XDS_FLEET_CPUPROFILE"
	heapProfileEnv = "WEFT_XDS_FLEET_HEAPPROFILE"
)

// xdsServer is the child: the xds-server's own Main, with a CPU profile of
// the whole run and a heap profile on SIGUSR1 when asked for.
func xdsServer() int {
	if path := os.Getenv(cpuProfileEnv); path != "" {
		if f, err := os.Create(path); err == nil {
			_ = pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	if path := os.Getenv(heapProfileEnv); path != "" {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGUSR1)
		go func() {
			for range sig {
				if f, err := os.Create(path); err == nil {
					runtime.GC()
					_ = pprof.WriteHeapProfile(f)
					f.Close()
				}
				// Beside it: the goroutines by stack (debug=1) and the
				// runtime's memory classes, for RSS − heap (stacks etc.).
				if f, err := os.Create(path + ".goroutines.txt"); err == nil {
					_ = pprof.Lookup("goroutine").WriteTo(f, 1)
					f.Close()
				}
				// Renamed into place: the fleet waits for this file.
				if f, err := os.Create(path + ".memclasses.txt.tmp"); err == nil {
					writeMemClasses(f)
					f.Close()
					_ = os.Rename(path+".memclasses.txt.tmp", path+".memclasses.txt")
				}
			}
		}()
	}
	serveChangeProfile(context.Background())
	serveIdleProfile()
	return xdsapp.Main(context.Background(), os.Args[1:], os.Stderr)
}

func abs(p string) string {
	if p == "" {
		return ""
	}
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

// rest is a small admin REST client.
type rest struct {
	base, token string
	hc          *http.Client
}

func (r *rest) do(ctx context.Context, method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		return nil, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return b, nil
}

// dataplane i: service svc-(i mod services), one HTTP inbound, one
// outbound to svc-0.
func dataplane(i, services int) map[string]any {
	return map[string]any{"type": "Dataplane", "networking": map[string]any{
		"address": fmt.Sprintf("10.%d.%d.%d", 1+i>>16&255, i>>8&255, i&255),
		"inbound": []any{map[string]any{"port": 8080, "tags": map[string]string{
			"weft.io/service": fmt.Sprintf("svc-%d", i%services), "weft.io/protocol": "http"}}},
		"outbound": []any{map[string]any{"port": 20001, "tags": map[string]string{"weft.io/service": "svc-0"}}},
	}}
}

func dpName(i int) string { return fmt.Sprintf("dp-%05d", i) }

// register creates the mesh and Dataplanes [from, to) and issues their
// tokens, c at a time.
func register(ctx context.Context, r *rest, mesh string, from, to, services, c int) ([]string, error) {
	if _, err := r.do(ctx, "PUT", "/meshes/"+mesh, map[string]any{"type": "Mesh"}); err != nil {
		return nil, err
	}
	return registerDataplanes(ctx, r, mesh, from, to, services, c)
}

// registerDataplanes creates Dataplanes [from, to) of an existing mesh.
func registerDataplanes(ctx context.Context, r *rest, mesh string, from, to, services, c int) ([]string, error) {
	toks := make([]string, to-from)
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= to || ctx.Err() != nil {
					return
				}
				tok, err := registerOne(ctx, r, mesh, i, services)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				toks[i-from] = tok
			}
		}()
	}
	wg.Wait()
	return toks, firstErr
}

func registerOne(ctx context.Context, r *rest, mesh string, i, services int) (string, error) {
	if _, err := r.do(ctx, "PUT", "/meshes/"+mesh+"/dataplanes/"+dpName(i), dataplane(i, services)); err != nil {
		return "", err
	}
	b, err := r.do(ctx, "POST", "/tokens/dataplane", map[string]any{"mesh": mesh, "name": dpName(i), "validFor": "24h"})
	if err != nil {
		return "", err
	}
	var t struct{ Token string }
	if err := json.Unmarshal(b, &t); err != nil || t.Token == "" {
		return "", fmt.Errorf("token for %s: %v %s", dpName(i), err, b)
	}
	return t.Token, nil
}

// cpTLS fetches the control-plane CA from the xds-server's admin port, as
// weft-dp's operators do (weft-dp --cp-ca-file).
func cpTLS(ctx context.Context, admin string) (*tls.Config, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+admin+"/control-plane-ca.pem", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	pem, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("control-plane CA: %d %s", resp.StatusCode, pem)
	}
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}, nil
}

// fleet is the running simulated proxies.
type fleet struct {
	proxies []*proxy
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func proxySpecs(mesh, kind string, toks []string, from, services int) []proxySpec {
	specs := make([]proxySpec, len(toks))
	for j, tok := range toks {
		i := from + j
		s := proxySpec{Mesh: mesh, Name: dpName(i), Token: tok, Kind: kind}
		if kind == xdsnames.KindGRPC {
			s.GRPCListeners = []string{xdsnames.ClientListenerName("svc-0"),
				xdsnames.ServerListenerName(fmt.Sprintf("10.%d.%d.%d", 1+i>>16&255, i>>8&255, i&255), 8080)}
			sort.Strings(s.GRPCListeners)
		}
		specs[j] = s
	}
	return specs
}

// connect starts the proxies, c dialling at a time, and waits until all
// are configured (or timeout).
func connect(ctx context.Context, specs []proxySpec, d dialOpts, c int, timeout time.Duration, progress io.Writer) (*fleet, time.Duration, error) {
	fctx, cancel := context.WithCancel(ctx)
	f := &fleet{cancel: cancel}
	sem := make(chan struct{}, c)
	start := time.Now()
	for _, s := range specs {
		p := newProxy(s)
		f.proxies = append(f.proxies, p)
		sem <- struct{}{}
		f.wg.Add(1)
		pctx, pcancel := context.WithCancel(fctx)
		p.cancel, p.done = pcancel, make(chan struct{})
		go func() {
			defer f.wg.Done()
			defer close(p.done)
			go func() {
				// The next proxy dials once this one is configured (or
				// after a second): c connects in flight.
				select {
				case <-p.fullCh:
				case <-time.After(time.Second):
				case <-fctx.Done():
				}
				<-sem
			}()
			_ = p.run(pctx, d)
		}()
	}
	deadline := time.After(timeout)
	if progress != nil {
		tick := time.NewTicker(10 * time.Second)
		stopTick := make(chan struct{})
		defer func() { tick.Stop(); close(stopTick) }()
		go func() {
			for {
				select {
				case <-tick.C:
					fmt.Fprintf(progress, "xds-fleet: connecting: %s\n", f.status())
				case <-stopTick:
					return
				}
			}
		}()
	}
	for _, p := range f.proxies {
		select {
		case <-p.fullCh:
		case <-deadline:
			return f, 0, fmt.Errorf("proxy %s not configured within %s: %s", p.spec.Name, timeout, f.status())
		case <-ctx.Done():
			return f, 0, ctx.Err()
		}
	}
	return f, time.Since(start), nil
}

// status counts configured proxies, streams and the last stream errors.
func (f *fleet) status() string {
	full, streams := 0, int64(0)
	errs := map[string]int{}
	for _, p := range f.proxies {
		select {
		case <-p.fullCh:
			full++
		default:
			p.mu.Lock()
			types := len(p.acked)
			p.mu.Unlock()
			e, _ := p.lastErr.Load().(string)
			if len(e) > 120 {
				e = e[:120]
			}
			errs[fmt.Sprintf("acked types %d, streams %d, last error %q", types, p.streams.Load(), e)]++
		}
		streams += p.streams.Load()
	}
	return fmt.Sprintf("%d of %d configured, %d streams opened; unconfigured: %v", full, len(f.proxies), streams, errs)
}

func (f *fleet) stop() {
	f.cancel()
	f.wg.Wait()
}

// converge arms w on every proxy, runs change, and waits until each proxy
// ACKed a response satisfying w; it returns each proxy's time from just
// before change.
func (f *fleet) converge(ctx context.Context, w *watch, change func() error, timeout time.Duration) ([]time.Duration, error) {
	for _, p := range f.proxies {
		p.setWatch(w)
	}
	// A proxy already satisfying w must not count: the scenarios change
	// something no proxy holds yet.
	for _, p := range f.proxies {
		select {
		case <-p.wDone:
			return nil, fmt.Errorf("proxy %s satisfied the scenario before the change", p.spec.Name)
		default:
		}
	}
	t0 := time.Now()
	if err := change(); err != nil {
		return nil, err
	}
	out := make([]time.Duration, 0, len(f.proxies))
	deadline := time.After(timeout)
	for _, p := range f.proxies {
		select {
		case t := <-p.wDone:
			out = append(out, t.Sub(t0))
		case <-deadline:
			return out, fmt.Errorf("%d of %d proxies converged within %s (first missing: %s)", len(out), len(f.proxies), timeout, p.spec.Name)
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
	return out, nil
}

// hasEndpoint: an EDS response holds an endpoint with this address.
func hasEndpoint(addr string) *watch {
	return &watch{typeURL: resourcev3.EndpointType, ok: func(res []*anypb.Any) bool {
		for _, a := range res {
			cla := &endpointv3.ClusterLoadAssignment{}
			if a.UnmarshalTo(cla) != nil {
				continue
			}
			for _, le := range cla.GetEndpoints() {
				for _, e := range le.GetLbEndpoints() {
					if e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress() == addr {
						return true
					}
				}
			}
		}
		return false
	}}
}

// hasConnectTimeout: a CDS response holds an EDS cluster with this
// connect timeout.
func hasConnectTimeout(d time.Duration) *watch {
	return &watch{typeURL: resourcev3.ClusterType, ok: func(res []*anypb.Any) bool {
		for _, a := range res {
			c := &clusterv3.Cluster{}
			if a.UnmarshalTo(c) == nil && c.GetType() == clusterv3.Cluster_EDS && c.GetConnectTimeout().AsDuration() == d {
				return true
			}
		}
		return false
	}}
}

// hasMaxStreamDuration: an RDS response holds a route with this
// max_stream_duration (a proxyless client's call timeout).
func hasMaxStreamDuration(d time.Duration) *watch {
	return &watch{typeURL: resourcev3.RouteType, ok: func(res []*anypb.Any) bool {
		for _, a := range res {
			rc := &routev3.RouteConfiguration{}
			if a.UnmarshalTo(rc) != nil {
				continue
			}
			for _, vh := range rc.GetVirtualHosts() {
				for _, r := range vh.GetRoutes() {
					if msd := r.GetRoute().GetMaxStreamDuration().GetMaxStreamDuration(); msd != nil && msd.AsDuration() == d {
						return true
					}
				}
			}
		}
		return false
	}}
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[i]
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func goVersion() string { return runtime.Version() }
