// Package app wires the api-server: config → etcd store → gRPC services →
// REST gateway → admin server.
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
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/weftmesh/weft/api-server/internal/caexpiry"
	"github.com/weftmesh/weft/api-server/internal/gateway"
	"github.com/weftmesh/weft/api-server/internal/gui"
	"github.com/weftmesh/weft/api-server/internal/openapi"
	"github.com/weftmesh/weft/api-server/internal/server"
	"github.com/weftmesh/weft/pkg/ca"
	"github.com/weftmesh/weft/pkg/config"
	"github.com/weftmesh/weft/pkg/grpcx"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/run"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/telemetry"
	"github.com/weftmesh/weft/pkg/token"
	"github.com/weftmesh/weft/pkg/version"
)

// Version is the Weft version reported by GET / (pkg/version, the one
// weftctl prints too).
var Version = version.Version

// ServiceName is used for env overrides (WEFT_API_SERVER_*) and telemetry.
const ServiceName = "api-server"

// Config is the api-server's configuration.
type Config struct {
	GRPCAddress  string
	HTTPAddress  string
	AdminAddress string
	Mode         string
	Zone         string
	InstanceID   string
	// TLSCertFile and TLSKeyFile make both listeners serve TLS.
	TLSCertFile string
	TLSKeyFile  string
	// TLSConfig, when set, is used instead of the files (weftctl up).
	TLSConfig *tls.Config
	// InsecureDev turns authentication off. Never in production.
	InsecureDev bool
	// BootstrapAdminTokenFile, when set and absent, receives a new admin
	// token at start (mode 0600).
	BootstrapAdminTokenFile string
	// MaxWatchesPerIdentity caps concurrent Watch streams per token
	// identity (ResourceExhausted beyond).
	MaxWatchesPerIdentity int
	Etcd                  config.Etcd
	Encryption            config.Encryption
	Logging               telemetry.Logging
	// Logger, when set, is used instead of building one from Logging.
	Logger *slog.Logger
	// StoreTimeout bounds every etcd call (default store.DefaultTimeout):
	// past it a request answers 503 with Retry-After.
	StoreTimeout time.Duration
	// MeshValidator checks Meshes beyond their shape (provided CAs).
	MeshValidator func(ctx context.Context, mesh *resource.Resource) error
	// TracerProvider makes this service's spans (nil: none). Set by
	// run.Main or weftctl up, never the global provider.
	TracerProvider trace.TracerProvider
	// XDS is how to reach an xds-server for config dumps and policy
	// previews (xds.go).
	XDS XDSConfig
}

// Default returns the defaults.
func Default() Config {
	host, _ := os.Hostname()
	return Config{GRPCAddress: ":5680", HTTPAddress: ":5681", AdminAddress: "127.0.0.1:5682", Mode: server.ModeStandalone,
		InstanceID: host, MaxWatchesPerIdentity: server.DefaultMaxWatchesPerIdentity, Logging: telemetry.Logging{Level: "info", Format: "text"},
		XDS: XDSConfig{Address: DefaultXDSAddress}}
}

// RegisterFlags binds the config to flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.GRPCAddress, "grpc-address", c.GRPCAddress, "gRPC API listen address")
	fs.StringVar(&c.HTTPAddress, "http-address", c.HTTPAddress, "REST API listen address")
	fs.StringVar(&c.AdminAddress, "admin-address", c.AdminAddress, "admin listen address (/healthz, /readyz, /metrics); loopback by default: set e.g. :5682 for probes and Prometheus")
	fs.StringVar(&c.Mode, "mode", c.Mode, "control plane mode: standalone, global or zone")
	fs.StringVar(&c.Zone, "zone", c.Zone, "zone name (zone mode)")
	fs.StringVar(&c.InstanceID, "instance-id", c.InstanceID, "this replica's id (default: hostname)")
	fs.StringVar(&c.TLSCertFile, "tls-cert-file", c.TLSCertFile, "serving certificate (PEM) for the gRPC and REST listeners")
	fs.StringVar(&c.TLSKeyFile, "tls-key-file", c.TLSKeyFile, "serving key (PEM)")
	fs.BoolVar(&c.InsecureDev, "insecure-dev", c.InsecureDev, "DANGER: turn off authentication (development only)")
	fs.StringVar(&c.BootstrapAdminTokenFile, "bootstrap-admin-token-file", c.BootstrapAdminTokenFile,
		"write a new admin token to this file at start when the file does not exist")
	fs.IntVar(&c.MaxWatchesPerIdentity, "max-watches-per-identity", c.MaxWatchesPerIdentity, "concurrent Watch streams of one token identity, at most (beyond: ResourceExhausted)")
	c.XDS.RegisterFlags(fs)
	c.Etcd.RegisterFlags(fs)
	c.Encryption.RegisterFlags(fs)
	c.Logging.RegisterFlags(fs)
}

