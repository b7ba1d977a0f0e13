package xds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/weftmesh/weft/pkg/token"
	inspectv1 "github.com/weftmesh/weft/proto/gen/go/weft/inspect/v1"
)

// TestConfigDumpAcrossReplicas: a grpc-go xDS client (testapp, through its
// agent) streams from replica-a and calls its backend. replica-a's dump is
// what the client ACKed, type by type; replica-b, which holds no stream,
// computes the same configuration with the same versions (content hashes)
// and names replica-a as the one holding the stream.
func TestConfigDumpAcrossReplicas(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := e.startReplica(t, "replica-a")
	b := e.startReplica(t, "replica-b")
	backendPort, clientPort := freePort(t), freePort(t)
	e.apply(meshYAML + "---" + dataplaneYAML("backend-1", "backend", backendPort) +
		"---" + dataplaneYAML("client-1", "client", clientPort) + "---" + permissionYAML)
	backendBoot := e.startWeftDP(t, a.addr, "backend-1", "")
	clientBoot := e.startAgent(t, ctx, a.addr, "client-1")
	server := start(t, []string{"GRPC_XDS_BOOTSTRAP=" + backendBoot}, "testapp", "server", "--port", fmt.Sprint(backendPort))
	server.WaitLine(t, servingRe, 30*time.Second)
	client := start(t, []string{"GRPC_XDS_BOOTSTRAP=" + clientBoot, "GRPC_EXPERIMENTAL_XDS_SNI=true"}, "testapp", "client", "--target", "xds:///backend.mesh")
	control := client.WaitLine(t, controlRe, 30*time.Second)[1]
	eventually(t, 30*time.Second, func() error {
		if got := call(control); got != "OK spiffe://default/client" {
			return fmt.Errorf("call: %s", got)
		}
		return nil
	})

	pem, err := os.ReadFile(e.cpRoot)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	uc := token.Claims{Kind: token.KindUser}
	uc.Subject = "viewer"
	tok, _, err := e.keys.Issue(e.ctx, uc, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dump := func(addr string) *inspectv1.ConfigDumpResponse {
		t.Helper()
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		cctx, ccancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok), 20*time.Second)
		defer ccancel()
		d, err := inspectv1.NewInspectServiceClient(conn).ConfigDump(cctx, &inspectv1.ConfigDumpRequest{Mesh: "default", Name: "client-1"})
		if err != nil {
			t.Fatalf("config dump from %s: %v", addr, err)
		}
		return d
	}
	// The types a grpc-go client subscribes to (its certificates come
	// from the agent's files, not SDS).
	subscribed := []string{"Listener", "RouteConfiguration", "Cluster", "ClusterLoadAssignment"}
	short := func(typeURL string) string {
		for i := len(typeURL) - 1; i >= 0; i-- {
			if typeURL[i] == '.' {
				return typeURL[i+1:]
			}
		}
		return typeURL
	}
	var fromA *inspectv1.ConfigDumpResponse
	eventually(t, 20*time.Second, func() error {
		fromA = dump(a.addr)
		if fromA.GetSource() != "stream" || fromA.GetProxyKind() != "grpc" || fromA.GetInstanceId() != "replica-a" {
			return fmt.Errorf("replica-a: %s %s %s", fromA.GetSource(), fromA.GetProxyKind(), fromA.GetInstanceId())
		}
		for _, want := range subscribed {
			found := false
			for _, td := range fromA.GetTypes() {
				if short(td.GetTypeUrl()) == want {
					found = true
					if td.GetState() != "ACK" || td.GetAckedVersion() != td.GetVersion() || len(td.GetResources()) == 0 {
						return fmt.Errorf("%s: %s acked %q of %q, %d resources", want, td.GetState(), td.GetAckedVersion(), td.GetVersion(), len(td.GetResources()))
					}
				}
			}
			if !found {
				return fmt.Errorf("no %s in the dump", want)
			}
		}
		return nil
	})
	// replica-b learns of replica-a's stream from its insight, and of the
	// mesh from its own informers: both may lag a moment.
	eventually(t, 20*time.Second, func() error {
		fromB := dump(b.addr)
		if fromB.GetSource() != "computed" || fromB.GetInstanceId() != "replica-b" || len(fromB.GetConnectedInstances()) != 1 || fromB.GetConnectedInstances()[0] != "replica-a" {
			return fmt.Errorf("replica-b: source %s, instance %s, connected %v", fromB.GetSource(), fromB.GetInstanceId(), fromB.GetConnectedInstances())
		}
		versions := map[string]string{}
		for _, td := range fromB.GetTypes() {
			versions[short(td.GetTypeUrl())] = td.GetVersion()
		}
		for _, td := range fromA.GetTypes() {
			typ := short(td.GetTypeUrl())
			if typ == "Secret" {
				continue // made per stream: never in a computed dump
			}
			if versions[typ] != td.GetVersion() {
				return fmt.Errorf("%s: replica-a sent %q, replica-b computes %q", typ, td.GetVersion(), versions[typ])
			}
		}
		return nil
	})
}
