// Package app wires ca-service: configuration, etcd, the CA manager, the
// gRPC API (TLS from the control-plane CA by default) and the admin server.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/weftmesh/weft/ca-service/internal/authority"
	"github.com/weftmesh/weft/ca-service/internal/backend"
	"github.com/weftmesh/weft/ca-service/internal/issued"
	"github.com/weftmesh/weft/ca-service/internal/server"
	"github.com/weftmesh/weft/pkg/config"
	"github.com/weftmesh/weft/pkg/cptls"
	"github.com/weftmesh/weft/pkg/grpcx"
	"github.com/weftmesh/weft/pkg/run"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/telemetry"
	"github.com/weftmesh/weft/pkg/token"
	cav1 "github.com/weftmesh/weft/proto/gen/go/weft/ca/v1"
)

// Service is the name used for flags' environment overrides, metrics and
// traces.
const Service = "ca-service"

// Config is ca-service's configuration.
type Config struct {
	Address      string
	AdminAddress string
	InstanceID   string
	Etcd         config.Etcd
	Encryption   config.Encryption
	Logging      telemetry.Logging

	// TLS: by default a serving certificate from the control-plane CA for
	// TLSHostnames; TLSCertFile+TLSKeyFile override it; InsecureDev serves
	// plaintext (development only).
	TLSCertFile  string
	TLSKeyFile   string
	TLSHostnames config.StringList
	InsecureDev  bool
	// EnablePprof serves net/http/pprof on the admin listener.
	EnablePprof bool

	// AllowedServices limits callers to these service names (token
	// subject or certificate service name); empty admits every service.
	AllowedServices config.StringList
	// CreateBuiltinRoots lets this instance generate builtin roots; turn it
	// off in a zone, where roots arrive from global.
	CreateBuiltinRoots bool
	// IssuedFlushInterval is how often issued-certificate records are
	// written to etcd.
	IssuedFlushInterval time.Duration
	// BundleRecheckInterval is how often trust bundles are recomputed for
	// certificates that expired.
	BundleRecheckInterval time.Duration

	// Logger, when set, is used instead of one built from Logging.
	Logger *slog.Logger
	// Registry, when set, receives the metrics (else a new one).
	Registry *prometheus.Registry
	// TracerProvider makes this service's spans (nil: none). Set by
	// run.Main or weftctl up; New never touches the global provider.
	TracerProvider trace.TracerProvider
}

// Default returns the defaults.
func Default() Config {
	host, _ := os.Hostname()
	return Config{
		Address:               ":5679",
		AdminAddress:          "127.0.0.1:5689",
		InstanceID:            host,
		Etcd:                  config.Etcd{Endpoints: config.StringList{"127.0.0.1:2379"}},
		Logging:               telemetry.Logging{Level: "info", Format: "text"},
		CreateBuiltinRoots:    true,
		IssuedFlushInterval:   time.Second,
		BundleRecheckInterval: 10 * time.Second,
	}
}

