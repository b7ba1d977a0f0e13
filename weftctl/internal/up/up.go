// Package up runs a whole Weft control plane — or a global and N zones —
// in one process on embedded etcd: the `weftctl up` command.
package up

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	apiapp "github.com/weftmesh/weft/api-server/app"
	caapp "github.com/weftmesh/weft/ca-service/app"
	dnsapp "github.com/weftmesh/weft/dns-server/app"
	ingressapp "github.com/weftmesh/weft/ingress-manager/app"
	"github.com/weftmesh/weft/pkg/cptls"
	"github.com/weftmesh/weft/pkg/etcdembed"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/run"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/telemetry"
	"github.com/weftmesh/weft/pkg/token"
	xdsapp "github.com/weftmesh/weft/xds-server/app"
	zsapp "github.com/weftmesh/weft/zone-sync/app"
)

// Options configure `weftctl up`.
type Options struct {
	// DataDir keeps etcd data, keys and endpoints.json between runs.
	DataDir string
	// Host the listeners bind (default 127.0.0.1).
	Host string
	// PortOffset shifts every default port, so two instances can run side
	// by side.
	PortOffset int
	// Zones > 0 starts a global control plane and this many zones.
	Zones int
	// Demo registers demo meshes, services and policies.
	Demo bool
	// Log receives the services' logs.
	Log *slog.Logger
	// Out receives the human-readable summary.
	Out io.Writer
	// EphemeralPorts binds every listener to port 0 (tests).
	EphemeralPorts bool
	// OnReady is called with the endpoints once everything serves.
	OnReady func(Endpoints)
}

// Endpoints is the documented content of <data-dir>/endpoints.json.
type Endpoints struct {
	ControlPlanes []Endpoint `json:"controlPlanes"`
}

// Endpoint describes one control plane.
type Endpoint struct {
	Name            string            `json:"name"`
	Mode            string            `json:"mode"`
	Zone            string            `json:"zone,omitempty"`
	APIURL          string            `json:"apiURL"`
	GRPCAddress     string            `json:"grpcAddress"`
	XDSAddress      string            `json:"xdsAddress,omitempty"`
	CAAddress       string            `json:"caAddress,omitempty"`
	DNSAddress      string            `json:"dnsAddress,omitempty"`
	ZoneSyncAddress string            `json:"zoneSyncAddress,omitempty"`
	IngressAddress  string            `json:"ingressAddress,omitempty"`
	EtcdEndpoint    string            `json:"etcdEndpoint"`
	AdminAddresses  map[string]string `json:"adminAddresses"`
	AdminToken      string            `json:"adminToken"`
	// CACertFile is the control-plane CA certificate (PEM) that verifies
	// this control plane's TLS listeners (xDS, CA, zone-sync): what
	// weft-dp's --cp-ca-file takes.
	CACertFile string `json:"caCertFile"`
}

// Default ports of the first control plane; each further control plane
// (zone-N) adds 100*N, and PortOffset shifts them all.
const (
	portAPIGRPC  = 5680
	portAPIHTTP  = 5681
	portAPIAdmin = 5682
	portXDS      = 5678
	portXDSAdmin = 5688
	portCA       = 5679
	portCAAdmin  = 5689
	portDNS      = 5653
	portDNSAdmin = 5654
	portSync     = 5685
	portSyncAdm  = 5686
	portIngress  = 10001
	portIngAdmin = 5687
)

// plane is one control plane being started.
type plane struct {
	name, mode, zone string
	dir              string
	base             int // added to every default port
	host             string
	ephemeral        bool
	etcd             *etcdembed.Server
	cli              *clientv3.Client
	keys             *seal.Keyring
	log              *slog.Logger
	ep               Endpoint
	runs             []run.Component
	api              *apiapp.App
	tracing          []*telemetry.Tracing
	// xdsAddr is the xds-server's bound address once it started: the
	// api-server forwards config dumps and policy previews to it.
	xdsAddr atomic.Value // string
}

