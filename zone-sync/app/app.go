// Package app wires zone-sync together: configuration, etcd, the global
// gRPC server or the zone's client, and the admin server. Tests and
// `weftctl up` use New and Run.
package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/weftmesh/weft/pkg/config"
	"github.com/weftmesh/weft/pkg/cptls"
	"github.com/weftmesh/weft/pkg/grpcx"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/run"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/telemetry"
	"github.com/weftmesh/weft/pkg/token"
	syncv1 "github.com/weftmesh/weft/proto/gen/go/weft/sync/v1"

	"github.com/weftmesh/weft/zone-sync/internal/global"
	"github.com/weftmesh/weft/zone-sync/internal/protocol"
	"github.com/weftmesh/weft/zone-sync/internal/zone"
)

// Service is the name used for environment overrides (WEFT_ZONE_SYNC_*).
const Service = "zone-sync"

// Version is the build version sent in Hello.
var Version = "dev"

// Modes.
const (
	ModeGlobal = "global"
	ModeZone   = "zone"
)

// Config is zone-sync's configuration.
type Config struct {
	// Mode is "global" (serve zones) or "zone" (link this zone to global).
	Mode string
	// Address is where global serves zones (gRPC).
	Address      string
	AdminAddress string
	InstanceID   string

	// Zone mode.
	Zone          string
	GlobalAddress string
	TokenFile     string
	// Token is the zone token itself (in-process use); TokenFile wins.
	Token               string
	ReconnectMinBackoff time.Duration
	ReconnectMaxBackoff time.Duration
	// LeaderElection: with several zone-sync replicas in a zone, one holds
	// the stream to global.
	LeaderElection bool
	LeaderTTL      time.Duration

	// Global mode.
	LeaseTTL        time.Duration
	Retention       time.Duration
	JanitorInterval time.Duration

	// TLS: global serves with cert/key; a zone verifies global with the CA
	// (system roots when empty). InsecureDev allows plaintext gRPC.
	TLSCertFile   string
	TLSKeyFile    string
	TLSCAFile     string
	TLSServerName string
	InsecureDev   bool
	// ServerTLS / ClientTLS, when set, replace the files (in-process use).
	ServerTLS *tls.Config
	ClientTLS *tls.Config

	Etcd       config.Etcd
	Encryption config.Encryption
	Logging    telemetry.Logging
	// Logger, when set, is used instead of one built from Logging.
	Logger *slog.Logger
	// Registry, when set, receives the metrics (else a new one).
	Registry *prometheus.Registry
	// TracerProvider makes this service's spans (nil: none). Set by
	// run.Main or weftctl up, never the global provider.
	TracerProvider trace.TracerProvider
}

// Default returns the defaults.
func Default() Config {
	host, _ := os.Hostname()
	return Config{
		Mode: ModeGlobal, Address: ":5685", AdminAddress: "127.0.0.1:5686", InstanceID: host,
		ReconnectMinBackoff: 100 * time.Millisecond, ReconnectMaxBackoff: 10 * time.Second,
		LeaseTTL: 10 * time.Second, JanitorInterval: time.Minute, LeaderElection: true, LeaderTTL: 10 * time.Second,
		Etcd:    config.Etcd{Endpoints: config.StringList{"127.0.0.1:2379"}},
		Logging: telemetry.Logging{Level: "info", Format: "text"},
	}
}

