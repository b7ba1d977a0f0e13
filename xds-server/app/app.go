// Package app wires the xds-server: configuration, the store and its single
// watch, the reconciler and certificate manager, the ADS gRPC server with
// token authentication, insights, and the admin HTTP server.
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
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretgrpc "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"

	"github.com/weftmesh/weft/pkg/config"
	"github.com/weftmesh/weft/pkg/cptls"
	"github.com/weftmesh/weft/pkg/grpcx"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/run"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/telemetry"
	"github.com/weftmesh/weft/pkg/token"
	cav1 "github.com/weftmesh/weft/proto/gen/go/weft/ca/v1"
	inspectv1 "github.com/weftmesh/weft/proto/gen/go/weft/inspect/v1"
	"github.com/weftmesh/weft/xds-server/internal/ads"
	"github.com/weftmesh/weft/xds-server/internal/certs"
	"github.com/weftmesh/weft/xds-server/internal/insight"
	"github.com/weftmesh/weft/xds-server/internal/inspect"
	"github.com/weftmesh/weft/xds-server/internal/model"
	"github.com/weftmesh/weft/xds-server/internal/reconcile"
)

const service = "xds-server"

// Config is the xds-server's configuration.
type Config struct {
	// Address serves ADS (gRPC).
	Address string
	// AdminAddress serves /healthz, /readyz, /metrics; empty disables it.
	AdminAddress string
	// InstanceID names this replica in insights (default: hostname).
	InstanceID string
	// Zone is this control plane's zone: other zones' ZoneIngresses become
	// cross-zone endpoints. Empty (standalone): no cross-zone endpoints.
	Zone string
	// xDS is served over TLS: by default with a certificate from the
	// control-plane CA for TLSHostnames (loopback always included);
	// TLSCertFile+TLSKeyFile override it; InsecureDev serves plaintext
	// (development only: dataplane tokens cross the network in the clear).
	TLSCertFile  string
	TLSKeyFile   string
	TLSHostnames config.StringList
	InsecureDev  bool

	Etcd       config.Etcd
	Encryption config.Encryption
	Logging    telemetry.Logging

	// CA is how to reach ca-service.
	CA CAConfig
	// CertValidity is requested for workload certificates (0: the mesh
	// backend's default).
	CertValidity time.Duration
	// InsightTTL is the lease TTL of this replica's DataplaneInsights.
	InsightTTL time.Duration

	// Limits bound what unauthenticated and authenticated xDS clients can
	// make this replica hold.
	Limits ads.Limits
	// MaxConnectionAge closes every connection after about this long
	// (gRPC adds ±10% jitter), then MaxConnectionAgeGrace lets in-flight
	// responses finish: proxies reconnect through the load balancer, so
	// they spread over new replicas. 0: never.
	MaxConnectionAge      time.Duration
	MaxConnectionAgeGrace time.Duration
	// KeepaliveTime/KeepaliveTimeout: the server pings (HTTP/2) a
	// connection idle this long and closes it when the ping is not
	// answered in time. A dead peer host or a lost path is found sooner, in
	// the kernel, by the listener's TCP keepalive (tcpKeepAlive).
	KeepaliveTime    time.Duration
	KeepaliveTimeout time.Duration
	// GRPC tunes the per-connection memory of the ADS gRPC server: every
	// proxy holds one connection for its lifetime.
	GRPC GRPCTuning

	// Set by programs, not flags.
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// TracerProvider makes this service's spans (nil: none). Set by
	// run.Main or weftctl up, never the global provider.
	TracerProvider trace.TracerProvider
}

// GRPCTuning is the ADS server's per-connection buffers (grpc.ReadBufferSize,
// grpc.WriteBufferSize). The write buffer is shared (released to a pool
// after each flush): gRPC's default since grpc.SharedWriteBuffer was
// deprecated.
type GRPCTuning struct {
	// ReadBufferSize is each connection's read buffer (gRPC's default is
	// 32 KiB, ours 0); 0 reads from the connection directly.
	ReadBufferSize int
	// WriteBufferSize is each connection's write buffer (gRPC's default is
	// 32 KiB); 0 writes through.
	WriteBufferSize int
}

