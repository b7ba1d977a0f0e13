// Package app wires the dns-server: configuration, the etcd store, the VIP
// allocator, the `.mesh` table and its DNS listeners, and the admin HTTP
// server (/healthz, /readyz, /metrics).
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/weftmesh/weft/dns-server/internal/dnsserver"
	"github.com/weftmesh/weft/dns-server/internal/dnsview"
	"github.com/weftmesh/weft/dns-server/internal/vip"
	"github.com/weftmesh/weft/pkg/config"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/run"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/telemetry"
)

// ServiceName is used for env overrides (WEFT_DNS_SERVER_*) and telemetry.
const ServiceName = "dns-server"

// Config is the dns-server's configuration.
type Config struct {
	// Etcd.Client, when set, is used instead of dialling (weftctl up, tests).
	Etcd config.Etcd
	// Address is the DNS listen address, UDP and TCP on the same port.
	Address string
	// AdminAddress serves /healthz, /readyz and /metrics; empty disables it.
	AdminAddress string
	// UDPReaders is the number of SO_REUSEPORT UDP sockets (default: CPUs).
	UDPReaders int
	// TTL of `.mesh` answers.
	TTL time.Duration
	// Upstreams resolve every other name (host or host:port). Empty: the
	// nameservers of ResolvConf.
	Upstreams []string
	// ResolvConf is read for upstreams when Upstreams is empty; "" disables
	// it, and then other names are REFUSED.
	ResolvConf     string
	ForwardTimeout time.Duration
	MaxForwards    int
	MaxRequestSize int
	EDNSSize       int
	// ForwardAllow are CIDRs (or addresses) whose queries outside .mesh are
	// forwarded, besides known Dataplane addresses; others get REFUSED.
	ForwardAllow []string
	// VIP allocation.
	Allocate       bool
	VIPCIDR        string
	VIPGracePeriod time.Duration
	Zone           string
	Logging        telemetry.Logging
	// Pprof serves /debug/pprof/ on the admin address.
	Pprof bool

	// Set by programs, not flags.
	// Logger, when set, is used instead of building one from Logging.
	Logger *slog.Logger
	// Registry, when set, receives the metrics (default: a new one).
	Registry *prometheus.Registry
	// Now is the allocator's clock (tests inject one).
	Now func() time.Time
	// VIPResync overrides the allocator's resync period (tests).
	VIPResync time.Duration
	// TracerProvider makes this service's spans (nil: none). Set by
	// run.Main or weftctl up, never the global provider.
	TracerProvider trace.TracerProvider
}

