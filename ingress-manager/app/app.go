// Package app wires the ingress-manager: configuration, the etcd store, the
// ZoneIngress keeper and (with --dataplane=builtin) the SNI-routing ingress
// data path fed over ADS by this zone's xds-server (internal/adsclient),
// and the admin HTTP server (/healthz, /readyz, /metrics).
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/weftmesh/weft/ingress-manager/internal/adsclient"
	"github.com/weftmesh/weft/ingress-manager/internal/zoneingress"
	"github.com/weftmesh/weft/ingress-manager/proxy"
	"github.com/weftmesh/weft/pkg/config"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/run"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/telemetry"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// ServiceName is used for env overrides (WEFT_INGRESS_MANAGER_*) and
// telemetry.
const ServiceName = "ingress-manager"

// Data path modes (--dataplane).
const (
	DataplaneBuiltin = "builtin"
	DataplaneEnvoy   = "envoy"
)

// Config is the ingress-manager's configuration.
type Config struct {
	Etcd config.Etcd
	// Zone is this zone (required); Name the ZoneIngress resource's name.
	Zone, Name string
	// Dataplane: builtin (this process routes) or envoy (an Envoy ingress
	// run by weft-dp does; this process only keeps the ZoneIngress).
	Dataplane string
	// Address the built-in ingress listens on, and the ZoneIngress's
	// networking address/port.
	Address string
	// AdvertisedAddress/Port: what other zones dial (a load balancer or NAT
	// in front of one or several ingress instances). Empty: the listen
	// address (or, for a wildcard listen address, the first non-loopback
	// address of the host).
	AdvertisedAddress string
	AdvertisedPort    uint32
	// AdminAddress serves /healthz, /readyz and /metrics; empty disables it.
	AdminAddress string
	// Data path limits.
	MaxConnections int
	IdleTimeout    time.Duration
	DrainTimeout   time.Duration
	// MaxServices caps availableServices; MaxEndpoints the routing table.
	MaxServices  int
	MaxEndpoints int
	// XDSServer is this zone's xds-server (host:port): the built-in data
	// path gets its configuration there over ADS, as the zone ingress,
	// exactly as an Envoy ingress would. Required with --dataplane=builtin.
	XDSServer string
	// TokenFile holds the ingress token (weftctl generate ingress-token
	// --zone <Zone> --name <Name>); Token, set by programs, is the token
	// itself and wins over the file.
	TokenFile string
	Token     string
	// CPCAFile verifies the xds-server's TLS certificate (the control-plane
	// CA); empty: plaintext, for an xds-server run with --insecure-dev.
	CPCAFile string
	Logging  telemetry.Logging

	// Set by programs, not flags.
	Logger         *slog.Logger
	Registry       *prometheus.Registry
	TracerProvider trace.TracerProvider
}

