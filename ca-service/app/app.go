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
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
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
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/telemetry"
	"github.com/weftmesh/weft/pkg/token"
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
}

// Default returns the defaults.
func Default() Config {
	host, _ := os.Hostname()
	return Config{
		Address:               ":5679",
		AdminAddress:          ":5689",
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
	fs.StringVar(&c.AdminAddress, "admin-address", c.AdminAddress, "admin HTTP address for /healthz, /readyz, /metrics")
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
	tracing  func(context.Context) error
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
	if a.tracing, err = telemetry.SetupTracing(ctx, Service, log); err != nil {
		return nil, err
	}
	a.st = store.New(cli, store.WithKeyring(keys), store.WithLogger(log), store.WithMetrics(reg))

	cpCA, err := cptls.LoadCA(ctx, a.st)
	if err != nil {
		return nil, err
	}
	a.cpExpiry = cpCA.Cert.NotAfter
	if left := time.Until(a.cpExpiry); left < 90*24*time.Hour {
		log.Warn("the control-plane CA expires soon; control-plane TLS fails after that", "expires", a.cpExpiry, "left", left.Round(time.Hour))
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "weft_ca_control_plane_ca_expiry_seconds",
		Help: "Seconds until the control-plane CA expires."}, func() float64 { return time.Until(a.cpExpiry).Seconds() }))

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
	opts := grpcx.ServerOptions(log, reg, Service, []grpc.UnaryServerInterceptor{unary}, []grpc.StreamServerInterceptor{stream})
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

// Run serves until ctx ends.
func (a *App) Run(ctx context.Context) error {
	defer a.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)
	go func() { errc <- a.admin.Serve(ctx) }()
	go func() { errc <- a.manager.Run(ctx) }()
	trackerDone := make(chan struct{})
	go func() { defer close(trackerDone); _ = a.tracker.Run(ctx) }()
	go func() { errc <- a.grpc.Serve(a.ln) }()
	a.log.Info("ca-service started", "address", a.Addr(), "admin", a.AdminAddr(), "instance", a.cfg.InstanceID, "tls", !a.cfg.InsecureDev)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	stopped := make(chan struct{})
	go func() { a.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		a.grpc.Stop()
	}
	<-trackerDone
	if a.tracing != nil {
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		_ = a.tracing(sctx)
		c()
	}
	return err
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
	fs := flag.NewFlagSet(Service, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.RegisterFlags(fs)
	if err := config.Parse(fs, Service, args, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, err)
		return 2
	}
	cfg.Logger = cfg.Logging.NewLogger(stderr)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, cfg); err != nil {
		fmt.Fprintln(stderr, "ca-service:", err)
		return 1
	}
	return 0
}
