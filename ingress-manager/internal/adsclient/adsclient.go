// Package adsclient is the built-in ingress's xDS client: one SotW ADS
// stream to this zone's xds-server, as the zone ingress (node id
// xdsnames.IngressNodeID, authenticated by an ingress token). It
// subscribes to Listeners, Clusters and ClusterLoadAssignments — exactly
// what an Envoy ingress gets — ACKs what it can use, NACKs what it cannot
// (keeping the last good state), and turns the Listener's filter chains
// (server_names → tcp_proxy cluster) and the clusters' healthy endpoints
// into the proxy's routing table. It reconnects with capped exponential
// back-off, logging each distinct failure once.
package adsclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weftmesh/weft/ingress-manager/proxy"
	"github.com/weftmesh/weft/pkg/xdsnames"
)

// Resource type URLs the ingress subscribes to.
const (
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	ClusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
)

var typeURLs = []string{ListenerType, ClusterType, EndpointType}

// Config configures the client.
type Config struct {
	// Server is the xds-server's host:port.
	Server string
	// CAFile verifies the xds-server's TLS certificate (the control-plane
	// CA); empty: plaintext (an xds-server run with --insecure-dev).
	CAFile string
	// Token is the ingress token (weftctl generate ingress-token).
	Token string
	// Zone and Name are the ingress's: its node id is
	// xdsnames.IngressNodeID(Zone, Name).
	Zone, Name string
	// MaxEndpoints bounds the routing table (0: no bound).
	MaxEndpoints int
	// Apply receives each routing table built from a complete state.
	Apply func(t *proxy.Table, dropped int)
	// MinBackoff and MaxBackoff bound the reconnect delay (defaults 250ms
	// and 10s).
	MinBackoff, MaxBackoff time.Duration
	Log                    *slog.Logger
}

// MaxResponseSize bounds one xDS response.
const MaxResponseSize = 64 << 20

// Client follows the ingress configuration.
type Client struct {
	cfg       Config
	conn      *grpc.ClientConn
	closeOnce sync.Once
	synced    chan struct{}
	// lastErr is the last failure logged (each distinct one once).
	lastErr string
}

// New prepares a client (no connection is made until Run).
func New(cfg Config) (*Client, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(10*time.Second, cfg.MinBackoff)
	}
	creds := insecure.NewCredentials()
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no certificates", cfg.CAFile)
		}
		creds = credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	}
	conn, err := grpc.NewClient(cfg.Server, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxResponseSize)))
	if err != nil {
		return nil, err
	}
	return &Client{cfg: cfg, conn: conn, synced: make(chan struct{})}, nil
}

// Close releases the connection (Run does when it returns).
func (c *Client) Close() {
	c.closeOnce.Do(func() { _ = c.conn.Close() })
}

// NodeID is the node id the client connects as.
func (c *Client) NodeID() string { return xdsnames.IngressNodeID(c.cfg.Zone, c.cfg.Name) }

// Synced is closed once the first routing table was applied.
func (c *Client) Synced() <-chan struct{} { return c.synced }

// Run follows the configuration until ctx ends, reconnecting as needed.
func (c *Client) Run(ctx context.Context) error {
	defer c.Close()
	backoff := c.cfg.MinBackoff
	for {
		got, err := c.stream(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if got {
			backoff = c.cfg.MinBackoff
		}
		c.failed(err, backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, c.cfg.MaxBackoff)
	}
}

// failed logs a stream's end once per distinct reason.
func (c *Client) failed(err error, retry time.Duration) {
	key := status.Code(err).String() + ": " + status.Convert(err).Message()
	if key == c.lastErr {
		return
	}
	c.lastErr = key
	switch status.Code(err) {
	case codes.PermissionDenied, codes.Unauthenticated:
		c.cfg.Log.Error("the xds-server refused this ingress: give it an ingress token for its zone and name (weftctl generate ingress-token --zone --name)",
			"xds_server", c.cfg.Server, "node", c.NodeID(), "err", err)
	default:
		c.cfg.Log.Warn("xds-server stream ended, reconnecting (logged again when the error changes)", "xds_server", c.cfg.Server, "err", err, "retry", retry)
	}
}

// state is what the stream holds: the last accepted resources per type.
type state struct {
	versions  map[string]string
	listeners []*listenerv3.Listener
	clusters  map[string]*clusterv3.Cluster
	endpoints map[string]*endpointv3.ClusterLoadAssignment
	seen      map[string]bool
}

// stream runs one ADS stream; got reports whether anything was received.
func (c *Client) stream(ctx context.Context) (got bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if c.cfg.Token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.cfg.Token)
	}
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(c.conn).StreamAggregatedResources(ctx)
	if err != nil {
		return false, err
	}
	meta, _ := structpb.NewStruct(map[string]any{xdsnames.MetadataKind: xdsnames.KindIngress})
	node := &corev3.Node{Id: c.NodeID(), Cluster: c.cfg.Zone, Metadata: meta, UserAgentName: "weft-ingress-manager"}
	for i, typ := range typeURLs {
		req := &discoveryv3.DiscoveryRequest{TypeUrl: typ}
		if i == 0 {
			req.Node = node
		}
		if err := s.Send(req); err != nil {
			return false, err
		}
	}
	st := &state{versions: map[string]string{}, clusters: map[string]*clusterv3.Cluster{},
		endpoints: map[string]*endpointv3.ClusterLoadAssignment{}, seen: map[string]bool{}}
	for {
		resp, err := s.Recv()
		if err != nil {
			return got, err
		}
		if !got {
			got = true
			c.lastErr = ""
			c.cfg.Log.Info("connected to the xds-server as the zone ingress", "xds_server", c.cfg.Server, "node", c.NodeID())
		}
		ack := &discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}
		if err := st.accept(resp); err != nil {
			ack.VersionInfo = st.versions[resp.GetTypeUrl()]
			ack.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
			c.cfg.Log.Warn("rejected configuration from the xds-server (keeping the last good one)", "type", resp.GetTypeUrl(), "version", resp.GetVersionInfo(), "err", err)
		} else {
			ack.VersionInfo = resp.GetVersionInfo()
			if st.complete() {
				t, dropped := st.table(c.cfg.MaxEndpoints)
				c.cfg.Apply(t, dropped)
				select {
				case <-c.synced:
				default:
					close(c.synced)
				}
			}
		}
		if err := s.Send(ack); err != nil {
			return got, err
		}
	}
}