// RegisterFlags binds the configuration to flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Mode, "mode", c.Mode, "global (serve zones) or zone (link this zone to global)")
	fs.StringVar(&c.Address, "address", c.Address, "global: gRPC address zones connect to")
	fs.StringVar(&c.AdminAddress, "admin-address", c.AdminAddress, "admin HTTP address (/healthz /readyz /metrics); loopback by default: set e.g. :5686 for probes and Prometheus")
	fs.StringVar(&c.InstanceID, "instance-id", c.InstanceID, "this instance's id (ZoneInsight)")
	fs.StringVar(&c.Zone, "zone", c.Zone, "zone: this zone's name (a Zone resource on global)")
	fs.StringVar(&c.GlobalAddress, "global-address", c.GlobalAddress, "zone: global zone-sync address (host:port)")
	fs.StringVar(&c.TokenFile, "token-file", c.TokenFile, "zone: file holding the zone token (re-read on every connect)")
	fs.DurationVar(&c.ReconnectMinBackoff, "reconnect-min-backoff", c.ReconnectMinBackoff, "zone: first wait before reconnecting")
	fs.DurationVar(&c.ReconnectMaxBackoff, "reconnect-max-backoff", c.ReconnectMaxBackoff, "zone: longest wait between reconnects")
	fs.BoolVar(&c.LeaderElection, "leader-election", c.LeaderElection, "zone: replicas elect one (through the zone's etcd) to hold the stream to global")
	fs.DurationVar(&c.LeaderTTL, "leader-ttl", c.LeaderTTL, "zone: how long a dead leader keeps the lead")
	fs.DurationVar(&c.LeaseTTL, "zone-lease-ttl", c.LeaseTTL, "global: a zone whose stream died shows offline after this")
	fs.DurationVar(&c.Retention, "zone-retention", c.Retention, "global: delete a zone's resources after it is offline this long (0: keep until the Zone is deleted)")
	fs.DurationVar(&c.JanitorInterval, "janitor-interval", c.JanitorInterval, "global: how often deleted or expired zones' resources are cleaned up")
	fs.StringVar(&c.TLSCertFile, "tls-cert-file", c.TLSCertFile, "global: serving certificate (PEM)")
	fs.StringVar(&c.TLSKeyFile, "tls-key-file", c.TLSKeyFile, "global: serving key (PEM)")
	fs.StringVar(&c.TLSCAFile, "tls-ca-file", c.TLSCAFile, "zone: CA bundle verifying global's certificate (default: system roots)")
	fs.StringVar(&c.TLSServerName, "tls-server-name", c.TLSServerName, "zone: name to verify in global's certificate (default: the host of --global-address)")
	fs.BoolVar(&c.InsecureDev, "insecure-dev", c.InsecureDev, "plaintext gRPC without TLS: development only, never in production")
	c.Etcd.RegisterFlags(fs)
	c.Encryption.RegisterFlags(fs)
	c.Logging.RegisterFlags(fs)
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	switch c.Mode {
	case ModeGlobal:
		if c.Address == "" {
			errs = append(errs, errors.New("address: required in global mode"))
		}
		if !c.InsecureDev && c.ServerTLS == nil && (c.TLSCertFile == "" || c.TLSKeyFile == "") {
			errs = append(errs, errors.New("tls-cert-file and tls-key-file are required in global mode (or --insecure-dev for development)"))
		}
		if c.LeaseTTL < time.Second {
			errs = append(errs, errors.New("zone-lease-ttl: at least 1s"))
		}
		if c.Retention < 0 {
			errs = append(errs, errors.New("zone-retention: must not be negative"))
		}
	case ModeZone:
		if !resource.IsLabel(c.Zone) {
			errs = append(errs, fmt.Errorf("zone: %q is not a valid zone name (a DNS label)", c.Zone))
		}
		if c.GlobalAddress == "" {
			errs = append(errs, errors.New("global-address: required in zone mode"))
		}
		if c.TokenFile == "" && c.Token == "" {
			errs = append(errs, errors.New("token-file: required in zone mode"))
		}
		if c.ReconnectMinBackoff <= 0 || c.ReconnectMaxBackoff < c.ReconnectMinBackoff {
			errs = append(errs, errors.New("reconnect-min-backoff must be positive and at most reconnect-max-backoff"))
		}
	default:
		errs = append(errs, fmt.Errorf("mode: %q is not global or zone", c.Mode))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("tls-cert-file and tls-key-file go together"))
	}
	if err := c.Etcd.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Logging.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// App is a running zone-sync.
type App struct {
	cfg     Config
	log     *slog.Logger
	cli     *clientv3.Client
	ownsCli bool
	st      *store.Store
	reg     *prometheus.Registry
	admin   *telemetry.Admin
	ln      net.Listener
	srv     *grpc.Server
	global  *global.Server
	zone    *zone.Client
	metrics *protocol.Metrics
}

