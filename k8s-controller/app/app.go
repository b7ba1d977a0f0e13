// Package app wires the k8s-controller: configuration, the Kubernetes
// clients, the etcd store, the webhook HTTPS server, the admin HTTP server
// (/healthz, /readyz, /metrics) and the controller's parts, each a
// component of one run.Group (docs/lifecycle.md).
//
// The parts are Builders (builders.go): each gets the shared Deps and
// returns its components. A new part adds its Builder to the list there.
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
	"net/url"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/weftmesh/weft/pkg/config"
	"github.com/weftmesh/weft/pkg/cptls"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/run"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/telemetry"
)

// ServiceName is used for env overrides (WEFT_K8S_CONTROLLER_*) and telemetry.
const ServiceName = "k8s-controller"

// Config is the k8s-controller's configuration.
type Config struct {
	// Etcd.Client, when set, is used instead of dialling (weftctl up, tests).
	Etcd       config.Etcd
	Encryption config.Encryption
	// Kubeconfig is a kubeconfig file; empty: the in-cluster configuration
	// (the pod's service account).
	Kubeconfig string
	// Mode and Zone say which control plane this is (as the api-server's
	// --mode and --zone): they decide the origin of what the controller
	// writes and which types it may write.
	Mode string
	Zone string
	// WebhookAddress is the webhook HTTPS listen address; empty disables
	// the webhooks.
	WebhookAddress string
	// WebhookCertFile and WebhookKeyFile are the webhook's serving
	// certificate; empty: one issued by the control-plane CA (pkg/cptls)
	// for WebhookHostnames and loopback, renewed on the fly.
	WebhookCertFile string
	WebhookKeyFile  string
	// WebhookCAFile is the caBundle written into the webhook
	// configurations with a certificate from files; with the control-plane
	// CA it is that CA's root.
	WebhookCAFile    string
	WebhookHostnames []string
	// WebhookURL, when set, is the base URL the API server calls (a
	// URL-based webhook configuration, e.g. https://127.0.0.1:5690 outside
	// a cluster); empty keeps the Service reference the chart installed.
	WebhookURL string
	// WebhookConfigName is the ValidatingWebhookConfiguration the
	// controller keeps current (its caBundle, and its URL with WebhookURL).
	WebhookConfigName string
	// AdminAddress serves /healthz, /readyz and /metrics; empty disables it.
	AdminAddress string
	// Resync is how often the Kubernetes informers replay their cache and
	// the controller re-checks every CR against the store.
	Resync  time.Duration
	Logging telemetry.Logging
	// Pods configures pods → Dataplanes and sidecar injection (pods.go).
	Pods PodsConfig

	// Set by programs, not flags.
	// RestConfig, when set, is used instead of Kubeconfig (tests).
	RestConfig *rest.Config
	// Logger, when set, is used instead of building one from Logging.
	Logger *slog.Logger
	// Registry, when set, receives the metrics (default: a new one).
	Registry *prometheus.Registry
	// TracerProvider makes this service's spans (nil: none).
	TracerProvider trace.TracerProvider
	// Extra builders run after the built-in ones (tests, weftctl up).
	Extra []Builder
	// WebhookListener, when set, is used instead of listening on
	// WebhookAddress (tests bind 127.0.0.1:0 first to know the URL).
	WebhookListener net.Listener
}

// Modes, as the api-server's --mode.
const (
	ModeStandalone = resource.ModeStandalone
	ModeGlobal     = resource.ModeGlobal
	ModeZone       = resource.ModeZone
)