// tracer is the tracer provider of one service of the plane: each service
// names itself in its spans, and the plane is a resource attribute.
func (p *plane) tracer(ctx context.Context, service string) (trace.TracerProvider, error) {
	tr, err := telemetry.NewTracing(ctx, service, p.log, attribute.String("weft.control_plane", p.name))
	if err != nil {
		return nil, err
	}
	p.tracing = append(p.tracing, tr)
	return tr.Provider, nil
}

func (p *plane) add(service string, fn func(context.Context) error) {
	p.runs = append(p.runs, run.Component{Name: p.name + "/" + service, Run: fn})
}

func (p *plane) addr(port int) string {
	if p.ephemeral {
		return p.host + ":0"
	}
	return fmt.Sprintf("%s:%d", p.host, port+p.base)
}

// Run starts everything and blocks until ctx ends; data is kept.
func Run(ctx context.Context, o Options) error {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Zones < 0 || o.Zones > 9 {
		return errors.New("--zones must be between 0 and 9")
	}
	if o.PortOffset < 0 || o.PortOffset > 50000 {
		return errors.New("--port-offset must be between 0 and 50000")
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	unlock, err := lockDataDir(o.DataDir)
	if err != nil {
		return err
	}
	defer unlock()
	var planes []*plane
	if o.Zones == 0 {
		planes = append(planes, &plane{name: "standalone", mode: "standalone"})
	} else {
		planes = append(planes, &plane{name: "global", mode: "global"})
		for i := 1; i <= o.Zones; i++ {
			planes = append(planes, &plane{name: fmt.Sprintf("zone-%d", i), mode: "zone", zone: fmt.Sprintf("zone-%d", i), base: 100 * i})
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer func() {
		// After every service has stopped: flush their spans.
		for _, p := range planes {
			run.Flush(p.log, p.tracing...)
		}
		for _, p := range planes {
			if p.cli != nil {
				p.cli.Close()
			}
			if p.etcd != nil {
				p.etcd.Close()
			}
		}
	}()
	for _, p := range planes {
		p.host, p.base, p.ephemeral = o.Host, p.base+o.PortOffset, o.EphemeralPorts
		p.dir = filepath.Join(o.DataDir, p.name)
		p.log = o.Log.With("controlPlane", p.name)
		if err := p.startStorage(ctx); err != nil {
			return err
		}
	}
	for _, p := range planes {
		for _, c := range components {
			if err := c.start(ctx, p, planes); err != nil {
				return fmt.Errorf("%s: start %s: %w", p.name, c.name, err)
			}
		}
	}
	eps := Endpoints{}
	for _, p := range planes {
		if err := p.writeCA(ctx); err != nil {
			return err
		}
		eps.ControlPlanes = append(eps.ControlPlanes, p.ep)
	}
	if err := writeEndpoints(filepath.Join(o.DataDir, "endpoints.json"), eps); err != nil {
		return err
	}
	// Every service under one group: the same stop policy as each
	// service's own (one stops, all stop), with a little more grace so
	// each service's own group reports first.
	g := run.New(o.Log, run.WithGrace(run.Grace+time.Second))
	for _, p := range planes {
		for _, c := range p.runs {
			g.Add(c.Name, c.Run)
		}
	}
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	var demoApps *demoRun
	if o.Demo {
		var err error
		if demoApps, err = demo(ctx, planes, o); err != nil {
			cancel()
			<-done
			demoApps.wait()
			return fmt.Errorf("demo: %w", err)
		}
	}
	printSummary(o.Out, eps, filepath.Join(o.DataDir, "endpoints.json"))
	if o.OnReady != nil {
		o.OnReady(eps)
	}
	err = <-done
	cancel()
	demoApps.wait() // the demo workloads stop with ctx
	return err
}

func (p *plane) startStorage(ctx context.Context) error {
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return err
	}
	var err error
	if p.keys, err = seal.GenerateKeyFile(filepath.Join(p.dir, "encryption.key")); err != nil {
		return err
	}
	if p.etcd, err = etcdembed.Start(ctx, etcdembed.Config{Dir: filepath.Join(p.dir, "etcd"), Name: p.name}); err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	if p.cli, err = p.etcd.Client(); err != nil {
		return err
	}
	p.ep = Endpoint{Name: p.name, Mode: p.mode, Zone: p.zone, EtcdEndpoint: p.etcd.Endpoint(), AdminAddresses: map[string]string{}}
	return p.reseal(ctx)
}

// caFile is the control-plane CA certificate in each plane's directory.
const caFile = "cp-ca.pem"

// writeCA writes the plane's control-plane CA certificate (public, PEM)
// to <data-dir>/<plane>/cp-ca.pem and names it in the endpoint.
func (p *plane) writeCA(ctx context.Context) error {
	pem, err := cptls.RootPEM(ctx, store.New(p.cli, store.WithKeyring(p.keys)))
	if err != nil {
		return fmt.Errorf("%s: control-plane CA: %w", p.name, err)
	}
	path, err := filepath.Abs(filepath.Join(p.dir, caFile))
	if err != nil {
		return err
	}
	if err := writeFile(path, pem, 0o644); err != nil {
		return fmt.Errorf("%s: write the control-plane CA: %w", p.name, err)
	}
	p.ep.CACertFile = path
	return nil
}

// reseal re-seals every sealed value with the first key of encryption.key
// before the services start (up is the only writer of its etcd), so after a
// new key is put first and up restarted once, the old key can be dropped.
func (p *plane) reseal(ctx context.Context) error {
	res, err := store.New(p.cli, store.WithKeyring(p.keys)).Reseal(ctx)
	if err != nil {
		return fmt.Errorf("%s: re-seal with key %q: %w", p.name, p.keys.ActiveKeyID(), err)
	}
	if res.Resealed > 0 {
		p.log.Warn("re-sealed stored secrets with the first key of encryption.key; older keys can now be removed from it",
			"resealed", res.Resealed, "key", p.keys.ActiveKeyID(), "file", filepath.Join(p.dir, "encryption.key"))
	}
	if len(res.Failed) > 0 {
		p.log.Error("some stored secrets cannot be opened with encryption.key and were skipped; restore the key that sealed them, or remove them with weftctl admin repair --delete",
			"count", len(res.Failed), "keys", res.Failed)
	}
	return nil
}

// component starts one service in a control plane.
type component struct {
	name  string
	start func(ctx context.Context, p *plane, all []*plane) error
}

// components run in this order in every control plane.
var components = []component{
	{"api-server", startAPIServer},
	{"ca-service", startCAService},
	{"zone-sync", startZoneSync},
	{"xds-server", startXDSServer},
	{"dns-server", startDNSServer},
	{"ingress-manager", startIngress},
}

// startIngress runs each zone's ingress-manager with the built-in data
// path: it keeps the zone's ZoneIngress (advertising its own listen
// address, on loopback) and routes other zones' connections by SNI, with
// the routes its zone's xds-server serves it over ADS (TLS from the
// control-plane CA, an ingress token issued by the zone's own key).
func startIngress(ctx context.Context, p *plane, _ []*plane) error {
	if p.mode != "zone" {
		return nil
	}
	cfg := ingressapp.Default()
	cfg.Zone, cfg.Address, cfg.AdminAddress = p.zone, p.addr(portIngress), p.addr(portIngAdmin)
	cfg.Etcd.Client, cfg.Logger = p.cli, p.log
	// The xds-server (started before) made the control-plane CA; the file
	// is written again with the endpoints, unchanged.
	if err := p.writeCA(ctx); err != nil {
		return err
	}
	cfg.XDSServer, cfg.CPCAFile = p.ep.XDSAddress, p.ep.CACertFile
	c := token.Claims{Kind: token.KindIngress, Zone: p.zone}
	c.Subject = cfg.Name
	var err error
	if cfg.Token, _, err = token.New(store.New(p.cli, store.WithKeyring(p.keys))).Issue(ctx, c, 365*24*time.Hour); err != nil {
		return fmt.Errorf("ingress token: %w", err)
	}
	if cfg.TracerProvider, err = p.tracer(ctx, "ingress-manager"); err != nil {
		return err
	}
	a, err := ingressapp.New(cfg)
	if err != nil {
		return err
	}
	p.ep.IngressAddress = a.Addr()
	p.ep.AdminAddresses["ingress-manager"] = a.AdminAddr()
	p.add("ingress-manager", a.Run)
	return nil
}

// startXDSServer serves ADS over TLS from the control-plane CA; it reaches
// ca-service with a control-plane client certificate (the same etcd).
// Global serves no proxies: dataplanes connect to their zone.
func startXDSServer(ctx context.Context, p *plane, _ []*plane) error {
	if p.mode == "global" {
		return nil
	}
	cfg := xdsapp.Default()
	cfg.Address, cfg.AdminAddress, cfg.InstanceID, cfg.Zone = p.addr(portXDS), p.addr(portXDSAdmin), "up-"+p.name, p.zone
	cfg.TLSHostnames = []string{"localhost", p.host}
	cfg.CA.Address = p.ep.CAAddress
	cfg.Etcd.Client, cfg.Encryption.Keyring, cfg.Logger = p.cli, p.keys, p.log
	var err error
	if cfg.TracerProvider, err = p.tracer(ctx, "xds-server"); err != nil {
		return err
	}
	a, err := xdsapp.New(cfg)
	if err != nil {
		return err
	}
	p.ep.XDSAddress = a.Addr()
	p.xdsAddr.Store(a.Addr())
	p.ep.AdminAddresses["xds-server"] = a.AdminAddr()
	p.add("xds-server", a.Run)
	return nil
}

// startDNSServer allocates VIPs and answers .mesh names. Global has no
// dataplanes to answer for.
func startDNSServer(ctx context.Context, p *plane, _ []*plane) error {
	if p.mode == "global" {
		return nil
	}
	cfg := dnsapp.Default()
	cfg.Address, cfg.AdminAddress, cfg.Zone = p.addr(portDNS), p.addr(portDNSAdmin), p.zone
	cfg.Etcd.Client, cfg.Logger = p.cli, p.log
	var err error
	if cfg.TracerProvider, err = p.tracer(ctx, "dns-server"); err != nil {
		return err
	}
	a, err := dnsapp.New(cfg)
	if err != nil {
		return err
	}
	p.ep.DNSAddress = a.Addr()
	p.ep.AdminAddresses["dns-server"] = a.AdminAddr()
	p.add("dns-server", a.Run)
	return nil
}

// startZoneSync serves zones on global and links each zone to global. The
// global plane starts first, so its address and CA are known to the zones.
func startZoneSync(ctx context.Context, p *plane, all []*plane) error {
	if p.mode == "standalone" {
		return nil
	}
	cfg := zsapp.Default()
	cfg.InstanceID = "up-" + p.name
	cfg.Etcd.Client, cfg.Encryption.Keyring, cfg.Logger = p.cli, p.keys, p.log
	cfg.AdminAddress = p.addr(portSyncAdm)
	global := all[0]
	gst := store.New(global.cli, store.WithKeyring(global.keys))
	var err error
	if p.mode == "global" {
		cfg.Mode, cfg.Address = zsapp.ModeGlobal, p.addr(portSync)
		if cfg.ServerTLS, err = cptls.ServerConfig(ctx, gst, []string{"localhost", p.host}); err != nil {
			return err
		}
	} else {
		// The zone must exist on global and present a zone token signed there.
		z := resource.New(resource.ZoneType, "", p.zone)
		z.Meta.Origin = "global"
		if _, err := gst.Create(ctx, z); err != nil && !store.IsAlreadyExists(err) {
			return err
		}
		c := token.Claims{Kind: token.KindZone, Zone: p.zone}
		c.Subject = p.zone
		if cfg.Token, _, err = token.New(gst).Issue(ctx, c, 365*24*time.Hour); err != nil {
			return err
		}
		cfg.Mode, cfg.Zone, cfg.GlobalAddress = zsapp.ModeZone, p.zone, global.ep.ZoneSyncAddress
		if cfg.ClientTLS, err = cptls.ClientConfig(ctx, gst); err != nil {
			return err
		}
	}
	if cfg.TracerProvider, err = p.tracer(ctx, "zone-sync"); err != nil {
		return err
	}
	a, err := zsapp.New(cfg)
	if err != nil {
		return err
	}
	if p.mode == "global" {
		p.ep.ZoneSyncAddress = a.Addr()
	}
	p.ep.AdminAddresses["zone-sync"] = a.AdminAddr()
	p.add("zone-sync", a.Run)
	return nil
}

func startCAService(ctx context.Context, p *plane, _ []*plane) error {
	cfg := caapp.Default()
	cfg.Address, cfg.AdminAddress, cfg.InstanceID = p.addr(portCA), p.addr(portCAAdmin), "up-"+p.name
	cfg.Etcd.Client, cfg.Encryption.Keyring, cfg.Logger = p.cli, p.keys, p.log
	cfg.TLSHostnames = []string{"localhost", p.host}
	// In a zone, mesh roots arrive from global through zone-sync, so all
	// zones issue under one root.
	cfg.CreateBuiltinRoots = p.mode != "zone"
	var err error
	if cfg.TracerProvider, err = p.tracer(ctx, "ca-service"); err != nil {
		return err
	}
	a, err := caapp.New(cfg)
	if err != nil {
		return err
	}
	p.ep.CAAddress = a.Addr()
	p.ep.AdminAddresses["ca-service"] = a.AdminAddr()
	p.add("ca-service", a.Run)
	return nil
}

func startAPIServer(ctx context.Context, p *plane, _ []*plane) error {
	cfg := apiapp.Default()
	cfg.GRPCAddress, cfg.HTTPAddress, cfg.AdminAddress = p.addr(portAPIGRPC), p.addr(portAPIHTTP), p.addr(portAPIAdmin)
	cfg.Mode, cfg.Zone, cfg.InstanceID = p.mode, p.zone, "up-"+p.name
	// Config dumps and policy previews go to this plane's xds-server
	// (started after the api-server; global runs none: 501 there).
	cfg.XDS.Address = ""
	if p.mode != "global" {
		cfg.XDS.AddressFunc = func() string { s, _ := p.xdsAddr.Load().(string); return s }
	}
	cfg.Etcd.Client, cfg.Encryption.Keyring, cfg.Logger = p.cli, p.keys, p.log
	var err error
	if cfg.TracerProvider, err = p.tracer(ctx, "api-server"); err != nil {
		return err
	}
	a, err := apiapp.New(ctx, cfg)
	if err != nil {
		return err
	}
	tok, err := adminToken(ctx, a.Keys(), filepath.Join(filepath.Dir(p.dir), "endpoints.json"), p.name, p.log)
	if err != nil {
		return err
	}
	p.api = a
	p.ep.APIURL, p.ep.GRPCAddress, p.ep.AdminToken = "http://"+a.HTTPAddr(), a.GRPCAddr(), tok
	p.ep.AdminAddresses["api-server"] = a.AdminAddr()
	p.add("api-server", a.Run)
	return nil
}

func writeEndpoints(path string, eps Endpoints) error {
	data, err := json.MarshalIndent(eps, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(path, append(data, '\n'), 0o600)
}

// writeFile replaces path through a temporary file and a rename.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func printSummary(w io.Writer, eps Endpoints, file string) {
	fmt.Fprintln(w, "Weft is up.")
	for _, ep := range eps.ControlPlanes {
		fmt.Fprintf(w, "\n  %s (%s)\n", ep.Name, ep.Mode)
		fmt.Fprintf(w, "    REST API      %s\n", ep.APIURL)
		fmt.Fprintf(w, "    gRPC API      %s\n", ep.GRPCAddress)
		fmt.Fprintf(w, "    web GUI       %s/gui/\n", ep.APIURL)
		for _, kv := range [][2]string{{"xDS (ADS)", ep.XDSAddress}, {"CA", ep.CAAddress}, {"DNS", ep.DNSAddress},
			{"zone-sync", ep.ZoneSyncAddress}, {"ingress", ep.IngressAddress}, {"CA cert", ep.CACertFile}} {
			if kv[1] != "" {
				fmt.Fprintf(w, "    %-13s %s\n", kv[0], kv[1])
			}
		}
		admin := make([]string, 0, len(ep.AdminAddresses))
		for svc, addr := range ep.AdminAddresses {
			admin = append(admin, svc+" "+addr)
		}
		sort.Strings(admin)
		fmt.Fprintf(w, "    %-13s %s\n", "admin", strings.Join(admin, ", "))
		fmt.Fprintf(w, "    %-13s %s\n", "admin token", ep.AdminToken)
	}
	fmt.Fprintf(w, "\nAdmin tokens are also in %s and your weftctl config (local-<name>).\n", file)
	fmt.Fprintf(w, "\nTry:  curl -H \"Authorization: Bearer $(jq -r '.controlPlanes[0].adminToken' %s)\" %s/meshes\n", file, eps.ControlPlanes[0].APIURL)
	fmt.Fprintf(w, "\nWeb GUI sign-in link (stores the token in that browser tab and removes it from the address bar):\n  %s/gui/?token=%s\n",
		eps.ControlPlanes[0].APIURL, url.QueryEscape(eps.ControlPlanes[0].AdminToken))
	fmt.Fprintln(w, "Ctrl-C stops everything; data is kept.")
}

// adminTokenValidity is the life of the admin token weftctl up issues;
// one with less than adminTokenRenewBefore left is replaced.
const (
	adminTokenValidity    = 365 * 24 * time.Hour
	adminTokenRenewBefore = 30 * 24 * time.Hour
)

// adminToken reuses the admin token of the previous run (in endpoints.json)
// while it is valid for more than adminTokenRenewBefore, so restarts do
// not pile up year-long admin tokens. Otherwise it issues a new one and
// revokes the previous one if that still verifies.
func adminToken(ctx context.Context, keys *token.Keys, endpointsFile, plane string, log *slog.Logger) (string, error) {
	old := ""
	if data, err := os.ReadFile(endpointsFile); err == nil {
		var eps Endpoints
		if json.Unmarshal(data, &eps) == nil {
			for _, cp := range eps.ControlPlanes {
				if cp.Name == plane {
					old = cp.AdminToken
				}
			}
		}
	}
	var prev *token.Claims
	if old != "" {
		c, err := keys.Verify(ctx, old)
		switch {
		case err == nil && c.IsAdmin() && c.ExpiresAt != nil && time.Until(c.ExpiresAt.Time) > adminTokenRenewBefore:
			return old, nil
		case err == nil:
			prev = c
		case !token.IsInvalid(err):
			return "", err
		}
	}
	c := token.Claims{Kind: token.KindUser, Groups: []string{token.AdminGroup}}
	c.Subject = "admin"
	tok, _, err := keys.Issue(ctx, c, adminTokenValidity)
	if err != nil {
		return "", err
	}
	if prev != nil && prev.ID != "" {
		if _, err := keys.Revoke(ctx, prev.ID, prev.ExpiresAt.Time); err != nil {
			return "", fmt.Errorf("revoke the previous admin token: %w", err)
		}
		log.Info("replaced the admin token (the previous one is revoked)", "revoked", prev.ID)
	}
	return tok, nil
}