// RegisterFlags binds the configuration to flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Address, "address", c.Address, "gRPC listen address (host:port)")
	fs.StringVar(&c.AdminAddress, "admin-address", c.AdminAddress, "admin HTTP address for /healthz, /readyz, /metrics; loopback by default: set e.g. :5689 for probes and Prometheus")
	fs.StringVar(&c.InstanceID, "instance-id", c.InstanceID, "name of this replica (default: hostname)")
	c.Etcd.RegisterFlags(fs)
	c.Encryption.RegisterFlags(fs)
	c.Logging.RegisterFlags(fs)
	fs.StringVar(&c.TLSCertFile, "tls-cert-file", c.TLSCertFile, "serving certificate (PEM, with chain); default: issued by the control-plane CA")
	fs.StringVar(&c.TLSKeyFile, "tls-key-file", c.TLSKeyFile, "key of --tls-cert-file")
	fs.Var(&c.TLSHostnames, "tls-hostnames", "comma-separated DNS names/IPs for the control-plane-CA serving certificate (loopback is always included; default: instance id)")
	fs.BoolVar(&c.InsecureDev, "insecure-dev", c.InsecureDev, "serve gRPC in plaintext: DEVELOPMENT ONLY, never in production")
	fs.BoolVar(&c.EnablePprof, "enable-pprof", c.EnablePprof, "serve /debug/pprof/ on the admin address")
	fs.Var(&c.AllowedServices, "allowed-services", "comma-separated service names allowed to call (default: any control-plane service)")
	fs.BoolVar(&c.CreateBuiltinRoots, "create-builtin-roots", c.CreateBuiltinRoots, "generate builtin mesh roots (false in a zone: roots come from global)")
	fs.DurationVar(&c.IssuedFlushInterval, "issued-flush-interval", c.IssuedFlushInterval, "how often records of issued certificates are written to etcd")
	fs.DurationVar(&c.BundleRecheckInterval, "bundle-recheck-interval", c.BundleRecheckInterval, "how often trust bundles are recomputed as old certificates expire")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.Address == "" {
		errs = append(errs, errors.New("address: required"))
	} else if _, _, err := net.SplitHostPort(c.Address); err != nil {
		errs = append(errs, fmt.Errorf("address: %w", err))
	}
	if c.AdminAddress != "" {
		if _, _, err := net.SplitHostPort(c.AdminAddress); err != nil {
			errs = append(errs, fmt.Errorf("admin-address: %w", err))
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("tls-cert-file and tls-key-file go together"))
	}
	if c.InsecureDev && c.TLSCertFile != "" {
		errs = append(errs, errors.New("insecure-dev and tls-cert-file exclude each other"))
	}
	if c.IssuedFlushInterval <= 0 {
		errs = append(errs, errors.New("issued-flush-interval: must be positive"))
	}
	if c.BundleRecheckInterval <= 0 {
		errs = append(errs, errors.New("bundle-recheck-interval: must be positive"))
	}
	if err := c.Etcd.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Logging.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// App is a running ca-service.
type App struct {
	cfg      Config
	log      *slog.Logger
	cli      *clientv3.Client
	ownsCli  bool
	st       *store.Store
	ln       net.Listener
	grpc     *grpc.Server
	admin    *telemetry.Admin
	manager  *authority.Manager
	tracker  *issued.Tracker
	cpExpiry time.Time
}