// Validate checks the config.
func (c *Config) Validate() error {
	var errs []error
	switch c.Mode {
	case server.ModeStandalone, server.ModeGlobal:
		if c.Zone != "" && c.Mode == server.ModeGlobal {
			errs = append(errs, errors.New("zone: only a zone control plane has a zone name"))
		}
	case server.ModeZone:
		if !resource.IsLabel(c.Zone) {
			errs = append(errs, fmt.Errorf("zone: %q must be a DNS label in zone mode", c.Zone))
		}
	default:
		errs = append(errs, fmt.Errorf("mode: %q is not standalone, global or zone", c.Mode))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("tls-cert-file and tls-key-file go together"))
	}
	if c.MaxWatchesPerIdentity < 1 {
		errs = append(errs, errors.New("max-watches-per-identity: at least 1"))
	}
	errs = append(errs, c.Etcd.Validate(), c.Logging.Validate())
	return errors.Join(errs...)
}

// App is a running api-server.
type App struct {
	cfg       Config
	log       *slog.Logger
	grpcLn    net.Listener
	httpLn    net.Listener
	admin     *telemetry.Admin
	grpcSrv   *grpc.Server
	inprocSrv *grpc.Server
	httpSrv   *http.Server
	inproc    *bufconn.Listener
	conn      *grpc.ClientConn
	closeCli  func()
	keys      *token.Keys
	gui       *gui.GUI
	xdsConn   *grpc.ClientConn
	lazyXDS   *lazyConn
}

