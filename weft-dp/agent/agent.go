// Package agent is weft-dp's work beside a workload: it writes the xDS
// bootstrap a proxy starts from (Envoy's, or grpc-go's for proxyless
// applications) and, for proxyless applications, keeps the certificate
// files grpc-go's file_watcher provider reads fresh from the xds-server's
// SDS. It is a package (not internal) so that end-to-end tests can run
// exactly what `weft-dp run` runs.
package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weftmesh/weft/pkg/xdsnames"
)

// Proxy types.
const (
	ProxyEnvoy = xdsnames.KindEnvoy
	ProxyGRPC  = xdsnames.KindGRPC
	// ProxyIngress is an Envoy zone ingress: node id
	// xdsnames.IngressNodeID(Zone, Name), an ingress token, no mesh, no
	// certificates (the ingress never terminates TLS).
	ProxyIngress = xdsnames.KindIngress
)

// Names shared with the xds-server (it generates the resources these refer
// to): SDS secret names, the grpc-go certificate provider instance, node
// metadata keys and the server listener template. They are defined once, in
// pkg/xdsnames.
const (
	IdentityCertSecret         = xdsnames.IdentityCertSecret
	MeshCASecret               = xdsnames.MeshCASecret
	CertProviderInstance       = xdsnames.CertProviderInstance
	MetadataToken              = xdsnames.MetadataToken
	MetadataKind               = xdsnames.MetadataKind
	ServerListenerNameTemplate = xdsnames.ServerListenerNameTemplate
	secretTypeURL              = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
)

// MaxSecretResponse bounds an SDS response weft-dp accepts.
const MaxSecretResponse = 1 << 20

// Config is what the agent needs.
type Config struct {
	// CP is the xds-server as a gRPC target: host:port, or dns:///name:port
	// to reach every replica behind one name.
	CP   string
	Mesh string
	// Zone is the zone of an ingress (ProxyIngress only; Mesh is empty).
	Zone      string
	Name      string
	Token     string
	ProxyType string
	Workdir   string
	// CPCAFile verifies the xds-server's TLS certificate; empty means
	// plaintext (loopback and tests only: the token travels with it).
	CPCAFile string
	// CertRefresh is grpc-go's file_watcher refresh interval.
	CertRefresh time.Duration
	Log         *slog.Logger
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.CP == "" {
		errs = append(errs, errors.New("--cp: xds-server address required"))
	}
	if c.ProxyType == ProxyIngress {
		// The ingress serves every mesh of its zone: it has a zone, no mesh.
		if c.Zone == "" || strings.Contains(c.Zone, ".") {
			errs = append(errs, errors.New("--zone: required with --proxy-type ingress, without dots"))
		}
		if c.Mesh != "" {
			errs = append(errs, errors.New("--mesh: not used with --proxy-type ingress (an ingress serves every mesh of its zone)"))
		}
		if c.Name == "" {
			errs = append(errs, errors.New("--name: required (the ZoneIngress name, ingress-manager's --name)"))
		}
		if c.Token == "" {
			errs = append(errs, errors.New("--token-file: an ingress token is required (weftctl generate ingress-token --zone Z --name N)"))
		}
	} else {
		if c.Mesh == "" || strings.Contains(c.Mesh, ".") {
			errs = append(errs, errors.New("--mesh: required, without dots"))
		}
		if c.Zone != "" {
			errs = append(errs, errors.New("--zone: only with --proxy-type ingress"))
		}
		if c.Name == "" {
			errs = append(errs, errors.New("--name: required"))
		}
		if c.Token == "" {
			errs = append(errs, errors.New("--token-file: a dataplane token is required"))
		}
	}
	if c.ProxyType != ProxyEnvoy && c.ProxyType != ProxyGRPC && c.ProxyType != ProxyIngress {
		errs = append(errs, fmt.Errorf("--proxy-type: %q is not envoy, grpc or ingress", c.ProxyType))
	}
	if c.Workdir == "" {
		errs = append(errs, errors.New("--workdir: required"))
	}
	return errors.Join(errs...)
}

// NodeID is the xDS node id: <mesh>.<name> for a dataplane,
// xdsnames.IngressNodeID(zone, name) for an ingress.
func (c *Config) NodeID() string {
	if c.ProxyType == ProxyIngress {
		return xdsnames.IngressNodeID(c.Zone, c.Name)
	}
	return xdsnames.NodeID(c.Mesh, c.Name)
}

