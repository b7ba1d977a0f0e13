// Package app is weft-dp's command line: `run` (register, bootstrap, run
// Envoy or keep a proxyless app's certificates fresh, deregister on exit)
// and `bootstrap` (print the bootstrap only).
package app

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/weftmesh/weft/pkg/config"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/telemetry"
	"github.com/weftmesh/weft/weft-dp/agent"
	"github.com/weftmesh/weft/weft-dp/internal/accesslog"
)

const service = "weft-dp"

// MaxDataplaneFile bounds --dataplane-file.
const MaxDataplaneFile = 1 << 20

// Config is weft-dp's configuration.
type Config struct {
	CP            string
	CPCAFile      string
	Mesh          string
	Zone          string
	Name          string
	TokenFile     string
	ProxyType     string
	Workdir       string
	DataplaneFile string
	APIURL        string
	APITokenFile  string
	EnvoyBinary   string
	EnvoyAdmin    int
	CertRefresh   time.Duration
	Logging       telemetry.Logging
}

// Default returns the defaults.
func Default() Config {
	return Config{CP: "127.0.0.1:5678", ProxyType: agent.ProxyEnvoy, Workdir: ".", APIURL: "http://127.0.0.1:5681",
		EnvoyBinary: "envoy", EnvoyAdmin: 9901, CertRefresh: 10 * time.Second,
		Logging: telemetry.Logging{Level: "info", Format: "text"}}
}

// RegisterFlags adds the flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.CP, "cp", c.CP, "xds-server address as a gRPC target (host:port, dns:///name:port)")
	fs.StringVar(&c.CPCAFile, "cp-ca-file", c.CPCAFile, "CA bundle verifying the xds-server (empty: plaintext)")
	fs.StringVar(&c.Mesh, "mesh", c.Mesh, "mesh of the dataplane")
	fs.StringVar(&c.Zone, "zone", c.Zone, "zone of the ingress (--proxy-type ingress only)")
	fs.StringVar(&c.Name, "name", c.Name, "dataplane name (--proxy-type ingress: the ZoneIngress name)")
	fs.StringVar(&c.TokenFile, "token-file", c.TokenFile, "file holding the dataplane token (--proxy-type ingress: the ingress token)")
	fs.StringVar(&c.ProxyType, "proxy-type", c.ProxyType, "envoy (sidecar), grpc (proxyless gRPC application) or ingress (Envoy zone ingress)")
	fs.StringVar(&c.Workdir, "workdir", c.Workdir, "directory for the bootstrap and certificates")
	fs.StringVar(&c.DataplaneFile, "dataplane-file", c.DataplaneFile, "Dataplane (YAML/JSON) to register at start and remove on clean exit")
	fs.StringVar(&c.APIURL, "api-url", c.APIURL, "api-server REST URL (for --dataplane-file, and to tell when the Dataplane is missing or deleted)")
	fs.StringVar(&c.APITokenFile, "api-token-file", c.APITokenFile, "token allowed to write Dataplanes (for --dataplane-file)")
	fs.StringVar(&c.EnvoyBinary, "envoy-binary", c.EnvoyBinary, "Envoy executable, looked up in PATH")
	fs.IntVar(&c.EnvoyAdmin, "envoy-admin-port", c.EnvoyAdmin, "Envoy admin port (127.0.0.1)")
	fs.DurationVar(&c.CertRefresh, "cert-refresh", c.CertRefresh, "how often grpc-go re-reads the certificate files")
	c.Logging.RegisterFlags(fs)
}

func (c *Config) agentConfig(log *slog.Logger) (*agent.Config, error) {
	if c.TokenFile == "" {
		if c.ProxyType == agent.ProxyIngress {
			return nil, errors.New("--token-file: an ingress token is required (weftctl generate ingress-token --zone Z --name N)")
		}
		return nil, errors.New("--token-file: a dataplane token is required")
	}
	if c.ProxyType == agent.ProxyIngress && c.DataplaneFile != "" {
		return nil, errors.New("--dataplane-file: not used with --proxy-type ingress (ingress-manager keeps the ZoneIngress)")
	}
	tok, err := os.ReadFile(c.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("--token-file: %w", err)
	}
	if t := strings.TrimSpace(string(tok)); strings.ContainsAny(t, " \t\r\n") {
		return nil, fmt.Errorf("--token-file %s: holds more than one word; it must hold only the token (weftctl generate dataplane-token ... > FILE)", c.TokenFile)
	}
	ac := &agent.Config{CP: c.CP, Mesh: c.Mesh, Zone: c.Zone, Name: c.Name, Token: strings.TrimSpace(string(tok)), ProxyType: c.ProxyType,
		Workdir: c.Workdir, CPCAFile: c.CPCAFile, CertRefresh: c.CertRefresh, Log: log}
	if err := ac.Validate(); err != nil {
		return nil, err
	}
	// The bootstrap is read by an application started from anywhere: every
	// path written into it is absolute.
	if c.Workdir, err = filepath.Abs(c.Workdir); err != nil {
		return nil, err
	}
	ac.Workdir = c.Workdir
	if c.CPCAFile != "" {
		if c.CPCAFile, err = filepath.Abs(c.CPCAFile); err != nil {
			return nil, err
		}
		if _, err := os.Stat(c.CPCAFile); err != nil {
			return nil, fmt.Errorf("--cp-ca-file: %w", err)
		}
		ac.CPCAFile = c.CPCAFile
	}
	return ac, nil
}