// New builds the server and binds its listeners.
func New(ctx context.Context, cfg Config) (_ *App, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = cfg.Logging.NewLogger(os.Stderr)
	}
	log = log.With("component", ServiceName)
	tp := cfg.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	a := &App{cfg: cfg, log: log, closeCli: func() {}}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	cli, owned, err := cfg.Etcd.Connect()
	if err != nil {
		return nil, err
	}
	if owned {
		a.closeCli = func() { cli.Close() }
	}
	keys, err := cfg.Encryption.Load()
	if err != nil {
		return nil, err
	}
	reg := telemetry.NewRegistry()
	st := store.New(cli, store.WithKeyring(keys), store.WithLogger(log), store.WithMetrics(reg), store.WithTracerProvider(tp), store.WithTimeout(cfg.StoreTimeout))
	a.keys = token.New(st)
	if a.admin, err = telemetry.NewAdmin(cfg.AdminAddress, reg, log); err != nil {
		return nil, err
	}
	a.admin.AddCheck("etcd", telemetry.EtcdCheck(cli))

	auth := grpcx.TokenAuth(a.keys, server.Authorize)
	if cfg.InsecureDev {
		log.Warn("!!! --insecure-dev: authentication is OFF; every caller is an admin. Never use this outside development. !!!")
		auth = func(ctx context.Context, _ string) (context.Context, error) {
			c := &token.Claims{Kind: token.KindUser, Groups: []string{token.AdminGroup}}
			c.Subject = "insecure-dev"
			return grpcx.WithClaims(ctx, c), nil
		}
	}
	u, s := grpcx.Auth(auth)
	opts := grpcx.ServerOptions(log, reg, ServiceName, []grpc.UnaryServerInterceptor{u}, []grpc.StreamServerInterceptor{s},
		grpcx.WithTracerProvider(tp))
	tlsCfg := cfg.TLSConfig
	if tlsCfg == nil && cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	srv := server.New(st, a.keys, server.Config{Mode: cfg.Mode, Zone: cfg.Zone, InstanceID: cfg.InstanceID, Version: Version,
		MeshValidator: meshValidator(cfg.MeshValidator, st), MaxWatchesPerIdentity: cfg.MaxWatchesPerIdentity}, log)
	// Two gRPC servers share the services: one on the network (TLS when
	// configured), one in-process for the REST gateway.
	netOpts := opts
	if tlsCfg != nil {
		netOpts = append(append([]grpc.ServerOption(nil), opts...), grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	xdsConn, xdsAddr, err := a.dialXDS(st, tp)
	if err != nil {
		return nil, err
	}
	inspect := srv.NewInspect(xdsConn, xdsAddr)
	a.grpcSrv = grpc.NewServer(netOpts...)
	srv.Register(a.grpcSrv)
	inspect.Register(a.grpcSrv)
	a.inprocSrv = grpc.NewServer(opts...)
	srv.Register(a.inprocSrv)
	inspect.Register(a.inprocSrv)

	// The gateway reaches the gRPC server in-process, through the same
	// interceptors, without a TCP hop or a TLS handshake. Its client
	// options carry the HTTP request's trace to the gRPC call, so a REST
	// request is one trace from HTTP to etcd.
	a.inproc = bufconn.Listen(1 << 20)
	a.conn, err = grpc.NewClient("passthrough:///inproc", append(grpcx.ClientOptions(grpcx.WithTracerProvider(tp)),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return a.inproc.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))...)
	if err != nil {
		return nil, err
	}
	gw, err := gateway.New(ctx, a.conn, log)
	if err != nil {
		return nil, err
	}
	caExpiry := caexpiry.New(st)
	gw = gateway.WithCA(gw, a.conn, caExpiry.Mesh)
	doc, err := openapi.Document(Version)
	if err != nil {
		return nil, fmt.Errorf("openapi document: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	})
	mux.Handle("/", gw)
	// The web GUI: embedded assets and its read-only summary API, behind
	// the same authentication as the API.
	a.gui = gui.New(store.NewInformers(st), gui.Config{Auth: auth, Mode: cfg.Mode, Zone: cfg.Zone, Log: log, CAExpiry: caExpiry.Mesh})
	mux.Handle(gui.Prefix, a.gui)
	mux.Handle("GET /gui", http.RedirectHandler(gui.Prefix, http.StatusMovedPermanently))
	// StripToken is outermost: no access log, span or metric sees the
	// token of a GUI sign-in link.
	handler := gui.StripToken(telemetry.HTTPMetrics(reg, ServiceName, routeLabel, otelhttp.NewHandler(mux, "api-server.http",
		otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(telemetry.Propagator()),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + routeLabel(r) }))))
	a.httpSrv = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}

	if a.grpcLn, err = net.Listen("tcp", cfg.GRPCAddress); err != nil {
		return nil, fmt.Errorf("grpc listener: %w", err)
	}
	if a.httpLn, err = net.Listen("tcp", cfg.HTTPAddress); err != nil {
		return nil, fmt.Errorf("http listener: %w", err)
	}
	if tlsCfg != nil {
		a.httpLn = tls.NewListener(a.httpLn, tlsCfg.Clone())
	} else if !loopback(a.grpcLn.Addr()) || !loopback(a.httpLn.Addr()) {
		log.Warn("serving the API without TLS on a non-loopback address; set --tls-cert-file/--tls-key-file")
	}
	if cfg.BootstrapAdminTokenFile != "" {
		if err := a.bootstrapAdminToken(ctx, cfg.BootstrapAdminTokenFile); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func loopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// meshValidator checks provided CAs deeply (the cert is a CA, matches its
// key, is valid now) so a bad one is refused with field paths and nothing
// is stored; an explicit validator replaces it.
func meshValidator(custom func(context.Context, *resource.Resource) error, st *store.Store) func(context.Context, *resource.Resource) error {
	if custom != nil {
		return custom
	}
	return func(ctx context.Context, mesh *resource.Resource) error {
		return ca.ValidateMeshCA(ctx, ca.StoreSecrets(st), mesh)
	}
}

// routeLabel names a request's route for metrics with bounded cardinality.
func routeLabel(r *http.Request) string {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	known := func(c string) string {
		base := strings.TrimSuffix(c, "+insights")
		if _, ok := resource.ByCollection(base); ok {
			return c
		}
		return "{unknown}"
	}
	switch {
	case r.URL.Path == "/":
		return "/"
	case len(parts) == 1 && parts[0] == "openapi.json":
		return "/openapi.json"
	case len(parts) == 1 && parts[0] == "global-insight":
		return "/global-insight"
	case parts[0] == "gui":
		return gui.RouteLabel(r.URL.Path)
	case len(parts) == 2 && parts[0] == "tokens":
		return "/tokens/" + map[bool]string{true: parts[1], false: "{unknown}"}[parts[1] == "dataplane" || parts[1] == "zone" || parts[1] == "user"]
	case len(parts) == 1:
		return "/" + known(parts[0])
	case len(parts) == 2:
		return "/" + known(parts[0]) + "/{name}"
	case len(parts) == 3 && parts[0] == "meshes" && parts[2] == "ca":
		return "/meshes/{mesh}/ca"
	case len(parts) == 3 && parts[0] == "meshes":
		return "/meshes/{mesh}/" + known(parts[2])
	case len(parts) == 4 && parts[0] == "meshes":
		return "/meshes/{mesh}/" + known(parts[2]) + "/{name}"
	case len(parts) == 5 && parts[0] == "meshes" && parts[2] == "dataplanes" && parts[4] == "policies":
		return "/meshes/{mesh}/dataplanes/{name}/policies"
	case len(parts) == 5 && parts[0] == "meshes" && parts[2] == "dataplanes" && parts[4] == "xds":
		return "/meshes/{mesh}/dataplanes/{name}/xds"
	}
	return "{unknown}"
}

func (a *App) bootstrapAdminToken(ctx context.Context, path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	tok, err := a.IssueAdminToken(ctx, "admin", 365*24*time.Hour)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return fmt.Errorf("write admin token: %w", err)
	}
	a.log.Info("wrote a new admin token", "file", path)
	return nil
}