// CAConfig locates ca-service. By default the connection is TLS trusting
// the control-plane CA, presenting a control-plane client certificate
// naming "xds-server" (what ca-service accepts without a token).
type CAConfig struct {
	Address string
	// CAFile verifies ca-service's certificate instead of the control-plane
	// CA (with CertFile/KeyFile as the client certificate, or TokenFile).
	CAFile string
	// Insecure dials ca-service in plaintext (development only).
	Insecure  bool
	CertFile  string
	KeyFile   string
	TokenFile string
	// Conn, when set, is used instead of dialling (in-process, tests).
	Conn grpc.ClientConnInterface
}

// Default returns the defaults.
func Default() Config {
	host, _ := os.Hostname()
	return Config{
		Address:               ":5678",
		AdminAddress:          "127.0.0.1:5688",
		InstanceID:            host,
		CA:                    CAConfig{Address: "127.0.0.1:5679"},
		InsightTTL:            30 * time.Second,
		Limits:                ads.DefaultLimits(),
		MaxConnectionAge:      30 * time.Minute,
		MaxConnectionAgeGrace: time.Minute,
		// Not 30 s: an HTTP/2 ping is a TLS record written and one read,
		// with goroutine wake-ups, on every idle connection — 0.014 of the
		// 0.018 cores of an idle 1,000-proxy fleet (bench/RESULTS.md). The
		// kernel's TCP keepalive (tcpKeepAlive) now finds dead peers.
		KeepaliveTime:    5 * time.Minute,
		KeepaliveTimeout: 10 * time.Second,
		// No read buffer: gRPC reads through the TLS connection, which
		// buffers whole records anyway; a 32 KiB buffer per proxy was 40%
		// of the heap at 5k proxies (bench/results/xds-fleet.md).
		GRPC:    GRPCTuning{ReadBufferSize: 0, WriteBufferSize: 32 << 10},
		Logging: telemetry.Logging{Level: "info", Format: "text"},
	}
}