// Default returns the default configuration.
func Default() Config {
	return Config{
		Etcd:           config.Etcd{Endpoints: config.StringList{"127.0.0.1:2379"}},
		Name:           "ingress",
		Dataplane:      DataplaneBuiltin,
		Address:        ":10001",
		AdminAddress:   "127.0.0.1:5687",
		MaxConnections: 10000,
		IdleTimeout:    10 * time.Minute,
		DrainTimeout:   30 * time.Second,
		MaxServices:    5000,
		MaxEndpoints:   50000,
		Logging:        telemetry.Logging{Level: "info", Format: "text"},
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	errs := []error{c.Etcd.Validate(), c.Logging.Validate()}
	if !resource.IsLabel(c.Zone) {
		errs = append(errs, fmt.Errorf("--zone: %q must be this zone's name (a DNS label)", c.Zone))
	}
	if v := resource.NewValidator(); true {
		resource.CheckName(v, c.Name)
		if v.Err() != nil {
			errs = append(errs, fmt.Errorf("--name: %q is not a valid resource name", c.Name))
		}
	}
	if c.Dataplane != DataplaneBuiltin && c.Dataplane != DataplaneEnvoy {
		errs = append(errs, fmt.Errorf("--dataplane: %q must be builtin or envoy", c.Dataplane))
	}
	if _, port, err := net.SplitHostPort(c.Address); err != nil {
		errs = append(errs, fmt.Errorf("--address: %w", err))
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		errs = append(errs, fmt.Errorf("--address: port %q", port))
	}
	if c.AdminAddress != "" {
		if _, _, err := net.SplitHostPort(c.AdminAddress); err != nil {
			errs = append(errs, fmt.Errorf("--admin-address: %w", err))
		}
	}
	if c.AdvertisedPort > 65535 {
		errs = append(errs, fmt.Errorf("--advertised-port: %d is not a port", c.AdvertisedPort))
	}
	if c.MaxConnections < 1 {
		errs = append(errs, errors.New("--max-connections: must be at least 1"))
	}
	if c.IdleTimeout <= 0 || c.DrainTimeout <= 0 {
		errs = append(errs, errors.New("--idle-timeout and --drain-timeout must be positive"))
	}
	if c.Dataplane == DataplaneBuiltin {
		if c.XDSServer == "" {
			errs = append(errs, errors.New("--xds-server: required with --dataplane=builtin (this zone's xds-server, host:port: the ingress gets its routes there)"))
		} else if _, _, err := net.SplitHostPort(c.XDSServer); err != nil {
			errs = append(errs, fmt.Errorf("--xds-server: %w", err))
		}
		if c.Token == "" && c.TokenFile == "" {
			errs = append(errs, errors.New("--token-file: required with --dataplane=builtin (an ingress token: weftctl generate ingress-token --zone <zone> --name <name>)"))
		}
	}
	if c.MaxServices < 1 || c.MaxEndpoints < 1 {
		errs = append(errs, errors.New("--max-services and --max-endpoints must be at least 1"))
	}
	return errors.Join(errs...)
}

// RegisterFlags binds the configuration to flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Zone, "zone", c.Zone, "this zone's name (required)")
	fs.StringVar(&c.Name, "name", c.Name, "name of this zone's ZoneIngress resource; several instances behind one advertised address share it")
	fs.StringVar(&c.Dataplane, "dataplane", c.Dataplane, "builtin: this process is the ingress; envoy: an Envoy ingress run by weft-dp (run --proxy-type ingress --zone Z --name N) is, this process keeps the ZoneIngress")
	fs.StringVar(&c.Address, "address", c.Address, "listen address of the built-in ingress (host:port)")
	fs.StringVar(&c.AdvertisedAddress, "advertised-address", c.AdvertisedAddress, "address other zones dial (a load balancer or NAT address); empty: the listen address, or the host's first non-loopback address")
	fs.Func("advertised-port", "port other zones dial (default: the listen port)", func(v string) error {
		p, err := strconv.ParseUint(v, 10, 16)
		c.AdvertisedPort = uint32(p)
		return err
	})
	fs.StringVar(&c.AdminAddress, "admin-address", c.AdminAddress, "admin listen address (/healthz, /readyz, /metrics; empty: off)")
	fs.IntVar(&c.MaxConnections, "max-connections", c.MaxConnections, "connections open through the built-in ingress at most; more are closed at accept")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "close a connection with no byte in either direction for this long")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "on shutdown, how long open connections may finish before they are cut")
	fs.IntVar(&c.MaxServices, "max-services", c.MaxServices, "entries of the ZoneIngress availableServices at most (over all meshes)")
	fs.IntVar(&c.MaxEndpoints, "max-endpoints", c.MaxEndpoints, "local endpoints held in the built-in ingress's routing table at most")
	fs.StringVar(&c.XDSServer, "xds-server", c.XDSServer, "this zone's xds-server (host:port); the built-in ingress gets its routes there over ADS (required with --dataplane=builtin)")
	fs.StringVar(&c.TokenFile, "token-file", c.TokenFile, "file holding this ingress's token (weftctl generate ingress-token --zone --name; required with --dataplane=builtin)")
	fs.StringVar(&c.CPCAFile, "cp-ca-file", c.CPCAFile, "control-plane CA (PEM) verifying the xds-server's TLS certificate; empty: plaintext (xds-server --insecure-dev)")
	c.Etcd.RegisterFlags(fs)
	c.Logging.RegisterFlags(fs)
}