// AccessLogSocket is the unix socket of weft-dp's access-log service,
// which Envoy's gRPC access loggers reach through the bootstrap cluster
// xdsnames.AccessLogSinkCluster.
func (c *Config) AccessLogSocket() string { return filepath.Join(c.Workdir, xdsnames.AccessLogSocket) }

// CertDir is where the grpc-go certificate files live.
func (c *Config) CertDir() string { return filepath.Join(c.Workdir, xdsnames.CertDir) }

// GRPCBootstrapPath is the file GRPC_XDS_BOOTSTRAP must name.
func (c *Config) GRPCBootstrapPath() string {
	return filepath.Join(c.Workdir, xdsnames.GRPCBootstrapFile)
}

// GRPCBootstrap returns the grpc-go xDS bootstrap. The token rides in node
// metadata: grpc-go's bootstrap call credentials are experimental and need
// a TLS channel, node metadata works everywhere.
func GRPCBootstrap(c *Config) ([]byte, error) {
	refresh := c.CertRefresh
	if refresh <= 0 {
		refresh = 10 * time.Second
	}
	// The application may start in another directory: every path is
	// absolute.
	creds := []map[string]any{{"type": "insecure"}}
	if c.CPCAFile != "" {
		ca, err := filepath.Abs(c.CPCAFile)
		if err != nil {
			return nil, err
		}
		creds = []map[string]any{{"type": "tls", "config": map[string]any{"ca_certificate_file": ca}}}
	}
	dir, err := filepath.Abs(c.CertDir())
	if err != nil {
		return nil, err
	}
	b := map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      c.CP,
			"channel_creds":   creds,
			"server_features": []string{"xds_v3"},
		}},
		"node": map[string]any{
			"id":       c.NodeID(),
			"cluster":  c.Mesh,
			"metadata": map[string]any{MetadataToken: c.Token, MetadataKind: ProxyGRPC},
		},
		"certificate_providers": map[string]any{
			CertProviderInstance: map[string]any{
				"plugin_name": "file_watcher",
				"config": map[string]any{
					"certificate_file":    filepath.Join(dir, xdsnames.CertFile),
					"private_key_file":    filepath.Join(dir, xdsnames.KeyFile),
					"ca_certificate_file": filepath.Join(dir, xdsnames.CAFile),
					"refresh_interval":    strconv.FormatFloat(refresh.Seconds(), 'f', -1, 64) + "s",
				},
			},
		},
		"server_listener_resource_name_template": ServerListenerNameTemplate,
	}
	return json.MarshalIndent(b, "", "  ")
}

// EnvoyBootstrap returns an Envoy v3 bootstrap: ADS to the xds-server with
// the token as an initial gRPC header, everything else dynamic. For
// ProxyIngress the node is the zone ingress (node cluster the zone, metadata
// kind ingress) and there is no access-log sink: an ingress only passes TLS
// through, it has no certificates (no SDS) and no TrafficLog.
func EnvoyBootstrap(c *Config, adminPort int) ([]byte, error) {
	host, port, err := splitTarget(c.CP)
	if err != nil {
		return nil, err
	}
	cluster := map[string]any{
		"name":            "weft_xds",
		"type":            "STRICT_DNS",
		"connect_timeout": "5s",
		"typed_extension_protocol_options": map[string]any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": map[string]any{
				"@type":                "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
				"explicit_http_config": map[string]any{"http2_protocol_options": map[string]any{}},
			},
		},
		"load_assignment": map[string]any{
			"cluster_name": "weft_xds",
			"endpoints": []any{map[string]any{"lb_endpoints": []any{map[string]any{
				"endpoint": map[string]any{"address": map[string]any{"socket_address": map[string]any{"address": host, "port_value": port}}},
			}}}},
		},
	}
	if c.CPCAFile != "" {
		cluster["transport_socket"] = map[string]any{
			"name": "envoy.transport_sockets.tls",
			"typed_config": map[string]any{
				"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
				"common_tls_context": map[string]any{"validation_context": map[string]any{
					"trusted_ca": map[string]any{"filename": c.CPCAFile},
				}},
			},
		}
	}
	ads := map[string]any{
		"api_type":              "GRPC",
		"transport_api_version": "V3",
		"grpc_services": []any{map[string]any{
			"envoy_grpc":       map[string]any{"cluster_name": "weft_xds"},
			"initial_metadata": []any{map[string]any{"key": "authorization", "value": "Bearer " + c.Token}},
		}},
	}
	nodeCluster, kind, static := c.Mesh, ProxyEnvoy, []any{cluster, accessLogSink(c)}
	if c.ProxyType == ProxyIngress {
		nodeCluster, kind, static = c.Zone, ProxyIngress, []any{cluster}
	}
	b := map[string]any{
		"node": map[string]any{
			"id":       c.NodeID(),
			"cluster":  nodeCluster,
			"metadata": map[string]any{MetadataKind: kind},
		},
		"admin": map[string]any{"address": map[string]any{"socket_address": map[string]any{"address": "127.0.0.1", "port_value": adminPort}}},
		"dynamic_resources": map[string]any{
			"ads_config": ads,
			"lds_config": map[string]any{"ads": map[string]any{}, "resource_api_version": "V3"},
			"cds_config": map[string]any{"ads": map[string]any{}, "resource_api_version": "V3"},
		},
		"static_resources": map[string]any{"clusters": static},
	}
	return json.MarshalIndent(b, "", "  ")
}