// RegisterFlags adds the flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Address, "address", c.Address, "ADS gRPC listen address")
	fs.StringVar(&c.AdminAddress, "admin-address", c.AdminAddress, "admin HTTP address (/healthz /readyz /metrics); loopback by default, set e.g. :5688 for probes and Prometheus; empty disables")
	fs.StringVar(&c.InstanceID, "instance-id", c.InstanceID, "replica id written in insights")
	fs.StringVar(&c.Zone, "zone", c.Zone, "this zone's name: other zones' ZoneIngresses are cross-zone endpoints (empty: standalone, none)")
	fs.StringVar(&c.TLSCertFile, "tls-cert-file", c.TLSCertFile, "serving certificate (PEM) instead of one from the control-plane CA")
	fs.StringVar(&c.TLSKeyFile, "tls-key-file", c.TLSKeyFile, "key of --tls-cert-file")
	fs.Var(&c.TLSHostnames, "tls-hostnames", "comma-separated DNS names/IPs for the control-plane-CA serving certificate (loopback is always included; default: instance id)")
	fs.BoolVar(&c.InsecureDev, "insecure-dev", c.InsecureDev, "serve xDS in plaintext: DEVELOPMENT ONLY, dataplane tokens cross the network in the clear")
	fs.BoolVar(&c.CA.Insecure, "ca-insecure", c.CA.Insecure, "dial ca-service in plaintext (development only)")
	fs.StringVar(&c.CA.Address, "ca-address", c.CA.Address, "ca-service gRPC address")
	fs.StringVar(&c.CA.CAFile, "ca-ca-file", c.CA.CAFile, "CA bundle verifying ca-service (default: the control-plane CA, with a control-plane client certificate)")
	fs.StringVar(&c.CA.CertFile, "ca-cert-file", c.CA.CertFile, "client certificate for ca-service")
	fs.StringVar(&c.CA.KeyFile, "ca-key-file", c.CA.KeyFile, "client key for ca-service")
	fs.StringVar(&c.CA.TokenFile, "ca-token-file", c.CA.TokenFile, "service token for ca-service")
	fs.DurationVar(&c.CertValidity, "cert-validity", c.CertValidity, "requested workload certificate validity (0: the mesh backend's default)")
	fs.DurationVar(&c.InsightTTL, "insight-ttl", c.InsightTTL, "lease TTL of DataplaneInsights: a dead replica's proxies show offline after it")
	fs.DurationVar(&c.Limits.FirstRequestTimeout, "first-request-timeout", c.Limits.FirstRequestTimeout, "an xDS stream must send its first (authenticating) request within this")
	fs.IntVar(&c.Limits.MaxPendingStreams, "max-pending-streams", c.Limits.MaxPendingStreams, "xDS streams that have not sent their first request, at most (beyond: ResourceExhausted)")
	fs.IntVar(&c.Limits.MaxConcurrentHandshakes, "max-concurrent-handshakes", c.Limits.MaxConcurrentHandshakes, "connections in their TLS/HTTP2 set-up at once, at most; the rest wait in arrival order (0: no limit)")
	fs.IntVar(&c.Limits.MaxStreamsPerProxy, "max-streams-per-proxy", c.Limits.MaxStreamsPerProxy, "concurrent xDS streams of one node id on this replica, at most (beyond: ResourceExhausted)")
	fs.DurationVar(&c.MaxConnectionAge, "max-connection-age", c.MaxConnectionAge, "close each connection after about this long (±10% jitter), so proxies rebalance over replicas; 0: never")
	fs.DurationVar(&c.MaxConnectionAgeGrace, "max-connection-age-grace", c.MaxConnectionAgeGrace, "after --max-connection-age, time for in-flight responses before the connection is cut")
	fs.DurationVar(&c.KeepaliveTime, "keepalive-time", c.KeepaliveTime, "ping a connection idle this long")
	fs.DurationVar(&c.KeepaliveTimeout, "keepalive-timeout", c.KeepaliveTimeout, "close a connection whose ping is not answered within this")
	fs.IntVar(&c.GRPC.ReadBufferSize, "grpc-read-buffer-size", c.GRPC.ReadBufferSize, "bytes of each xDS connection's read buffer (0: read from the connection directly)")
	fs.IntVar(&c.GRPC.WriteBufferSize, "grpc-write-buffer-size", c.GRPC.WriteBufferSize, "bytes of each xDS connection's write buffer (0: write through)")
	c.Etcd.RegisterFlags(fs)
	c.Encryption.RegisterFlags(fs)
	c.Logging.RegisterFlags(fs)
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.Address == "" {
		errs = append(errs, errors.New("address: required"))
	}
	if c.Zone != "" && !resource.IsLabel(c.Zone) {
		errs = append(errs, fmt.Errorf("zone: %q must be this zone's name (a DNS label)", c.Zone))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("tls-cert-file and tls-key-file go together"))
	}
	if c.InsecureDev && c.TLSCertFile != "" {
		errs = append(errs, errors.New("insecure-dev and tls-cert-file exclude each other"))
	}
	if c.CA.Insecure && c.CA.CAFile != "" {
		errs = append(errs, errors.New("ca-insecure and ca-ca-file exclude each other"))
	}
	if c.CA.Conn == nil && c.CA.Address == "" {
		errs = append(errs, errors.New("ca-address: required"))
	}
	if c.InsightTTL < time.Second {
		errs = append(errs, errors.New("insight-ttl: at least 1s"))
	}
	if c.InstanceID == "" {
		errs = append(errs, errors.New("instance-id: required"))
	}
	if c.Limits.FirstRequestTimeout <= 0 {
		errs = append(errs, errors.New("first-request-timeout: must be positive"))
	}
	if c.Limits.MaxPendingStreams < 1 {
		errs = append(errs, errors.New("max-pending-streams: at least 1"))
	}
	if c.Limits.MaxConcurrentHandshakes < 0 {
		errs = append(errs, errors.New("max-concurrent-handshakes: not negative"))
	}
	if c.Limits.MaxStreamsPerProxy < 1 {
		errs = append(errs, errors.New("max-streams-per-proxy: at least 1"))
	}
	if c.MaxConnectionAge < 0 || c.MaxConnectionAgeGrace < 0 {
		errs = append(errs, errors.New("max-connection-age, max-connection-age-grace: not negative"))
	}
	if c.KeepaliveTime < time.Second || c.KeepaliveTimeout < time.Second {
		errs = append(errs, errors.New("keepalive-time, keepalive-timeout: at least 1s"))
	}
	if c.GRPC.ReadBufferSize < 0 || c.GRPC.ReadBufferSize > 1<<20 || c.GRPC.WriteBufferSize < 0 || c.GRPC.WriteBufferSize > 1<<20 {
		errs = append(errs, errors.New("grpc-read-buffer-size, grpc-write-buffer-size: between 0 and 1048576"))
	}
	if err := c.Etcd.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Logging.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// App is a running xds-server.