// New connects to etcd, prepares the control-plane CA and TLS, and binds
// the listeners.
func New(cfg Config) (a *App, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = cfg.Logging.NewLogger(os.Stderr)
	}
	log = log.With("service", Service)
	keys, err := cfg.Encryption.Load()
	if err != nil {
		return nil, err
	}
	cli, owns, err := cfg.Etcd.Connect()
	if err != nil {
		return nil, err
	}
	a = &App{cfg: cfg, log: log, cli: cli, ownsCli: owns}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	reg := cfg.Registry
	if reg == nil {
		reg = telemetry.NewRegistry()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tp := cfg.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	a.st = store.New(cli, store.WithKeyring(keys), store.WithLogger(log), store.WithMetrics(reg), store.WithTracerProvider(tp))

	cpCA, err := cptls.LoadCA(ctx, a.st)
	if err != nil {
		return nil, err
	}
	a.cpExpiry = cpCA.Cert.NotAfter
	if left := time.Until(a.cpExpiry); left < 90*24*time.Hour {
		log.Warn("the control-plane CA expires soon; control-plane TLS fails after that", "expires", a.cpExpiry, "left", left.Round(time.Hour))
	}
	if _, err := telemetry.Register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "weft_ca_control_plane_ca_expiry_seconds",
		Help: "Seconds until the control-plane CA expires."}, func() float64 { return time.Until(a.cpExpiry).Seconds() })); err != nil {
		return nil, err
	}

	var creds credentials.TransportCredentials
	switch {
	case cfg.InsecureDev:
		log.Warn("!!! --insecure-dev: serving the CA API WITHOUT TLS; certificates and tokens cross the network in the clear. Development only !!!")
	case cfg.TLSCertFile != "":
		tc, err := cptls.FromFiles(cfg.TLSCertFile, cfg.TLSKeyFile, "")
		if err != nil {
			return nil, err
		}
		if tc.ClientCAs, err = cptls.Pool(ctx, a.st); err != nil {
			return nil, err
		}
		tc.ClientAuth = tls.VerifyClientCertIfGiven
		creds = credentials.NewTLS(tc)
	default:
		hosts := cfg.TLSHostnames
		if len(hosts) == 0 && cfg.InstanceID != "" {
			hosts = config.StringList{cfg.InstanceID}
		}
		tc, err := cptls.ServerConfig(ctx, a.st, hosts, cptls.WithService(Service))
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(tc)
	}

	// The tracker tells the manager when a mesh's live backends change.
	a.tracker = issued.New(cli, cfg.IssuedFlushInterval, log, func(mesh string) { a.manager.Changed(mesh) })
	a.manager = authority.New(authority.Config{Store: a.st, Loader: backend.New(a.st, cfg.CreateBuiltinRoots), Tracker: a.tracker,
		Log: log, Metrics: authority.NewMetrics(reg), Recheck: cfg.BundleRecheckInterval})

	tokens := token.New(a.st)
	unary, stream := grpcx.Auth(server.Auth(tokens, cfg.AllowedServices))
	opts := grpcx.ServerOptions(log, reg, Service, []grpc.UnaryServerInterceptor{unary}, []grpc.StreamServerInterceptor{stream},
		grpcx.WithTracerProvider(tp), grpcx.WithoutSpans(cav1.CertificateAuthorityService_WatchTrustBundle_FullMethodName))
	// Long-lived stream workers keep their grown stacks: a fresh goroutine
	// per RPC spends a tenth of the CPU growing its stack through gRPC,
	// TLS and ECDSA frames.
	opts = append(opts, grpc.NumStreamWorkers(uint32(4*runtime.GOMAXPROCS(0))))
	opts = append(opts, grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}))
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	a.grpc = grpc.NewServer(opts...)
	server.New(a.manager, tokens).Register(a.grpc)

	if a.ln, err = net.Listen("tcp", cfg.Address); err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Address, err)
	}
	adminAddr := cfg.AdminAddress
	if adminAddr == "" {
		adminAddr = "127.0.0.1:0"
	}
	if a.admin, err = telemetry.NewAdmin(adminAddr, reg, log); err != nil {
		return nil, err
	}
	a.admin.AddCheck("etcd", telemetry.EtcdCheck(cli))
	if cfg.EnablePprof {
		a.admin.Handle("GET /debug/pprof/", http.HandlerFunc(pprof.Index))
		a.admin.Handle("GET /debug/pprof/profile", http.HandlerFunc(pprof.Profile))
	}
	a.admin.AddCheck("ca", func(context.Context) error {
		if !a.manager.Ready() {
			return errors.New("initial sync of meshes, dataplanes and secrets not done")
		}
		return nil
	})
	return a, nil
}

// Addr is the bound gRPC address.
func (a *App) Addr() string { return a.ln.Addr().String() }

// AdminAddr is the bound admin address.
func (a *App) AdminAddr() string { return a.admin.Addr() }

// Store is the resource store the app uses (tests and weftctl up).
func (a *App) Store() *store.Store { return a.st }

func (a *App) close() {
	if a.ln != nil {
		a.ln.Close()
	}
	if a.ownsCli && a.cli != nil {
		a.cli.Close()
	}
}

// Run serves until ctx ends or a component stops (run.Group's policy).
// The tracker flushes its pending records when it stops.
func (a *App) Run(ctx context.Context) error {
	defer a.close()
	g := run.New(a.log)
	g.Add("admin", a.admin.Serve)
	g.Add("authority", a.manager.Run)
	g.Add("issued-tracker", a.tracker.Run)
	g.Add("grpc", run.GRPC(a.grpc, a.ln))
	a.log.Info("ca-service started", "address", a.Addr(), "admin", a.AdminAddr(), "instance", a.cfg.InstanceID, "tls", !a.cfg.InsecureDev)
	return g.Run(ctx)
}

// Run builds and runs an App.
func Run(ctx context.Context, cfg Config) error {
	a, err := New(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// Main is the command: flags and environment, then Run until a signal.
func Main(ctx context.Context, args []string, stderr io.Writer) int {
	cfg := Default()
	return run.Main(ctx, args, stderr, run.Program{Name: Service, Flags: cfg.RegisterFlags, Logging: &cfg.Logging,
		Start: func(_ context.Context, env run.Env) (run.Runner, error) {
			cfg.Logger, cfg.TracerProvider = env.Log, env.Tracing.Provider
			return New(cfg)
		}})
}