// accessLogSink is the static cluster of weft-dp's access-log service (a
// unix socket in the workdir), named by the gRPC access loggers the
// xds-server generates for TrafficLogs to tcp backends.
func accessLogSink(c *Config) map[string]any {
	return map[string]any{
		"name":            xdsnames.AccessLogSinkCluster,
		"type":            "STATIC",
		"connect_timeout": "1s",
		"typed_extension_protocol_options": map[string]any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": map[string]any{
				"@type":                "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
				"explicit_http_config": map[string]any{"http2_protocol_options": map[string]any{}},
			},
		},
		"load_assignment": map[string]any{
			"cluster_name": xdsnames.AccessLogSinkCluster,
			"endpoints": []any{map[string]any{"lb_endpoints": []any{map[string]any{
				"endpoint": map[string]any{"address": map[string]any{"pipe": map[string]any{"path": c.AccessLogSocket()}}},
			}}}},
		},
	}
}

func splitTarget(target string) (string, int, error) {
	t := target
	if i := strings.Index(t, ":///"); i >= 0 {
		t = t[i+4:]
	}
	i := strings.LastIndexByte(t, ':')
	if i <= 0 {
		return "", 0, fmt.Errorf("--cp %q: want host:port", target)
	}
	var port int
	if _, err := fmt.Sscanf(t[i+1:], "%d", &port); err != nil || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("--cp %q: bad port", target)
	}
	return strings.Trim(t[:i], "[]"), port, nil
}

// WriteFileAtomic writes via a temporary file and rename, so readers never
// see half a file.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Reconnection bounds. grpc-go's connection back-off (1 s growing to 120 s
// by default) and the stream's own back-off used to add up to 11–13 s
// before weft-dp noticed a restarted xds-server; both are capped so that a
// returning replica is reached again within a few seconds.
const (
	MaxConnectBackoff = 2 * time.Second
	MaxStreamBackoff  = 2 * time.Second
)

// connectParams is grpc's connection back-off for the xds-server channel.
var connectParams = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: MaxConnectBackoff},
	MinConnectTimeout: 5 * time.Second,
}

// Dial connects to the xds-server.
func Dial(c *Config) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if c.CPCAFile != "" {
		pem, err := os.ReadFile(c.CPCAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no certificates", c.CPCAFile)
		}
		creds = credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	}
	return grpc.NewClient(c.CP, grpc.WithTransportCredentials(creds), grpc.WithConnectParams(connectParams),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxSecretResponse)))
}

// How long weft-dp waits before it explains a silence: no configuration
// at all (its Dataplane or mesh does not exist), or configuration without
// a certificate (the mesh has mTLS off).
var (
	WaitForConfig = 5 * time.Second
	WaitForCert   = 3 * time.Second
)

// RunCertificates keeps D/certs/{cert,key,ca}.pem fresh: an SDS
// subscription (SotW ADS) to the xds-server for identity_cert and mesh_ca
// with the dataplane token, reconnecting with backoff until ctx ends.
// written is called after each write. It says at info what is happening:
// which xds-server it is connected to, each certificate written (SPIFFE
// ID, expiry), a missing Dataplane, a mesh with mTLS off, certificates
// withdrawn; a failure is logged once with its fix, not at every retry.
func RunCertificates(ctx context.Context, c *Config, written func()) error {
	conn, err := Dial(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	w := &watcher{c: c, log: c.Log, written: written}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := w.stream(ctx, conn)
		if ctx.Err() != nil {
			return nil
		}
		if isPermanent(err) {
			return err
		}
		if w.received {
			// The stream worked before it ended: start the back-off over.
			backoff = 100 * time.Millisecond
		}
		w.failed(err, backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, MaxStreamBackoff)
	}
	return nil
}