// Default returns the default configuration.
func Default() Config {
	return Config{
		Etcd:              config.Etcd{Endpoints: config.StringList{"127.0.0.1:2379"}},
		Mode:              ModeStandalone,
		WebhookAddress:    ":5690",
		WebhookConfigName: "weft-k8s-controller",
		AdminAddress:      "127.0.0.1:5691",
		Resync:            5 * time.Minute,
		Logging:           telemetry.Logging{Level: "info", Format: "text"},
		Pods:              DefaultPods(),
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	errs := []error{c.Etcd.Validate(), c.Logging.Validate(), c.Pods.Validate()}
	switch c.Mode {
	case ModeStandalone, ModeGlobal:
		if c.Zone != "" && c.Mode == ModeGlobal {
			errs = append(errs, errors.New("--zone: must be empty in global mode"))
		}
	case ModeZone:
		if c.Zone == "" {
			errs = append(errs, errors.New("--zone: required in zone mode"))
		}
	default:
		errs = append(errs, fmt.Errorf("--mode: %q is not standalone, global or zone", c.Mode))
	}
	if c.Zone != "" {
		v := resource.NewValidator()
		resource.CheckLabel(v.Field("--zone"), c.Zone)
		errs = append(errs, v.Err())
	}
	for flagName, addr := range map[string]string{"--webhook-address": c.WebhookAddress, "--admin-address": c.AdminAddress} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", flagName, err))
		}
	}
	if (c.WebhookCertFile == "") != (c.WebhookKeyFile == "") {
		errs = append(errs, errors.New("--webhook-cert-file and --webhook-key-file go together"))
	}
	if c.WebhookCertFile != "" && c.WebhookCAFile == "" {
		errs = append(errs, errors.New("--webhook-ca-file: required with --webhook-cert-file (it is the caBundle the API server verifies the webhook with)"))
	}
	if c.WebhookURL != "" {
		if u, err := url.Parse(c.WebhookURL); err != nil || u.Scheme != "https" || u.Host == "" {
			errs = append(errs, fmt.Errorf("--webhook-url: %q must be an https:// URL", c.WebhookURL))
		}
	}
	if c.Resync < time.Second {
		errs = append(errs, fmt.Errorf("--resync: %s must be at least 1s", c.Resync))
	}
	return errors.Join(errs...)
}

// RegisterFlags binds the configuration to flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "kubeconfig file (empty: the in-cluster service account)")
	fs.StringVar(&c.Mode, "mode", c.Mode, "control plane mode: standalone, global or zone (as the api-server's)")
	fs.StringVar(&c.Zone, "zone", c.Zone, "this zone's name (zone mode; also the origin of what the controller writes)")
	fs.StringVar(&c.WebhookAddress, "webhook-address", c.WebhookAddress, "webhook HTTPS listen address (empty: no webhooks)")
	fs.StringVar(&c.WebhookCertFile, "webhook-cert-file", c.WebhookCertFile, "webhook serving certificate (empty: issued by the control-plane CA)")
	fs.StringVar(&c.WebhookKeyFile, "webhook-key-file", c.WebhookKeyFile, "webhook serving key")
	fs.StringVar(&c.WebhookCAFile, "webhook-ca-file", c.WebhookCAFile, "CA of --webhook-cert-file, written as the webhook configurations' caBundle")
	fs.Var((*config.StringList)(&c.WebhookHostnames), "webhook-hostnames", "comma-separated DNS names or IPs of the control-plane-CA webhook certificate (loopback is always included), e.g. weft-k8s-controller.weft-system.svc")
	fs.StringVar(&c.WebhookURL, "webhook-url", c.WebhookURL, "base https:// URL the API server calls the webhooks at (empty: keep the chart's Service reference)")
	fs.StringVar(&c.WebhookConfigName, "webhook-config-name", c.WebhookConfigName, "name of the ValidatingWebhookConfiguration whose caBundle (and URL) the controller keeps current")
	fs.StringVar(&c.AdminAddress, "admin-address", c.AdminAddress, "admin listen address (/healthz, /readyz, /metrics; empty: off)")
	fs.DurationVar(&c.Resync, "resync", c.Resync, "how often every CR is checked against the store again")
	c.Pods.RegisterFlags(fs)
	c.Etcd.RegisterFlags(fs)
	c.Encryption.RegisterFlags(fs)
	c.Logging.RegisterFlags(fs)
}

