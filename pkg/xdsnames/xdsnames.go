// Package xdsnames is the wire contract between the xds-server and weft-dp:
// the node metadata keys, proxy kinds, SDS secret names, the grpc-go
// certificate provider instance and the certificate file names weft-dp
// writes, and the formats of node ids and listener resource names. Both
// processes use these definitions; the values are pinned by a test, since
// changing one breaks every deployed proxy and bootstrap.
package xdsnames

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Node metadata keys weft-dp (and sidecar bootstraps) set.
const (
	// MetadataToken carries the dataplane token for clients that cannot set
	// gRPC headers (grpc-go's xDS client). The nested form
	// {"dataplane": {"token": ...}} is accepted too.
	MetadataToken = "dataplane.token"
	// MetadataKind is the proxy kind: KindEnvoy, KindGRPC or KindIngress.
	MetadataKind = "kind"
)

// Proxy kinds (the value of MetadataKind).
const (
	KindEnvoy   = "envoy"
	KindGRPC    = "grpc"
	KindIngress = "ingress"
)

// SDS secret names: the workload certificate with its key, and the mesh
// trust bundle.
const (
	IdentityCertSecret = "identity_cert"
	MeshCASecret       = "mesh_ca"
)

// CertProviderInstance is the grpc-go bootstrap certificate provider
// instance weft-dp writes (file_watcher over CertDir) and the xds-server's
// proxyless TLS contexts name.
const CertProviderInstance = "default"

// Certificate files weft-dp keeps fresh for grpc-go's file_watcher, inside
// <workdir>/CertDir.
const (
	CertDir  = "certs"
	CertFile = "cert.pem"
	KeyFile  = "key.pem"
	CAFile   = "ca.pem"
)

// ServerListenerNameTemplate is the server listener resource name grpc-go
// servers ask for (bootstrap server_listener_resource_name_template); %s is
// the listening host:port.
const ServerListenerNameTemplate = "grpc/server?xds.resource.listening_address=%s"

// ServerListenerName is the resource name a proxyless server listening on
// addr:port asks for.
func ServerListenerName(addr string, port uint32) string {
	return fmt.Sprintf(ServerListenerNameTemplate, net.JoinHostPort(addr, strconv.FormatUint(uint64(port), 10)))
}

// ClientListenerName is what a proxyless client dials: xds:///<service>.mesh.
func ClientListenerName(service string) string { return service + ".mesh" }

// NodeID is the xDS node id of a dataplane: <mesh>.<name>.
func NodeID(mesh, name string) string { return mesh + "." + name }

// ParseNodeID splits a node id "<mesh>.<name>"; mesh names carry no dots.
func ParseNodeID(id string) (mesh, name string, err error) {
	i := strings.IndexByte(id, '.')
	if i <= 0 || i == len(id)-1 {
		return "", "", fmt.Errorf("node id %q is not <mesh>.<dataplane name>", id)
	}
	return id[:i], id[i+1:], nil
}

// IngressNodeIDPrefix starts the node id of a zone ingress. "_" is not in
// any mesh name, so no dataplane node id begins with it.
const IngressNodeIDPrefix = "_ingress."

// IngressNodeID is the xDS node id of a zone ingress (Envoy through
// weft-dp, or ingress-manager's built-in data path):
// _ingress.<zone>.<ingress name>. Every instance of one ZoneIngress shares
// it; the xds-server accepts it only with an ingress token for that zone
// and name.
func IngressNodeID(zone, name string) string { return IngressNodeIDPrefix + zone + "." + name }

// IsIngressNodeID reports whether a node id claims to be an ingress.
func IsIngressNodeID(id string) bool { return strings.HasPrefix(id, IngressNodeIDPrefix) }

// ParseIngressNodeID splits an ingress node id; zone names carry no dots.
func ParseIngressNodeID(id string) (zone, name string, err error) {
	rest, ok := strings.CutPrefix(id, IngressNodeIDPrefix)
	i := strings.IndexByte(rest, '.')
	if !ok || i <= 0 || i == len(rest)-1 {
		return "", "", fmt.Errorf("node id %q is not %s<zone>.<ingress name>", id, IngressNodeIDPrefix)
	}
	return rest[:i], rest[i+1:], nil
}