// New connects to etcd and binds the listeners; Run serves.
func New(cfg Config) (_ *App, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, log: cfg.Logger, reg: cfg.Registry}
	if a.log == nil {
		a.log = cfg.Logging.NewLogger(os.Stderr)
	}
	a.log = a.log.With("service", Service, "mode", cfg.Mode)
	if a.reg == nil {
		a.reg = telemetry.NewRegistry()
	}
	keys, err := cfg.Encryption.Load()
	if err != nil {
		return nil, fmt.Errorf("encryption keys: %w", err)
	}
	a.cli, a.ownsCli, err = cfg.Etcd.Connect()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	tp := cfg.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	a.st = store.New(a.cli, store.WithKeyring(keys), store.WithLogger(a.log), store.WithMetrics(a.reg), store.WithTracerProvider(tp))
	metrics := protocol.NewMetrics(a.reg)
	a.metrics = metrics
	if a.admin, err = telemetry.NewAdmin(cfg.AdminAddress, a.reg, a.log); err != nil {
		return nil, err
	}
	a.admin.AddCheck("etcd", telemetry.EtcdCheck(a.cli))
	if cfg.InsecureDev {
		a.log.Warn("!!! --insecure-dev: zone-sync runs WITHOUT TLS; tokens and secrets travel in plaintext. Development only. !!!")
	}

	switch cfg.Mode {
	case ModeGlobal:
		creds := insecure.NewCredentials()
		if !cfg.InsecureDev || cfg.ServerTLS != nil || cfg.TLSCertFile != "" {
			tc, err := serverTLS(cfg)
			if err != nil {
				return nil, err
			}
			creds = credentials.NewTLS(tc)
		}
		a.global = global.New(global.Config{Store: a.st, Keys: token.New(a.st), Metrics: metrics, Log: a.log, TracerProvider: tp,
			InstanceID: cfg.InstanceID, LeaseTTL: cfg.LeaseTTL, Retention: cfg.Retention, JanitorInterval: cfg.JanitorInterval})
		// The sync stream lives as long as the zone's link: no span for it.
		opts := append(grpcx.ServerOptions(a.log, a.reg, Service, nil, nil,
			grpcx.WithTracerProvider(tp), grpcx.WithoutSpans(syncv1.ZoneSyncService_Sync_FullMethodName)),
			grpc.Creds(creds),
			grpc.MaxRecvMsgSize(protocol.MaxMessageSize), grpc.MaxSendMsgSize(protocol.MaxMessageSize),
			grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
			grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}))
		a.srv = grpc.NewServer(opts...)
		syncv1.RegisterZoneSyncServiceServer(a.srv, a.global)
		if a.ln, err = net.Listen("tcp", cfg.Address); err != nil {
			return nil, fmt.Errorf("listen %s: %w", cfg.Address, err)
		}
		ready := a.global.Ready()
		a.admin.AddCheck("cache", func(context.Context) error {
			select {
			case <-ready:
				return nil
			default:
				return errors.New("resource cache not loaded yet")
			}
		})
	case ModeZone:
		creds := insecure.NewCredentials()
		if !cfg.InsecureDev || cfg.ClientTLS != nil || cfg.TLSCAFile != "" {
			tc, err := clientTLS(cfg)
			if err != nil {
				return nil, err
			}
			creds = credentials.NewTLS(tc)
		}
		tokenFn := func() (string, error) { return cfg.Token, nil }
		if cfg.TokenFile != "" {
			tokenFn = func() (string, error) {
				b, err := os.ReadFile(cfg.TokenFile)
				if err != nil {
					return "", err
				}
				if len(b) > token.MaxTokenSize {
					return "", fmt.Errorf("%s: larger than %d bytes", cfg.TokenFile, token.MaxTokenSize)
				}
				return strings.TrimSpace(string(b)), nil
			}
		}
		if _, err := tokenFn(); err != nil {
			return nil, fmt.Errorf("token-file: %w", err)
		}
		a.zone = zone.New(zone.Config{Store: a.st, Zone: cfg.Zone, GlobalAddress: cfg.GlobalAddress, Token: tokenFn,
			DialOptions: append(grpcx.ClientOptions(grpcx.WithTracerProvider(tp), grpcx.WithoutSpans(syncv1.ZoneSyncService_Sync_FullMethodName)),
				grpc.WithTransportCredentials(creds),
				grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true})),
			Metrics: metrics, Log: a.log, InstanceID: cfg.InstanceID, Version: Version, TracerProvider: tp,
			MinBackoff: cfg.ReconnectMinBackoff, MaxBackoff: cfg.ReconnectMaxBackoff,
			LeaderElection: cfg.LeaderElection, LeaderTTL: cfg.LeaderTTL})
	}
	return a, nil
}