// Origin is what the controller writes as the origin of resources, as the
// api-server does for its own writes in the same mode.
func (c *Config) Origin() string {
	return resource.WriteOrigin(c.Mode, c.Zone)
}

// Deps is what every Builder gets: the clients, the store and its
// informers, and the webhook mux.
type Deps struct {
	Config     *Config
	Log        *slog.Logger
	Registry   *prometheus.Registry
	Tracer     trace.TracerProvider
	Store      *store.Store
	Informers  *store.Informers
	RestConfig *rest.Config
	Kube       kubernetes.Interface
	Dynamic    dynamic.Interface
	// Webhooks serves on the webhook HTTPS listener (nil when
	// --webhook-address is empty): a part adds its admission paths.
	Webhooks *http.ServeMux
	// CABundle is what webhook configurations carry as caBundle (nil
	// without webhooks).
	CABundle []byte
	// AddCheck adds a readiness check to /readyz.
	AddCheck func(name string, c telemetry.Check)
}

// Component is one long-running part, run in the app's run.Group.
type Component struct {
	Name string
	Run  func(ctx context.Context) error
}

// Builder builds one part of the controller.
type Builder func(ctx context.Context, d *Deps) ([]Component, error)

// App is a k8s-controller with its listeners bound.
type App struct {
	cfg        Config
	log        *slog.Logger
	cli        *clientv3.Client
	ownsCli    bool
	deps       *Deps
	admin      *telemetry.Admin
	webhookLn  net.Listener
	webhookSrv *http.Server
	components []Component
}

// New validates cfg, connects to etcd and Kubernetes, binds the webhook
// and admin listeners and builds every part.
func New(ctx context.Context, cfg Config) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, log: cfg.Logger}
	if a.log == nil {
		a.log = cfg.Logging.NewLogger(os.Stderr)
	}
	a.log = a.log.With("service", ServiceName)
	reg := cfg.Registry
	if reg == nil {
		reg = telemetry.NewRegistry()
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	restCfg, err := cfg.restConfig()
	if err != nil {
		return nil, err
	}
	restCfg.UserAgent = ServiceName
	kube, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes dynamic client: %w", err)
	}
	keys, err := cfg.Encryption.Load()
	if err != nil {
		return nil, err
	}
	if a.cli, a.ownsCli, err = cfg.Etcd.Connect(); err != nil {
		return nil, err
	}
	fail := func(err error) (*App, error) {
		a.close()
		return nil, err
	}
	st := store.New(a.cli, store.WithKeyring(keys), store.WithLogger(a.log), store.WithMetrics(reg), store.WithTracerProvider(tp))
	cfgCopy := cfg
	a.deps = &Deps{Config: &cfgCopy, Log: a.log, Registry: reg, Tracer: tp, Store: st, Informers: store.NewInformers(st),
		RestConfig: restCfg, Kube: kube, Dynamic: dyn, AddCheck: func(string, telemetry.Check) {}}
	if cfg.AdminAddress != "" {
		if a.admin, err = telemetry.NewAdmin(cfg.AdminAddress, reg, a.log); err != nil {
			return fail(err)
		}
		a.admin.AddCheck("etcd", telemetry.EtcdCheck(a.cli))
		a.deps.AddCheck = a.admin.AddCheck
	}
	if cfg.WebhookAddress != "" || cfg.WebhookListener != nil {
		tlsCfg, bundle, err := a.webhookTLS(ctx, st)
		if err != nil {
			return fail(err)
		}
		if a.webhookLn = cfg.WebhookListener; a.webhookLn == nil {
			if a.webhookLn, err = net.Listen("tcp", cfg.WebhookAddress); err != nil {
				return fail(fmt.Errorf("webhook listener %s: %w", cfg.WebhookAddress, err))
			}
		}
		a.deps.Webhooks = http.NewServeMux()
		a.deps.CABundle = bundle
		a.webhookSrv = &http.Server{Handler: a.deps.Webhooks, TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug)}
	}
	for _, b := range append(builders(), cfg.Extra...) {
		cs, err := b(ctx, a.deps)
		if err != nil {
			return fail(err)
		}
		a.components = append(a.components, cs...)
	}
	a.log.Info("k8s-controller ready to run", "kube", restCfg.Host, "mode", cfg.Mode, "zone", cfg.Zone,
		"webhook", a.WebhookAddr(), "admin", a.AdminAddr())
	return a, nil
}