// Default returns the default configuration.
func Default() Config {
	return Config{
		Etcd:           config.Etcd{Endpoints: config.StringList{"127.0.0.1:2379"}},
		Address:        "127.0.0.1:5653",
		AdminAddress:   "127.0.0.1:5654",
		UDPReaders:     runtime.GOMAXPROCS(0),
		TTL:            30 * time.Second,
		ResolvConf:     "/etc/resolv.conf",
		ForwardTimeout: 2 * time.Second,
		MaxForwards:    1024,
		MaxRequestSize: 4096,
		EDNSSize:       1232,
		ForwardAllow:   []string{"127.0.0.0/8", "::1/128"},
		Allocate:       true,
		VIPCIDR:        vip.DefaultCIDR,
		VIPGracePeriod: vip.DefaultGracePeriod,
		Logging:        telemetry.Logging{Level: "info", Format: "text"},
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	errs := []error{c.Etcd.Validate(), c.Logging.Validate()}
	if _, _, err := net.SplitHostPort(c.Address); err != nil {
		errs = append(errs, fmt.Errorf("--address: %w", err))
	}
	if c.AdminAddress != "" {
		if _, _, err := net.SplitHostPort(c.AdminAddress); err != nil {
			errs = append(errs, fmt.Errorf("--admin-address: %w", err))
		}
	}
	if c.TTL < time.Second || c.TTL > 24*time.Hour {
		errs = append(errs, fmt.Errorf("--ttl: %s must be between 1s and 24h", c.TTL))
	}
	if c.UDPReaders < 1 || c.UDPReaders > 64 {
		errs = append(errs, fmt.Errorf("--udp-readers: %d must be between 1 and 64", c.UDPReaders))
	}
	if c.ForwardTimeout <= 0 {
		errs = append(errs, errors.New("--forward-timeout: must be positive"))
	}
	if c.MaxForwards < 1 {
		errs = append(errs, errors.New("--max-forwards: must be at least 1"))
	}
	if c.MaxRequestSize < 512 || c.MaxRequestSize > 65535 {
		errs = append(errs, fmt.Errorf("--max-request-size: %d must be between 512 and 65535", c.MaxRequestSize))
	}
	if c.EDNSSize < 512 || c.EDNSSize > 65535 {
		errs = append(errs, fmt.Errorf("--edns-size: %d must be between 512 and 65535", c.EDNSSize))
	}
	if p, err := netip.ParsePrefix(c.VIPCIDR); err != nil || !p.Addr().Is4() {
		errs = append(errs, fmt.Errorf("--vip-cidr: %q must be an IPv4 CIDR", c.VIPCIDR))
	}
	if c.VIPGracePeriod <= 0 {
		errs = append(errs, errors.New("--vip-grace-period: must be positive"))
	}
	if _, err := parsePrefixes(c.ForwardAllow); err != nil {
		errs = append(errs, fmt.Errorf("--forward-allow: %w", err))
	}
	for _, u := range c.Upstreams {
		if _, err := upstreamAddr(u); err != nil {
			errs = append(errs, fmt.Errorf("--upstreams: %w", err))
		}
	}
	return errors.Join(errs...)
}

// parsePrefixes parses CIDRs or single addresses.
func parsePrefixes(l []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(l))
	for _, v := range l {
		if a, err := netip.ParseAddr(v); err == nil {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR or an address", v)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func upstreamAddr(u string) (string, error) {
	if _, err := netip.ParseAddr(u); err == nil {
		return net.JoinHostPort(u, "53"), nil
	}
	if _, port, err := net.SplitHostPort(u); err != nil || port == "" {
		return "", fmt.Errorf("%q is not an address or host:port", u)
	}
	return u, nil
}

// RegisterFlags binds the configuration to flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Address, "address", c.Address, "DNS listen address (UDP and TCP, same port); loopback by default: set the node or pod address to serve workloads")
	fs.StringVar(&c.AdminAddress, "admin-address", c.AdminAddress, "admin listen address (/healthz, /readyz, /metrics; empty: off); loopback by default: set e.g. :5654 for probes and Prometheus")
	fs.IntVar(&c.UDPReaders, "udp-readers", c.UDPReaders, "UDP sockets (SO_REUSEPORT) reading queries in parallel")
	fs.DurationVar(&c.TTL, "ttl", c.TTL, "TTL of .mesh answers")
	fs.Var((*config.StringList)(&c.Upstreams), "upstreams", "resolvers for names outside .mesh, comma-separated ip or host:port (default: --resolv-conf)")
	fs.StringVar(&c.ResolvConf, "resolv-conf", c.ResolvConf, "file whose nameservers are the upstreams when --upstreams is empty (empty: none, other names are REFUSED)")
	fs.DurationVar(&c.ForwardTimeout, "forward-timeout", c.ForwardTimeout, "time limit of one forwarded query, all upstreams together")
	fs.IntVar(&c.MaxForwards, "max-forwards", c.MaxForwards, "forwarded queries in flight at most; more get SERVFAIL")
	fs.IntVar(&c.MaxRequestSize, "max-request-size", c.MaxRequestSize, "requests larger than this many bytes are dropped")
	fs.IntVar(&c.EDNSSize, "edns-size", c.EDNSSize, "UDP payload size advertised in EDNS0 answers, and the largest UDP answer sent")
	fs.Var((*config.StringList)(&c.ForwardAllow), "forward-allow", "comma-separated CIDRs whose queries outside .mesh are forwarded, besides Dataplane addresses (others: REFUSED)")
	fs.BoolVar(&c.Allocate, "vip-allocation", c.Allocate, "run the VIP allocator in this replica")
	fs.StringVar(&c.VIPCIDR, "vip-cidr", c.VIPCIDR, "IPv4 CIDR VIPs are allocated from")
	fs.DurationVar(&c.VIPGracePeriod, "vip-grace-period", c.VIPGracePeriod, "how long a VIP stays reserved after its service is gone")
	fs.StringVar(&c.Zone, "zone", c.Zone, "this zone's name; its own ZoneIngress is not a source of remote services")
	fs.BoolVar(&c.Pprof, "pprof", c.Pprof, "serve Go profiles at /debug/pprof/ on the admin address")
	c.Etcd.RegisterFlags(fs)
	c.Logging.RegisterFlags(fs)
}

// App is a dns-server instance with its sockets bound.
type App struct {
	cfg     Config
	log     *slog.Logger
	cli     *clientv3.Client
	ownsCli bool
	st      *store.Store
	inf     *store.Informers
	reg     *prometheus.Registry
	table   *dnsserver.Table
	handler *dnsserver.Handler
	dns     *dnsserver.Server
	alloc   *vip.Allocator
	admin   *telemetry.Admin
	ready   atomic.Bool
}

// New validates cfg, connects to etcd and binds the DNS and admin sockets.
func New(cfg Config) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, log: cfg.Logger, reg: cfg.Registry}
	if a.log == nil {
		a.log = cfg.Logging.NewLogger(os.Stderr)
	}
	a.log = a.log.With("service", ServiceName)
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
	// One informer per type for the process: the table and the VIP
	// allocator share the Dataplane and VirtualIP caches and watches.
	a.inf = store.NewInformers(a.st)
	upstreams, err := a.upstreams()
	if err != nil {
		return fail(err)
	}
	forwardAllow, err := parsePrefixes(cfg.ForwardAllow)
	if err != nil {
		return fail(fmt.Errorf("--forward-allow: %w", err))
	}
	a.table = dnsserver.NewTable(uint32(cfg.TTL / time.Second))
	a.handler = dnsserver.NewHandler(a.table, dnsserver.Options{
		Upstreams: upstreams, ForwardTimeout: cfg.ForwardTimeout, MaxForwards: cfg.MaxForwards,
		EDNSSize: uint16(cfg.EDNSSize), MaxRequestSize: cfg.MaxRequestSize, Logger: a.log, ForwardAllow: forwardAllow,
		Metrics: dnsserver.NewMetrics(a.reg, a.table),
	})
	if cfg.Allocate {
		a.alloc, err = vip.New(a.st, vip.Config{
			CIDR: netip.MustParsePrefix(cfg.VIPCIDR), GracePeriod: cfg.VIPGracePeriod, Zone: cfg.Zone,
			Now: cfg.Now, Logger: a.log, Registerer: a.reg, Resync: cfg.VIPResync, Informers: a.inf,
		})
		if err != nil {
			return fail(err)
		}
	}
	a.dns, err = dnsserver.Listen(context.Background(), a.handler, cfg.Address, cfg.UDPReaders)
	if err != nil {
		return fail(err)
	}
	if cfg.AdminAddress != "" {
		if a.admin, err = telemetry.NewAdmin(cfg.AdminAddress, a.reg, a.log); err != nil {
			return fail(err)
		}
		a.admin.AddCheck("etcd", telemetry.EtcdCheck(a.cli))
		if cfg.Pprof {
			a.admin.Handle("GET /debug/pprof/", http.HandlerFunc(pprof.Index))
			a.admin.Handle("GET /debug/pprof/profile", http.HandlerFunc(pprof.Profile))
			a.admin.Handle("GET /debug/pprof/trace", http.HandlerFunc(pprof.Trace))
		}
		a.admin.AddCheck("dns-table", func(context.Context) error {
			if !a.Ready() {
				return errors.New("the name table has not synced with etcd yet")
			}
			return nil
		})
	}
	a.log.Info("dns-server listening", "udp", a.dns.UDPAddr().String(), "tcp", a.dns.TCPAddr().String(),
		"admin", a.AdminAddr(), "upstreams", upstreams, "vipAllocation", cfg.Allocate)
	return a, nil
}