func isPermanent(err error) bool {
	return err != nil && strings.Contains(err.Error(), "PermissionDenied")
}

// watcher is the state of the certificate subscription across streams.
type watcher struct {
	c       *Config
	log     *slog.Logger
	written func()
	// received is set when the current stream got a response.
	received bool
	// lastErr is the last failure logged, so a retry loop logs it once.
	lastErr string
	// serial of the certificate last written; empty before the first.
	serial string
	// mtlsOff is set once "mTLS is off" has been said, until a certificate
	// arrives.
	mtlsOff bool
	noCert  *time.Timer
}

// failed logs a stream failure once, with its fix when it is a known
// misconfiguration; the same failure again is logged at debug.
func (w *watcher) failed(err error, retry time.Duration) {
	hint := connectHint(w.c, err.Error())
	key := hint
	if key == "" {
		key = err.Error()
	}
	if w.lastErr == key {
		w.log.Debug("xds-server still unreachable, retrying", "cp", w.c.CP, "err", err, "retry", retry)
		return
	}
	w.lastErr = key
	if hint != "" {
		w.log.Error(hint, "cp", w.c.CP, "err", err)
		return
	}
	w.log.Warn("xds-server stream ended, reconnecting (retrying every few seconds; logged again when the error changes)", "cp", w.c.CP, "err", err, "retry", retry)
}

// connectHint recognises a TLS/plaintext mismatch in a connection error.
func connectHint(c *Config, msg string) string {
	switch {
	case c.CPCAFile == "" && (strings.Contains(msg, "error reading server preface") || strings.Contains(msg, "connection reset by peer")):
		return "the xds-server port speaks TLS but --cp-ca-file is not set: pass --cp-ca-file with the control-plane CA " +
			"(curl -s http://<xds-server admin address>/control-plane-ca.pem > cp-ca.pem; under weftctl up the admin address is in endpoints.json, 127.0.0.1:5688 by default)"
	case c.CPCAFile != "" && strings.Contains(msg, "first record does not look like a TLS handshake"):
		return "the xds-server port speaks plaintext (an xds-server run with --insecure-dev) but --cp-ca-file is set: drop --cp-ca-file"
	case c.CPCAFile != "" && strings.Contains(msg, "certificate signed by unknown authority"):
		return "the xds-server's certificate does not chain to --cp-ca-file: fetch the CA again from the xds-server's admin address (/control-plane-ca.pem)"
	}
	return ""
}

func (w *watcher) stream(ctx context.Context, conn *grpc.ClientConn) error {
	c := w.c
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w.received = false
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.Token)
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	meta, _ := structpb.NewStruct(map[string]any{MetadataKind: c.ProxyType})
	node := &corev3.Node{Id: c.NodeID(), Cluster: c.Mesh, Metadata: meta, UserAgentName: "weft-dp"}
	req := &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: secretTypeURL, ResourceNames: []string{IdentityCertSecret, MeshCASecret}}
	if err := stream.Send(req); err != nil {
		return err
	}
	// The xds-server answers only once it can generate configuration for
	// this proxy, that is, once its mesh and Dataplane exist.
	waiting := time.AfterFunc(WaitForConfig, func() {
		w.log.Info("no configuration from the xds-server yet: waiting for the Dataplane to exist in its mesh (register it with weftctl apply -f, or run weft-dp with --dataplane-file)",
			"mesh", c.Mesh, "dataplane", c.Name, "cp", c.CP)
	})
	defer waiting.Stop()
	defer w.stopNoCert()
	for {
		resp, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("%s: %w", "sds", err)
		}
		if !w.received {
			waiting.Stop()
			w.received = true
			w.lastErr = ""
			addr := ""
			if p, ok := peer.FromContext(stream.Context()); ok && p.Addr != nil {
				addr = p.Addr.String()
			}
			w.log.Info("connected to xds-server", "cp", c.CP, "address", addr, "node", c.NodeID())
		}
		ack := &discoveryv3.DiscoveryRequest{TypeUrl: secretTypeURL, ResourceNames: req.ResourceNames, ResponseNonce: resp.GetNonce(), VersionInfo: resp.GetVersionInfo()}
		if len(resp.GetResources()) == 0 {
			w.noCertificate()
		} else if werr := w.write(resp); werr != nil {
			c.Log.Error("cannot write certificates", "err", werr)
			ack.VersionInfo = ""
			ack.ErrorDetail = statusProto(werr)
		}
		if err := stream.Send(ack); err != nil {
			return err
		}
	}
}

