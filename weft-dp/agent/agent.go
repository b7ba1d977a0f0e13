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
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weftmesh/weft/pkg/xdsnames"
)

// Proxy types.
const (
	ProxyEnvoy = xdsnames.KindEnvoy
	ProxyGRPC  = xdsnames.KindGRPC
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
	CP        string
	Mesh      string
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
	if c.Mesh == "" || strings.Contains(c.Mesh, ".") {
		errs = append(errs, errors.New("--mesh: required, without dots"))
	}
	if c.Name == "" {
		errs = append(errs, errors.New("--name: required"))
	}
	if c.Token == "" {
		errs = append(errs, errors.New("--token-file: a dataplane token is required"))
	}
	if c.ProxyType != ProxyEnvoy && c.ProxyType != ProxyGRPC {
		errs = append(errs, fmt.Errorf("--proxy-type: %q is not envoy or grpc", c.ProxyType))
	}
	if c.Workdir == "" {
		errs = append(errs, errors.New("--workdir: required"))
	}
	return errors.Join(errs...)
}

// NodeID is the xDS node id.
func (c *Config) NodeID() string { return xdsnames.NodeID(c.Mesh, c.Name) }

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
	creds := []map[string]any{{"type": "insecure"}}
	if c.CPCAFile != "" {
		creds = []map[string]any{{"type": "tls", "config": map[string]any{"ca_certificate_file": c.CPCAFile}}}
	}
	dir := c.CertDir()
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
// the token as an initial gRPC header, everything else dynamic.
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
	b := map[string]any{
		"node": map[string]any{
			"id":       c.NodeID(),
			"cluster":  c.Mesh,
			"metadata": map[string]any{MetadataKind: ProxyEnvoy},
		},
		"admin": map[string]any{"address": map[string]any{"socket_address": map[string]any{"address": "127.0.0.1", "port_value": adminPort}}},
		"dynamic_resources": map[string]any{
			"ads_config": ads,
			"lds_config": map[string]any{"ads": map[string]any{}, "resource_api_version": "V3"},
			"cds_config": map[string]any{"ads": map[string]any{}, "resource_api_version": "V3"},
		},
		"static_resources": map[string]any{"clusters": []any{cluster}},
	}
	return json.MarshalIndent(b, "", "  ")
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
	return grpc.NewClient(c.CP, grpc.WithTransportCredentials(creds), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxSecretResponse)))
}

// RunCertificates keeps D/certs/{cert,key,ca}.pem fresh: an SDS
// subscription (SotW ADS) to the xds-server for identity_cert and mesh_ca
// with the dataplane token, reconnecting with backoff until ctx ends.
// written is called after each write.
func RunCertificates(ctx context.Context, c *Config, written func()) error {
	conn, err := Dial(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		err := certStream(ctx, c, conn, written)
		if ctx.Err() != nil {
			return nil
		}
		if isPermanent(err) {
			return err
		}
		c.Log.Warn("certificate stream ended, reconnecting", "err", err, "retry", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
	return nil
}

func isPermanent(err error) bool {
	return err != nil && strings.Contains(err.Error(), "PermissionDenied")
}

func certStream(ctx context.Context, c *Config, conn *grpc.ClientConn, written func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
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
	for {
		resp, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("%s: %w", "sds", err)
		}
		ack := &discoveryv3.DiscoveryRequest{TypeUrl: secretTypeURL, ResourceNames: req.ResourceNames, ResponseNonce: resp.GetNonce(), VersionInfo: resp.GetVersionInfo()}
		if len(resp.GetResources()) == 0 {
			// No certificate yet (mTLS off, or still being signed): nothing
			// to write, and nothing wrong.
			c.Log.Debug("no certificate for this dataplane yet")
		} else if werr := writeCerts(c, resp); werr != nil {
			c.Log.Error("cannot write certificates", "err", werr)
			ack.VersionInfo = ""
			ack.ErrorDetail = statusProto(werr)
		} else if written != nil {
			written()
		}
		if err := stream.Send(ack); err != nil {
			return err
		}
	}
}

func writeCerts(c *Config, resp *discoveryv3.DiscoveryResponse) error {
	chain, key, ca, err := ParseSecrets(resp)
	if err != nil {
		return err
	}
	dir := c.CertDir()
	// The CA first and the key before the certificate: file_watcher reads
	// the pair together, and a new CA must be trusted before it is needed.
	if err := WriteFileAtomic(filepath.Join(dir, xdsnames.CAFile), ca, 0o644); err != nil {
		return err
	}
	if err := WriteFileAtomic(filepath.Join(dir, xdsnames.KeyFile), key, 0o600); err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dir, xdsnames.CertFile), chain, 0o644)
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