// App is an ingress-manager with its sockets bound.
type App struct {
	cfg     Config
	log     *slog.Logger
	cli     *clientv3.Client
	ownsCli bool
	st      *store.Store
	inf     *store.Informers
	reg     *prometheus.Registry
	keeper  *zoneingress.Keeper
	proxy   *proxy.Server
	ads     *adsclient.Client
	admin   *telemetry.Admin
}

// New validates cfg, connects to etcd and binds the ingress and admin
// sockets.
func New(cfg Config) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, log: cfg.Logger, reg: cfg.Registry}
	if a.log == nil {
		a.log = cfg.Logging.NewLogger(os.Stderr)
	}
	a.log = a.log.With("service", ServiceName, "zone", cfg.Zone)
	if a.reg == nil {
		a.reg = telemetry.NewRegistry()
	}
	var err error
	if a.cli, a.ownsCli, err = cfg.Etcd.Connect(); err != nil {
		return nil, err
	}
	fail := func(err error) (*App, error) {
		a.close()
		return nil, err
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	a.st = store.New(a.cli, store.WithLogger(a.log), store.WithMetrics(a.reg), store.WithTracerProvider(tp))
	a.inf = store.NewInformers(a.st)
	host, port, _ := net.SplitHostPort(cfg.Address)
	if cfg.Dataplane == DataplaneBuiltin {
		a.proxy, err = proxy.Listen(cfg.Address, proxy.Config{
			MaxConnections: cfg.MaxConnections, IdleTimeout: cfg.IdleTimeout, DrainTimeout: cfg.DrainTimeout,
			Log: a.log, Registerer: a.reg,
		})
		if err != nil {
			return fail(fmt.Errorf("--address: %w", err))
		}
		_, port, _ = net.SplitHostPort(a.proxy.Addr().String())
		tok := cfg.Token
		if tok == "" {
			b, err := os.ReadFile(cfg.TokenFile)
			if err != nil {
				return fail(fmt.Errorf("--token-file: %w", err))
			}
			tok = strings.TrimSpace(string(b))
		}
		warned := false
		a.ads, err = adsclient.New(adsclient.Config{
			Server: cfg.XDSServer, CAFile: cfg.CPCAFile, Token: tok, Zone: cfg.Zone, Name: cfg.Name,
			MaxEndpoints: cfg.MaxEndpoints, Log: a.log.With("component", "ads"),
			Apply: func(t *proxy.Table, dropped int) {
				if dropped > 0 && !warned {
					warned = true
					a.log.Warn("the ingress routing table is full: some local endpoints cannot be reached from other zones; raise --max-endpoints", "dropped", dropped, "max", cfg.MaxEndpoints)
				}
				a.proxy.SetTable(t)
			},
		})
		if err != nil {
			return fail(fmt.Errorf("--xds-server: %w", err))
		}
	}
	p, _ := strconv.Atoi(port)
	nw := &meshv1.ZoneIngress_Networking{Address: host, Port: uint32(p), AdvertisedAddress: cfg.AdvertisedAddress, AdvertisedPort: cfg.AdvertisedPort}
	if nw.Address == "" || isUnspecified(nw.Address) {
		if nw.Address = cfg.AdvertisedAddress; nw.Address == "" {
			nw.Address = hostAddress()
			a.log.Info("the ingress listens on every address: advertising the host's first non-loopback address; set --advertised-address to choose", "address", nw.Address)
		}
	}
	if nw.AdvertisedAddress == "" {
		nw.AdvertisedAddress = nw.Address
	}
	if nw.AdvertisedPort == 0 {
		nw.AdvertisedPort = nw.Port
	}
	a.keeper = zoneingress.New(zoneingress.Config{
		Store: a.st, Dataplanes: a.inf.For(resource.DataplaneType), Name: cfg.Name, Zone: cfg.Zone, Networking: nw,
		MaxServices: cfg.MaxServices, Log: a.log, Registerer: a.reg,
	})
	if cfg.AdminAddress != "" {
		if a.admin, err = telemetry.NewAdmin(cfg.AdminAddress, a.reg, a.log); err != nil {
			return fail(err)
		}
		a.admin.AddCheck("etcd", telemetry.EtcdCheck(a.cli))
		if a.ads != nil {
			a.admin.AddCheck("xds", func(context.Context) error {
				select {
				case <-a.ads.Synced():
					return nil
				default:
					return errors.New("no routing configuration from the xds-server yet")
				}
			})
		}
		a.admin.AddCheck("zoneingress", func(context.Context) error {
			select {
			case <-a.keeper.Synced():
				return nil
			default:
				return errors.New("this zone's ZoneIngress has not been written yet")
			}
		})
	}
	a.log.Info("ingress-manager started", "dataplane", cfg.Dataplane, "address", a.Addr(),
		"advertised", net.JoinHostPort(nw.AdvertisedAddress, strconv.Itoa(int(nw.AdvertisedPort))), "admin", a.AdminAddr())
	return a, nil
}