func (c *Config) restConfig() (*rest.Config, error) {
	if c.RestConfig != nil {
		return rest.CopyConfig(c.RestConfig), nil
	}
	if c.Kubeconfig != "" {
		rc, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig: %w", err)
		}
		return rc, nil
	}
	rc, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("no --kubeconfig and not running in a cluster: %w", err)
	}
	return rc, nil
}

// webhookTLS returns the webhook's TLS configuration and the caBundle the
// API server verifies it with.
func (a *App) webhookTLS(ctx context.Context, st *store.Store) (*tls.Config, []byte, error) {
	if a.cfg.WebhookCertFile != "" {
		bundle, err := os.ReadFile(a.cfg.WebhookCAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--webhook-ca-file: %w", err)
		}
		tc, err := cptls.FromFiles(a.cfg.WebhookCertFile, a.cfg.WebhookKeyFile, "")
		return tc, bundle, err
	}
	// The API server presents no client certificate: the control-plane CA
	// serves, the webhook configuration's caBundle is its root.
	tc, err := cptls.ServerConfig(ctx, st, a.cfg.WebhookHostnames, cptls.WithService(ServiceName))
	if err != nil {
		return nil, nil, fmt.Errorf("webhook certificate from the control-plane CA: %w", err)
	}
	bundle, err := cptls.RootPEM(ctx, st)
	if err != nil {
		return nil, nil, err
	}
	return tc, bundle, nil
}

// WebhookAddr and AdminAddr are the bound addresses ("" when disabled).
func (a *App) WebhookAddr() string {
	if a.webhookLn == nil {
		return ""
	}
	return a.webhookLn.Addr().String()
}

func (a *App) AdminAddr() string {
	if a.admin == nil {
		return ""
	}
	return a.admin.Addr()
}

// Store is the resource store the controller writes.
func (a *App) Store() *store.Store { return a.deps.Store }

func (a *App) close() {
	if a.webhookLn != nil {
		a.webhookLn.Close()
	}
	if a.ownsCli && a.cli != nil {
		a.cli.Close()
	}
}

// Run serves until ctx ends or a component stops (run.Group's policy).
func (a *App) Run(ctx context.Context) error {
	defer a.close()
	g := run.New(a.log)
	for _, c := range a.components {
		g.Add(c.Name, c.Run)
	}
	if a.webhookSrv != nil {
		g.Add("webhooks", run.HTTP(a.webhookSrv, tls.NewListener(a.webhookLn, a.webhookSrv.TLSConfig)))
	}
	if a.admin != nil {
		g.Add("admin", a.admin.Serve)
	}
	return g.Run(ctx)
}

// Main is the k8s-controller program: flags, WEFT_K8S_CONTROLLER_*
// environment overrides, tracing, signals (run.Main). It returns the exit
// code.
func Main(ctx context.Context, args []string, stderr io.Writer) int {
	cfg := Default()
	return run.Main(ctx, args, stderr, run.Program{Name: ServiceName, Flags: cfg.RegisterFlags, Logging: &cfg.Logging, Validate: cfg.Validate,
		Start: func(ctx context.Context, env run.Env) (run.Runner, error) {
			cfg.Logger, cfg.TracerProvider = env.Log, env.Tracing.Provider
			// client-go logs through klog: into the service's log, once
			// per process (tests and weftctl up leave klog alone).
			klog.SetSlogLogger(env.Log.With("service", ServiceName, "component", "client-go"))
			return New(ctx, cfg)
		}})
}