func serverTLS(cfg Config) (*tls.Config, error) {
	if cfg.ServerTLS != nil {
		return cfg.ServerTLS, nil
	}
	// Re-read when the files change, so certificates rotate without a
	// restart.
	tc, err := cptls.FromFiles(cfg.TLSCertFile, cfg.TLSKeyFile, "")
	if err != nil {
		return nil, fmt.Errorf("tls-cert-file/tls-key-file: %w", err)
	}
	return tc, nil
}

func clientTLS(cfg Config) (*tls.Config, error) {
	if cfg.ClientTLS != nil {
		return cfg.ClientTLS, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.TLSServerName}
	if cfg.TLSCAFile != "" {
		pem, err := os.ReadFile(cfg.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls-ca-file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, errors.New("tls-ca-file: no certificates found")
		}
	}
	return tc, nil
}

// Addr is the address global serves zones on ("" in zone mode).
func (a *App) Addr() string {
	if a.ln == nil {
		return ""
	}
	return a.ln.Addr().String()
}

// AdminAddr is the admin server's address.
func (a *App) AdminAddr() string { return a.admin.Addr() }

// Metrics are the app's zone-sync metrics.
func (a *App) Metrics() *protocol.Metrics { return a.metrics }

// Store is the app's resource store.
func (a *App) Store() *store.Store { return a.st }

// Connected reports, in zone mode, whether the stream to global is up.
func (a *App) Connected() bool { return a.zone != nil && a.zone.Connected() }

// LastError is, in zone mode, why the last stream to global ended.
func (a *App) LastError() error {
	if a.zone == nil {
		return nil
	}
	return a.zone.LastError()
}

func (a *App) close() {
	if a.ln != nil {
		a.ln.Close()
	}
	if a.ownsCli && a.cli != nil {
		a.cli.Close()
	}
}

// Run serves until ctx ends or a component stops (run.Group's policy),
// then shuts everything down and returns.
func (a *App) Run(ctx context.Context) error {
	defer a.close()
	g := run.New(a.log)
	g.Add("admin", a.admin.Serve)
	switch a.cfg.Mode {
	case ModeGlobal:
		g.Add("cache", a.global.Run)
		// Sync streams never end on their own: run.GRPC closes them after
		// run.Drain.
		g.Add("grpc", run.GRPC(a.srv, a.ln))
		a.log.Info("serving zones", "address", a.Addr(), "admin", a.AdminAddr())
	case ModeZone:
		g.Add("zone", a.zone.Run)
		a.log.Info("linking zone to global", "zone", a.cfg.Zone, "global", a.cfg.GlobalAddress, "admin", a.AdminAddr())
	}
	return g.Run(ctx)
}

// Main is the command: parse flags, run until a signal or ctx ends
// (run.Main). It returns the exit code.
func Main(ctx context.Context, args []string, stderr io.Writer) int {
	cfg := Default()
	return run.Main(ctx, args, stderr, run.Program{Name: Service, Flags: cfg.RegisterFlags, Logging: &cfg.Logging,
		Start: func(_ context.Context, env run.Env) (run.Runner, error) {
			cfg.Logger, cfg.TracerProvider = env.Log, env.Tracing.Provider
			return New(cfg)
		}})
}

// PresencePrefix is where global keeps one lease-attached key per open zone
// stream: PresencePrefix + "<zone>/<subscription id>".
const PresencePrefix = global.PresencePrefix

// Online reports whether a zone has an open stream to some global replica,
// read from global's etcd: what the api-server and GUI show as online.
func Online(ctx context.Context, cli *clientv3.Client, zone string) (bool, error) {
	return global.Online(ctx, cli, zone)
}