func isUnspecified(host string) bool {
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsUnspecified()
}

// hostAddress is the first non-loopback unicast address of the host,
// 127.0.0.1 when there is none.
func hostAddress() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.IsGlobalUnicast() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	return "127.0.0.1"
}

// Addr is the built-in ingress's bound address ("" with --dataplane=envoy).
func (a *App) Addr() string {
	if a.proxy == nil {
		return ""
	}
	return a.proxy.Addr().String()
}

// AdminAddr is the admin server's bound address ("" when disabled).
func (a *App) AdminAddr() string {
	if a.admin == nil {
		return ""
	}
	return a.admin.Addr()
}

// Store is the resource store the app works on.
func (a *App) Store() *store.Store { return a.st }

// Registry is the Prometheus registry the app reports to.
func (a *App) Registry() *prometheus.Registry { return a.reg }

// Synced is closed once the ZoneIngress has been written.
func (a *App) Synced() <-chan struct{} { return a.keeper.Synced() }

// RoutesSynced is closed once the built-in data path applied its first
// configuration from the xds-server (nil with --dataplane=envoy).
func (a *App) RoutesSynced() <-chan struct{} {
	if a.ads == nil {
		return nil
	}
	return a.ads.Synced()
}

// Proxy is the built-in data path (nil with --dataplane=envoy).
func (a *App) Proxy() *proxy.Server { return a.proxy }

func (a *App) close() {
	if a.proxy != nil {
		a.proxy.Close()
	}
	if a.ads != nil {
		a.ads.Close()
	}
	if a.ownsCli && a.cli != nil {
		a.cli.Close()
	}
}

// Run serves until ctx ends or a component stops (run.Group's policy).
func (a *App) Run(ctx context.Context) error {
	defer a.close()
	g := run.New(a.log)
	g.Add("zoneingress", a.keeper.Run)
	if a.proxy != nil {
		g.Add("xds", a.ads.Run)
		g.Add("ingress", a.proxy.Serve)
	}
	if a.admin != nil {
		g.Add("admin", a.admin.Serve)
	}
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

// Main is the ingress-manager program: flags, WEFT_INGRESS_MANAGER_*
// environment overrides, tracing, signals (run.Main). It returns the exit
// code.
func Main(ctx context.Context, args []string, stderr io.Writer) int {
	cfg := Default()
	return run.Main(ctx, args, stderr, run.Program{Name: ServiceName, Flags: cfg.RegisterFlags, Logging: &cfg.Logging, Validate: cfg.Validate,
		Start: func(_ context.Context, env run.Env) (run.Runner, error) {
			cfg.Logger, cfg.TracerProvider = env.Log, env.Tracing.Provider
			return New(cfg)
		}})
}