// accept decodes a response into the state; on error the state is
// unchanged.
func (st *state) accept(resp *discoveryv3.DiscoveryResponse) error {
	typ := resp.GetTypeUrl()
	switch typ {
	case ListenerType:
		var ls []*listenerv3.Listener
		for _, a := range resp.GetResources() {
			l := &listenerv3.Listener{}
			if err := unmarshal(a, l); err != nil {
				return err
			}
			for i, fc := range l.GetFilterChains() {
				if _, err := chainCluster(fc); err != nil {
					return fmt.Errorf("listener %s: filter_chains[%d]: %w", l.GetName(), i, err)
				}
			}
			ls = append(ls, l)
		}
		st.listeners = ls
	case ClusterType:
		cs := map[string]*clusterv3.Cluster{}
		for _, a := range resp.GetResources() {
			cl := &clusterv3.Cluster{}
			if err := unmarshal(a, cl); err != nil {
				return err
			}
			cs[cl.GetName()] = cl
		}
		st.clusters = cs
	case EndpointType:
		es := map[string]*endpointv3.ClusterLoadAssignment{}
		for _, a := range resp.GetResources() {
			cla := &endpointv3.ClusterLoadAssignment{}
			if err := unmarshal(a, cla); err != nil {
				return err
			}
			es[cla.GetClusterName()] = cla
		}
		st.endpoints = es
	default:
		return fmt.Errorf("type %s was not asked for", typ)
	}
	st.versions[typ] = resp.GetVersionInfo()
	st.seen[typ] = true
	return nil
}

func unmarshal(a *anypb.Any, m proto.Message) error {
	if err := a.UnmarshalTo(m); err != nil {
		return fmt.Errorf("resource of type %s: %w", a.GetTypeUrl(), err)
	}
	return nil
}

// chainCluster is the cluster a filter chain's tcp_proxy forwards to.
func chainCluster(fc *listenerv3.FilterChain) (string, error) {
	for _, f := range fc.GetFilters() {
		if f.GetTypedConfig() == nil {
			continue
		}
		tp := &tcpproxyv3.TcpProxy{}
		if f.GetTypedConfig().MessageIs(tp) {
			if err := f.GetTypedConfig().UnmarshalTo(tp); err != nil {
				return "", err
			}
			if tp.GetCluster() == "" {
				return "", errors.New("tcp_proxy without a cluster (weighted clusters are not supported)")
			}
			return tp.GetCluster(), nil
		}
	}
	return "", errors.New("no tcp_proxy filter")
}

func (st *state) complete() bool {
	for _, t := range typeURLs {
		if !st.seen[t] {
			return false
		}
	}
	return true
}

// table builds the routing table: each server name of each filter chain
// routes to its cluster's healthy (or unknown-health) endpoints. A cluster
// or assignment that is missing is a name without endpoints.
func (st *state) table(maxEndpoints int) (*proxy.Table, int) {
	routes := map[string][]proxy.Endpoint{}
	for _, l := range st.listeners {
		for _, fc := range l.GetFilterChains() {
			cluster, _ := chainCluster(fc)
			var eps []proxy.Endpoint
			if cl := st.clusters[cluster]; cl != nil {
				name := cl.GetEdsClusterConfig().GetServiceName()
				if name == "" {
					name = cl.GetName()
				}
				eps = endpoints(st.endpoints[name])
			}
			for _, sn := range fc.GetFilterChainMatch().GetServerNames() {
				routes[sn] = eps
			}
		}
	}
	return proxy.NewNamedTable(routes, maxEndpoints)
}

func endpoints(cla *endpointv3.ClusterLoadAssignment) []proxy.Endpoint {
	var out []proxy.Endpoint
	for _, loc := range cla.GetEndpoints() {
		for _, le := range loc.GetLbEndpoints() {
			switch le.GetHealthStatus() {
			case corev3.HealthStatus_HEALTHY, corev3.HealthStatus_UNKNOWN:
			default:
				continue
			}
			sa := le.GetEndpoint().GetAddress().GetSocketAddress()
			if sa.GetAddress() == "" || sa.GetPortValue() == 0 {
				continue
			}
			out = append(out, proxy.Endpoint{Addr: net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))})
		}
	}
	return out
}