type App struct {
	cfg    Config
	log    *slog.Logger
	lis    net.Listener
	admin  *telemetry.Admin
	cli    *clientv3Closer
	st     *store.Store
	grpc   *grpc.Server
	caConn *grpc.ClientConn
	model  *model.Model
	rec    *reconcile.Reconciler
	certs  *certs.Manager
	ins    *insight.Recorder
	// tokens verifies proxies' tokens; its poller tells open streams of a
	// revocation or a new signing key.
	tokens  *token.Keys
	cache   cachev3.SnapshotCache
	ctx     context.Context
	cancel  context.CancelFunc
	metrics *metrics
}

// New builds the server and binds its listeners.
func New(cfg Config) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = cfg.Logging.NewLogger(os.Stderr)
	}
	log = log.With("service", service, "instance", cfg.InstanceID)
	reg := cfg.Registry
	if reg == nil {
		reg = telemetry.NewRegistry()
	}
	keys, err := cfg.Encryption.Load()
	if err != nil {
		return nil, fmt.Errorf("encryption keys: %w", err)
	}
	cli, owned, err := cfg.Etcd.Connect()
	if err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, log: log, cli: &clientv3Closer{cli: cli, owned: owned}}
	fail := func(err error) (*App, error) {
		a.close()
		return nil, err
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	a.st = store.New(cli, store.WithKeyring(keys), store.WithLogger(log), store.WithMetrics(reg), store.WithTracerProvider(tp))
	a.metrics = newMetrics(reg)

	caConn := cfg.CA.Conn
	if caConn == nil {
		conn, err := dialCA(a.st, cfg.CA, tp)
		if err != nil {
			return fail(err)
		}
		a.caConn = conn
		caConn = conn
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	// Not "ADS mode": that mode answers only when a snapshot holds exactly
	// the requested names, but grpc-go asks for a subset (one api_listener,
	// one cluster) of what a proxy's snapshot holds. Snapshots are built
	// consistent, so nothing is lost. ads.OrderedCache gives back the ADS
	// mode's response order (clusters before listeners).
	a.cache = ads.NewOrderedCache(cachev3.NewSnapshotCache(false, cachev3.IDHash{}, cacheLogger{log.With("component", "xds-cache")}))
	var rec *reconcile.Reconciler
	var ins *insight.Recorder
	a.certs = certs.New(a.ctx, cav1.NewCertificateAuthorityServiceClient(caConn), cfg.CertValidity, log.With("component", "certs"),
		func(mesh, name string) {
			rec.CertUpdated(mesh, name)
			ins.CertChanged(mesh, name)
		})
	a.model = model.New(a.st, log.With("component", "model"))
	a.model.SetZone(cfg.Zone)
	rec = reconcile.New(a.model, a.cache, a.certs, a.metrics, log.With("component", "reconcile"))
	rec.SetTracerProvider(tp)
	a.rec = rec
	ins = insight.New(a.st, cfg.InstanceID, cfg.InsightTTL, log.With("component", "insight"), func(mesh, name string) (insight.CertInfo, bool) {
		id, info := a.certs.Identity(mesh, name)
		if id == nil {
			return insight.CertInfo{}, false
		}
		return insight.CertInfo(info), true
	})
	a.ins = ins
	// A proxy whose configuration cannot be generated (a ProxyTemplate that
	// breaks validation) keeps its previous one; its insight says why.
	rec.OnGenerationError(ins.GenerationFailed)

	tokens := token.New(a.st)
	a.tokens = tokens
	callbacks := ads.NewCallbacks(rec, ins, a.metrics, log.With("component", "ads"))
	callbacks.MaxStreamsPerProxy = cfg.Limits.MaxStreamsPerProxy
	callbacks.SetTracerProvider(tp)
	// One go-control-plane stream loop per stream, ending with the stream's
	// context (a token cut) or a.ctx (see ads.Server).
	xds := ads.NewServer(a.ctx, a.cache, callbacks)
	// xDS streams live as long as the proxy: instead of one span open for
	// hours, the reconciler makes short spans per generation and push.
	opts := grpcx.ServerOptions(log, reg, service, nil, []grpc.StreamServerInterceptor{
		ads.FirstRequestLimit(cfg.Limits, log.With("component", "ads")),
		ads.StreamAuthKeys(tokens, cfg.Zone)},
		grpcx.WithTracerProvider(tp), grpcx.WithoutSpans(
			discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResources_FullMethodName,
			discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResources_FullMethodName,
			secretgrpc.SecretDiscoveryService_StreamSecrets_FullMethodName,
			secretgrpc.SecretDiscoveryService_DeltaSecrets_FullMethodName))
	maxAge := cfg.MaxConnectionAge
	if maxAge == 0 {
		maxAge = time.Duration(math.MaxInt64) // gRPC's "infinity"
	}
	opts = append(opts,
		// A connection's TLS handshake must finish within this.
		grpc.ConnectionTimeout(cfg.Limits.FirstRequestTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: cfg.KeepaliveTime, Timeout: cfg.KeepaliveTimeout,
			MaxConnectionAge: maxAge, MaxConnectionAgeGrace: cfg.MaxConnectionAgeGrace,
			// A connection without any stream for this long is closed.
			MaxConnectionIdle: 5 * time.Minute}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxConcurrentStreams(1000),
		grpc.ReadBufferSize(cfg.GRPC.ReadBufferSize),
		grpc.WriteBufferSize(cfg.GRPC.WriteBufferSize),
	)
	switch {
	case cfg.InsecureDev:
		log.Warn("!!! --insecure-dev: serving xDS WITHOUT TLS; dataplane tokens and workload keys cross the network in the clear. Development only !!!")
	case cfg.TLSCertFile != "":
		tc, err := cptls.FromFiles(cfg.TLSCertFile, cfg.TLSKeyFile, "")
		if err != nil {
			return fail(fmt.Errorf("tls-cert-file: %w", err))
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	default:
		hosts := cfg.TLSHostnames
		if len(hosts) == 0 {
			hosts = config.StringList{cfg.InstanceID}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		tc, err := cptls.ServerConfig(ctx, a.st, hosts, cptls.WithService(service))
		cancel()
		if err != nil {
			return fail(fmt.Errorf("serving certificate from the control-plane CA: %w", err))
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	a.grpc = grpc.NewServer(opts...)
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(a.grpc, xds)
	secretgrpc.RegisterSecretDiscoveryServiceServer(a.grpc, xds)
	// Config dump and policy preview (internal/inspect): authenticated by
	// bearer token per call, on the same TLS listener.
	inspectv1.RegisterInspectServiceServer(a.grpc, &inspect.Service{Instance: cfg.InstanceID, Verify: token.New(a.st).Verify,
		Rec: rec, Insights: ins, Cache: a.cache, Views: a.model.View, Store: a.st,
		Ready: func() bool {
			select {
			case <-a.model.Synced():
				return true
			default:
				return false
			}
		}})

	a.lis, err = (&net.ListenConfig{KeepAliveConfig: tcpKeepAlive}).Listen(context.Background(), "tcp", cfg.Address)
	if err != nil {
		return fail(fmt.Errorf("listen %s: %w", cfg.Address, err))
	}
	// A reconnect storm's handshakes finish a few at a time instead of
	// all of them late (ads.LimitHandshakes).
	a.lis = ads.LimitHandshakes(a.lis, cfg.Limits.MaxConcurrentHandshakes, ads.HandshakeMaxHold, log.With("component", "ads"))
	if cfg.AdminAddress != "" {
		a.admin, err = telemetry.NewAdmin(cfg.AdminAddress, reg, log)
		if err != nil {
			return fail(err)
		}
		// Not a readiness check: once the model is synced, this replica
		// serves its last-known configuration through a brief etcd outage
		// (and Kubernetes must not pull every replica just when proxies
		// reconnect). weft_etcd_up reports etcd's health instead.
		telemetry.RegisterEtcdUp(reg, cli, log)
		// The control-plane CA certificate (public) that data planes need as
		// weft-dp --cp-ca-file when xDS is served from it.
		a.admin.Handle("GET /control-plane-ca.pem", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			pem, err := cptls.RootPEM(r.Context(), a.st)
			if err != nil {
				http.Error(w, "control-plane CA not available: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Content-Type", "application/x-pem-file")
			_, _ = w.Write(pem)
		}))
		a.admin.AddCheck("model", func(context.Context) error {
			select {
			case <-a.model.Synced():
				return nil
			default:
				return errors.New("store not loaded yet (waiting for etcd)")
			}
		})
	}
	return a, nil
}

// tcpKeepAlive is every xDS connection's TCP keepalive: after 30 s without
// traffic the kernel probes the peer every 10 s and closes the connection
// after 3 unanswered probes, so a proxy whose host died or whose path was
// lost is let go within about 60 s (with 30 s HTTP/2 pings and a 10 s
// timeout it was 40 s). The probes keep NAT and load-balancer state alive
// too, and cost this process nothing: no goroutine wakes, no TLS record.
var tcpKeepAlive = net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 3}

// Addr is the bound ADS address.
func (a *App) Addr() string { return a.lis.Addr().String() }

// AdminAddr is the bound admin address ("" when disabled).
func (a *App) AdminAddr() string {
	if a.admin == nil {
		return ""
	}
	return a.admin.Addr()
}

// Store is the app's store (tests).
func (a *App) Store() *store.Store { return a.st }

// Run serves until ctx ends or a component stops (run.Group's policy).
func (a *App) Run(ctx context.Context) error {
	defer a.close()
	g := run.New(a.log)
	g.Add("model", a.model.Run)
	g.Add("reconcile", run.Func(a.rec.Run))
	g.Add("insight", a.ins.Run)
	g.Add("token-refresh", a.tokens.RunPoller)
	if a.admin != nil {
		g.Add("admin", a.admin.Serve)
	}
	// xDS streams end when the xDS server's context does, so the gRPC
	// server's graceful stop does not wait for proxies to hang up.
	g.Add("xds-streams", func(ctx context.Context) error { <-ctx.Done(); a.cancel(); return nil })
	g.Add("grpc", run.GRPC(a.grpc, a.lis))
	a.log.Info("serving xDS", "address", a.Addr(), "admin", a.AdminAddr())
	return g.Run(ctx)
}

func (a *App) close() {
	if a.cancel != nil {
		a.cancel()
	}
	if a.caConn != nil {
		_ = a.caConn.Close()
	}
	if a.cli != nil {
		a.cli.close()
	}
}

func dialCA(st *store.Store, c CAConfig, tp trace.TracerProvider) (*grpc.ClientConn, error) {
	// WatchTrustBundle lives as long as the connection: no span for it.
	opts := grpcx.ClientOptions(grpcx.WithTracerProvider(tp), grpcx.WithoutSpans(cav1.CertificateAuthorityService_WatchTrustBundle_FullMethodName))
	secure := !c.Insecure
	switch {
	case c.Insecure:
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	case c.CAFile != "":
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("ca-ca-file: no certificates found")
		}
		tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if c.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("ca client certificate: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	default:
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		tc, err := cptls.ClientConfig(ctx, st, cptls.WithService(service))
		if err != nil {
			return nil, fmt.Errorf("ca-service client certificate from the control-plane CA: %w", err)
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	}
	if c.TokenFile != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(&fileToken{path: c.TokenFile, secure: secure}))
	}
	conn, err := grpc.NewClient(c.Address, opts...)
	if err != nil {
		return nil, fmt.Errorf("ca-address: %w", err)
	}
	return conn, nil
}

// fileToken sends a service token re-read from its file (so it can be
// rotated without a restart).
type fileToken struct {
	path   string
	secure bool
}

func (f *fileToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	b, err := os.ReadFile(f.path)
	if err != nil {
		return nil, fmt.Errorf("ca-token-file: %w", err)
	}
	return map[string]string{"authorization": "Bearer " + strings.TrimSpace(string(b))}, nil
}

func (f *fileToken) RequireTransportSecurity() bool { return f.secure }

// Main parses args and runs until SIGINT/SIGTERM (run.Main).
func Main(ctx context.Context, args []string, stderr io.Writer) int {
	cfg := Default()
	return run.Main(ctx, args, stderr, run.Program{Name: service, Flags: cfg.RegisterFlags, Logging: &cfg.Logging,
		Start: func(_ context.Context, env run.Env) (run.Runner, error) {
			cfg.Logger, cfg.TracerProvider = env.Log, env.Tracing.Provider
			return New(cfg)
		}})
}