const usage = `usage: weft-dp <command> [flags]

commands:
  run        register the dataplane (--dataplane-file), write the bootstrap and
             run Envoy (--proxy-type envoy) or keep a proxyless gRPC app's
             certificates fresh (--proxy-type grpc), or run an Envoy zone
             ingress (--proxy-type ingress --zone Z --name N)
  bootstrap  print the bootstrap for --proxy-type and exit
  iptables   print (--print) or load (--apply) the transparent-proxy
             iptables rules; the injected init container runs it
`

// Main runs a command and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd := args[0]
	if cmd == "iptables" {
		return iptablesMain(ctx, args[1:], stdout, stderr)
	}
	if cmd != "run" && cmd != "bootstrap" {
		fmt.Fprintf(stderr, "weft-dp: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	cfg := Default()
	fs := flag.NewFlagSet(service+" "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.RegisterFlags(fs)
	if err := config.Parse(fs, service, args[1:], nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	log := cfg.Logging.NewLogger(stderr).With("service", service)
	ac, err := cfg.agentConfig(log)
	if err != nil {
		fmt.Fprintln(stderr, "weft-dp:", err)
		return 2
	}
	if cmd == "bootstrap" {
		b, err := bootstrap(ac, cfg.EnvoyAdmin)
		if err != nil {
			fmt.Fprintln(stderr, "weft-dp:", err)
			return 1
		}
		fmt.Fprintln(stdout, string(b))
		return 0
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, &cfg, ac, log); err != nil {
		fmt.Fprintln(stderr, "weft-dp:", err)
		return 1
	}
	return 0
}

func bootstrap(ac *agent.Config, adminPort int) ([]byte, error) {
	if ac.ProxyType == agent.ProxyGRPC {
		return agent.GRPCBootstrap(ac)
	}
	return agent.EnvoyBootstrap(ac, adminPort)
}

// ErrEnvoyNotFound is returned when --proxy-type envoy finds no Envoy.
var ErrEnvoyNotFound = errors.New("envoy is not installed")

// Run does `weft-dp run` until ctx ends.
func Run(ctx context.Context, cfg *Config, ac *agent.Config, log *slog.Logger) error {
	var envoyPath string
	if ac.ProxyType == agent.ProxyEnvoy || ac.ProxyType == agent.ProxyIngress {
		p, err := exec.LookPath(cfg.EnvoyBinary)
		if err != nil {
			return fmt.Errorf("%w: %q not found in PATH (%v); install Envoy, point --envoy-binary at it, or use --proxy-type grpc for a proxyless gRPC application", ErrEnvoyNotFound, cfg.EnvoyBinary, err)
		}
		envoyPath = p
	}
	if err := os.MkdirAll(ac.Workdir, 0o700); err != nil {
		return err
	}
	if ac.CPCAFile == "" {
		log.Warn("--cp-ca-file not set: talking to the xds-server in plaintext, which only an xds-server run with --insecure-dev accepts; the token crosses the network in the clear")
	}
	if cfg.DataplaneFile != "" {
		reg, err := newRegistrar(cfg, ac)
		if err != nil {
			return err
		}
		if err := reg.register(ctx); err != nil {
			return err
		}
		log.Info("dataplane registered", "mesh", ac.Mesh, "name", ac.Name)
		defer func() {
			dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := reg.deregister(dctx); err != nil {
				log.Error("dataplane not removed", "err", err)
			} else {
				log.Info("dataplane removed", "mesh", ac.Mesh, "name", ac.Name)
			}
		}()
	}
	b, err := bootstrap(ac, cfg.EnvoyAdmin)
	if err != nil {
		return err
	}
	if ac.ProxyType == agent.ProxyGRPC {
		if err := agent.WriteFileAtomic(ac.GRPCBootstrapPath(), b, 0o600); err != nil {
			return err
		}
		log.Info("wrote gRPC xDS bootstrap: start the application with GRPC_XDS_BOOTSTRAP set to it", "path", ac.GRPCBootstrapPath())
		wctx, stopWatch := context.WithCancel(ctx)
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			watchDataplane(wctx, cfg.APIURL, ac.Mesh, ac.Name, ac.Token, log)
		}()
		defer func() { stopWatch(); <-watched }()
		return agent.RunCertificates(ctx, ac, func() { log.Debug("certificates written", "dir", ac.CertDir()) })
	}
	path := filepath.Join(ac.Workdir, "envoy.json")
	if err := agent.WriteFileAtomic(path, b, 0o600); err != nil {
		return err
	}
	if ac.ProxyType == agent.ProxyIngress {
		// An ingress passes TLS through: no certificates, no access logs.
		log.Info("wrote Envoy ingress bootstrap", "path", path, "node", ac.NodeID())
		return runEnvoy(ctx, envoyPath, path, log)
	}
	if stopAccessLog, err := startAccessLog(ctx, ac, log); err != nil {
		// Only TrafficLogs to tcp backends need it: run Envoy anyway.
		log.Warn("access logs to tcp backends are unavailable", "err", err)
	} else {
		defer stopAccessLog()
	}
	return runEnvoy(ctx, envoyPath, path, log)
}

// startAccessLog serves the access-log service Envoy's gRPC access loggers
// reach through the bootstrap's weft_access_log_sink cluster: TrafficLogs
// to tcp backends. stop ends it and waits for its senders.
func startAccessLog(ctx context.Context, ac *agent.Config, log *slog.Logger) (stop func(), err error) {
	lis, err := accesslog.ListenUnix(ac.AccessLogSocket())
	if err != nil {
		return nil, fmt.Errorf("access log socket: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := accesslog.New(ctx, log.With("component", "access-log"), accesslog.Options{}).Serve(ctx, lis); err != nil {
			log.Error("access log service stopped", "err", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

// runEnvoy runs Envoy and restarts it (with backoff) when it dies.
func runEnvoy(ctx context.Context, bin, bootstrapPath string, log *slog.Logger) error {
	backoff := time.Second
	for {
		cmd := exec.Command(bin, "-c", bootstrapPath, "--drain-time-s", "5")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		started := time.Now()
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start envoy: %w", err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
			return nil
		case err := <-done:
			if time.Since(started) > time.Minute {
				backoff = time.Second
			}
			log.Error("envoy exited, restarting", "err", err, "retry", backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 30*time.Second)
		}
	}
}

type registrar struct {
	url   string
	token string
	body  []byte
	http  *http.Client
}

func newRegistrar(cfg *Config, ac *agent.Config) (*registrar, error) {
	f, err := os.Open(cfg.DataplaneFile)
	if err != nil {
		return nil, fmt.Errorf("--dataplane-file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxDataplaneFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxDataplaneFile {
		return nil, fmt.Errorf("--dataplane-file: larger than %d bytes", MaxDataplaneFile)
	}
	r, err := resource.Unmarshal(data, resource.DataplaneType)
	if err != nil {
		return nil, fmt.Errorf("--dataplane-file: %w", err)
	}
	if m := r.Meta.GetMesh(); m != "" && m != ac.Mesh {
		return nil, fmt.Errorf("--dataplane-file: mesh %q differs from --mesh %q", m, ac.Mesh)
	}
	if n := r.Meta.GetName(); n != "" && n != ac.Name {
		return nil, fmt.Errorf("--dataplane-file: name %q differs from --name %q", n, ac.Name)
	}
	r.Meta.Mesh, r.Meta.Name = ac.Mesh, ac.Name
	if err := resource.Validate(r); err != nil {
		return nil, fmt.Errorf("--dataplane-file: %w", err)
	}
	body, err := resource.MarshalJSON(r)
	if err != nil {
		return nil, err
	}
	if cfg.APITokenFile == "" {
		return nil, errors.New("--api-token-file: required with --dataplane-file")
	}
	tok, err := os.ReadFile(cfg.APITokenFile)
	if err != nil {
		return nil, fmt.Errorf("--api-token-file: %w", err)
	}
	u := strings.TrimRight(cfg.APIURL, "/") + "/meshes/" + url.PathEscape(ac.Mesh) + "/dataplanes/" + url.PathEscape(ac.Name)
	return &registrar{url: u, token: strings.TrimSpace(string(tok)), body: body, http: &http.Client{Timeout: 10 * time.Second}}, nil
}

func (r *registrar) do(ctx context.Context, method string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, method, r.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if method == http.MethodDelete && resp.StatusCode == http.StatusNotFound {
		return nil
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, r.url, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

func (r *registrar) register(ctx context.Context) error {
	// Retry while the api-server is unreachable; an answer is final.
	backoff := 200 * time.Millisecond
	for {
		err := r.do(ctx, http.MethodPut, r.body)
		if err == nil || !isTransient(err) || ctx.Err() != nil {
			if err != nil {
				return fmt.Errorf("register dataplane: %w", err)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func isTransient(err error) bool {
	var ue *url.Error
	return errors.As(err, &ue)
}

func (r *registrar) deregister(ctx context.Context) error {
	return r.do(ctx, http.MethodDelete, nil)
}