func (a *App) upstreams() ([]string, error) {
	var out []string
	for _, u := range a.cfg.Upstreams {
		addr, err := upstreamAddr(u)
		if err != nil {
			return nil, err
		}
		out = append(out, addr)
	}
	if len(out) > 0 || a.cfg.ResolvConf == "" {
		return out, nil
	}
	rc, err := dns.ClientConfigFromFile(a.cfg.ResolvConf)
	if err != nil {
		a.log.Warn("no upstream resolvers: cannot read resolv.conf; names outside .mesh are refused", "path", a.cfg.ResolvConf, "error", err)
		return nil, nil
	}
	for _, s := range rc.Servers {
		out = append(out, net.JoinHostPort(s, rc.Port))
	}
	return out, nil
}

// Addr is the bound DNS address (host:port, UDP and TCP alike).
func (a *App) Addr() string { return a.dns.UDPAddr().String() }

// UDPAddr, TCPAddr and AdminAddr are the bound addresses ("" for a
// disabled admin server).
func (a *App) UDPAddr() string { return a.dns.UDPAddr().String() }
func (a *App) TCPAddr() string { return a.dns.TCPAddr().String() }
func (a *App) AdminAddr() string {
	if a.admin == nil {
		return ""
	}
	return a.admin.Addr()
}

