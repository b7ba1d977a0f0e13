package app

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	datav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3" // the typed options the bootstrap names
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/weftmesh/weft/pkg/xdsnames"
	"github.com/weftmesh/weft/weft-dp/agent"
)

// TestAccessLogThroughBootstrap: the sink cluster in the Envoy bootstrap
// weft-dp writes reaches the access-log service `run` starts, and a TCP
// log entry sent there the way Envoy's tcp_grpc logger sends it arrives
// formatted at the backend named in its log_name.
func TestAccessLogThroughBootstrap(t *testing.T) {
	ac := &agent.Config{CP: "127.0.0.1:5678", Mesh: "default", Name: "web-1", Token: "tok", ProxyType: agent.ProxyEnvoy, Workdir: t.TempDir()}
	b, err := bootstrap(ac, 9901)
	if err != nil {
		t.Fatal(err)
	}
	bs := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(b, bs); err != nil {
		t.Fatal(err)
	}
	if err := bs.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	var sock string
	for _, c := range bs.GetStaticResources().GetClusters() {
		if c.GetName() == xdsnames.AccessLogSinkCluster {
			sock = c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetPipe().GetPath()
		}
	}
	if sock == "" {
		t.Fatalf("no %s pipe cluster in the bootstrap:\n%s", xdsnames.AccessLogSinkCluster, b)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop, err := startAccessLog(ctx, ac, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	lines := make(chan string, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if sc := bufio.NewScanner(c); sc.Scan() {
			lines <- sc.Text()
		}
	}()

	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st, err := alsv3.NewAccessLogServiceClient(conn).StreamAccessLogs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&alsv3.StreamAccessLogsMessage{
		Identifier: &alsv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: "default.web-1"},
			LogName: xdsnames.AccessLogName(lis.Addr().String(), "%UPSTREAM_CLUSTER% sent=%BYTES_SENT% received=%BYTES_RECEIVED%")},
		LogEntries: &alsv3.StreamAccessLogsMessage_TcpLogs{TcpLogs: &alsv3.StreamAccessLogsMessage_TCPAccessLogEntries{LogEntry: []*datav3.TCPAccessLogEntry{{
			CommonProperties:     &datav3.AccessLogCommon{UpstreamCluster: "redis"},
			ConnectionProperties: &datav3.ConnectionProperties{SentBytes: 12, ReceivedBytes: 34},
		}}}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-lines:
		if got != "redis sent=12 received=34" {
			t.Fatalf("backend got %q", got)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no line at the backend")
	}
}