// noCertificate handles a response without certificates: mTLS is off in
// the mesh, or the certificate is still being signed (it follows within a
// moment). Said once, after WaitForCert without a certificate.
func (w *watcher) noCertificate() {
	c := w.c
	if w.serial != "" {
		w.log.Info("the xds-server withdrew this dataplane's certificate: mTLS was turned off in the mesh (the files keep the last certificate)", "mesh", c.Mesh)
		w.serial = ""
		w.mtlsOff = true
		return
	}
	if w.mtlsOff || w.noCert != nil {
		return
	}
	w.noCert = time.AfterFunc(WaitForCert, func() {
		w.log.Info("the mesh has mTLS off: no certificates will come, and the application's calls go in plaintext; enable an mTLS backend on the mesh (mtls.enabledBackend) for certificates",
			"mesh", c.Mesh, "dataplane", c.Name)
	})
	w.mtlsOff = true
}

func (w *watcher) stopNoCert() {
	if w.noCert != nil {
		if w.noCert.Stop() {
			w.mtlsOff = false // not said yet: say it on the next stream
		}
		w.noCert = nil
	}
}

func (w *watcher) write(resp *discoveryv3.DiscoveryResponse) error {
	leaf, err := writeCerts(w.c, resp)
	if err != nil {
		return err
	}
	w.stopNoCert()
	w.mtlsOff = false
	if serial := leaf.SerialNumber.String(); serial != w.serial {
		w.serial = serial
		ids := make([]string, 0, len(leaf.URIs))
		for _, u := range leaf.URIs {
			ids = append(ids, u.String())
		}
		w.log.Info("certificate written", "spiffeID", strings.Join(ids, ","), "expires", leaf.NotAfter.UTC().Format(time.RFC3339), "dir", w.c.CertDir())
	}
	if w.written != nil {
		w.written()
	}
	return nil
}

// writeCerts writes the certificate files and returns the leaf.
func writeCerts(c *Config, resp *discoveryv3.DiscoveryResponse) (*x509.Certificate, error) {
	chain, key, ca, err := ParseSecrets(resp)
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(chain, key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	dir := c.CertDir()
	// The CA first and the key before the certificate: file_watcher reads
	// the pair together, and a new CA must be trusted before it is needed.
	if err := WriteFileAtomic(filepath.Join(dir, xdsnames.CAFile), ca, 0o644); err != nil {
		return nil, err
	}
	if err := WriteFileAtomic(filepath.Join(dir, xdsnames.KeyFile), key, 0o600); err != nil {
		return nil, err
	}
	return leaf, WriteFileAtomic(filepath.Join(dir, xdsnames.CertFile), chain, 0o644)
}

// ParseSecrets extracts and checks the PEM material of an SDS response:
// the certificate must match its key and the CA bundle must hold a
// certificate.
func ParseSecrets(resp *discoveryv3.DiscoveryResponse) (chain, key, ca []byte, err error) {
	for _, a := range resp.GetResources() {
		s := &tlsv3.Secret{}
		if err := a.UnmarshalTo(s); err != nil {
			return nil, nil, nil, fmt.Errorf("secret: %w", err)
		}
		switch s.GetName() {
		case IdentityCertSecret:
			chain = s.GetTlsCertificate().GetCertificateChain().GetInlineBytes()
			key = s.GetTlsCertificate().GetPrivateKey().GetInlineBytes()
		case MeshCASecret:
			ca = s.GetValidationContext().GetTrustedCa().GetInlineBytes()
		}
	}
	if len(chain) == 0 || len(key) == 0 || len(ca) == 0 {
		return nil, nil, nil, errors.New("response lacks identity_cert or mesh_ca")
	}
	if _, err := tls.X509KeyPair(chain, key); err != nil {
		return nil, nil, nil, fmt.Errorf("identity_cert: %w", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(ca) {
		return nil, nil, nil, errors.New("mesh_ca: no certificates")
	}
	return chain, key, ca, nil
}