// Store is the resource store the app works on.
func (a *App) Store() *store.Store { return a.st }

// Table is the live name table (for tests and tools).
func (a *App) Table() *dnsserver.Table { return a.table }

// Registry is the Prometheus registry the app reports to.
func (a *App) Registry() *prometheus.Registry { return a.reg }

// Ready reports whether the table has its first full view.
func (a *App) Ready() bool { return a.ready.Load() }

func (a *App) close() {
	if a.dns != nil {
		a.dns.Close()
	}
	if a.ownsCli && a.cli != nil {
		a.cli.Close()
	}
}

// Run serves until ctx ends or a component stops (run.Group's policy).
func (a *App) Run(ctx context.Context) error {
	defer a.close()
	g := run.New(a.log)
	g.Add("table", func(ctx context.Context) error {
		return dnsserver.Follow(ctx, a.inf.For(resource.VirtualIPType, dnsview.VirtualIP), a.inf.For(resource.DataplaneType, dnsview.Dataplane), a.table, func() {
			a.ready.Store(true)
			a.log.Info("dns table synced", "names", a.table.Size())
		})
	})
	if a.alloc != nil {
		g.Add("vip-allocator", a.alloc.Run)
	}
	g.Add("dns", a.dns.Serve)
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

// Main is the dns-server program: flags, WEFT_DNS_SERVER_* environment
// overrides, tracing, signals (run.Main). It returns the exit code.
func Main(ctx context.Context, args []string, stderr io.Writer) int {
	cfg := Default()
	return run.Main(ctx, args, stderr, run.Program{Name: ServiceName, Flags: cfg.RegisterFlags, Logging: &cfg.Logging, Validate: cfg.Validate,
		Start: func(_ context.Context, env run.Env) (run.Runner, error) {
			cfg.Logger, cfg.TracerProvider = env.Log, env.Tracing.Provider
			return New(cfg)
		}})
}