// IssueAdminToken issues an admin user token (weftctl up, bootstrap).
func (a *App) IssueAdminToken(ctx context.Context, name string, d time.Duration) (string, error) {
	c := token.Claims{Kind: token.KindUser, Groups: []string{token.AdminGroup}}
	c.Subject = name
	tok, _, err := a.keys.Issue(ctx, c, d)
	return tok, err
}

// Keys returns the token keys (for issuing tokens in-process).
func (a *App) Keys() *token.Keys { return a.keys }

// GRPCAddr is the bound gRPC address.
func (a *App) GRPCAddr() string { return a.grpcLn.Addr().String() }

// HTTPAddr is the bound REST address.
func (a *App) HTTPAddr() string { return a.httpLn.Addr().String() }

// AdminAddr is the bound admin address.
func (a *App) AdminAddr() string { return a.admin.Addr() }

// Run serves until ctx ends or a component stops (run.Group's policy).
func (a *App) Run(ctx context.Context) error {
	defer a.close()
	g := run.New(a.log)
	g.Add("grpc", run.GRPC(a.grpcSrv, a.grpcLn))
	g.Add("grpc-inproc", run.GRPC(a.inprocSrv, a.inproc))
	g.Add("http", run.HTTP(a.httpSrv, a.httpLn))
	g.Add("admin", a.admin.Serve)
	g.Add("gui", a.gui.Run)
	a.log.Info("api-server serving", "grpc", a.GRPCAddr(), "http", a.HTTPAddr(), "admin", a.AdminAddr(), "mode", a.cfg.Mode, "zone", a.cfg.Zone)
	return g.Run(ctx)
}

func (a *App) close() {
	if a.conn != nil {
		a.conn.Close()
	}
	if a.xdsConn != nil {
		a.xdsConn.Close()
	}
	if a.lazyXDS != nil {
		a.lazyXDS.close()
	}
	if a.grpcLn != nil {
		a.grpcLn.Close()
	}
	if a.httpLn != nil {
		a.httpLn.Close()
	}
	a.closeCli()
}

// Main is the command-line entry point.
func Main(ctx context.Context, args []string, stderr io.Writer) int {
	cfg := Default()
	return run.Main(ctx, args, stderr, run.Program{Name: ServiceName, Flags: cfg.RegisterFlags, Logging: &cfg.Logging,
		Start: func(ctx context.Context, env run.Env) (run.Runner, error) {
			cfg.Logger, cfg.TracerProvider = env.Log, env.Tracing.Provider
			return New(ctx, cfg)
		}})
}
