package generator

import (
	"testing"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	grpcaccesslogv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weftmesh/weft/pkg/xdsnames"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// grpcLoggers returns the gRPC access loggers of a proxy's listeners by
// listener name.
func grpcLoggers(t *testing.T, listeners []types.Resource) map[string]*grpcaccesslogv3.CommonGrpcAccessLogConfig {
	t.Helper()
	out := map[string]*grpcaccesslogv3.CommonGrpcAccessLogConfig{}
	for _, r := range listeners {
		l := r.(*listenerv3.Listener)
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				var logs []*accesslogv3.AccessLog
				switch f.GetName() {
				case "envoy.filters.network.http_connection_manager":
					h := &hcmv3.HttpConnectionManager{}
					if err := f.GetTypedConfig().UnmarshalTo(h); err != nil {
						t.Fatal(err)
					}
					logs = h.GetAccessLog()
				case "envoy.filters.network.tcp_proxy":
					tp := &tcpproxyv3.TcpProxy{}
					if err := f.GetTypedConfig().UnmarshalTo(tp); err != nil {
						t.Fatal(err)
					}
					logs = tp.GetAccessLog()
				}
				for _, al := range logs {
					switch al.GetName() {
					case "envoy.access_loggers.http_grpc":
						c := &grpcaccesslogv3.HttpGrpcAccessLogConfig{}
						if err := al.GetTypedConfig().UnmarshalTo(c); err != nil {
							t.Fatal(err)
						}
						out[l.GetName()] = c.GetCommonConfig()
					case "envoy.access_loggers.tcp_grpc":
						c := &grpcaccesslogv3.TcpGrpcAccessLogConfig{}
						if err := al.GetTypedConfig().UnmarshalTo(c); err != nil {
							t.Fatal(err)
						}
						out[l.GetName()] = c.GetCommonConfig()
					}
				}
			}
		}
	}
	return out
}

// TestAccessLogWireContract: the gRPC loggers of golden 25 use the sink
// cluster weft-dp's bootstrap defines, and their log_name parses the way
// weft-dp's access-log service parses it, naming the right backend.
func TestAccessLogWireContract(t *testing.T) {
	s, p := loadInput(t, "testdata/25.input.yaml")
	res, err := Generate(s, p)
	if err != nil {
		t.Fatal(err)
	}
	got := grpcLoggers(t, res[resourcev3.ListenerType])
	want := map[string]string{"outbound:127.0.0.1:20001": "logstash.logging:5000", "outbound:127.0.0.1:20002": "10.9.0.1:9000"}
	if len(got) != len(want) {
		t.Fatalf("gRPC loggers on %d listeners, want %d: %v", len(got), len(want), got)
	}
	for l, addr := range want {
		c := got[l]
		if c.GetGrpcService().GetEnvoyGrpc().GetClusterName() != xdsnames.AccessLogSinkCluster {
			t.Errorf("%s: logger cluster %q, want %q", l, c.GetGrpcService().GetEnvoyGrpc().GetClusterName(), xdsnames.AccessLogSinkCluster)
		}
		a, _, err := xdsnames.ParseAccessLogName(c.GetLogName())
		if err != nil || a != addr {
			t.Errorf("%s: log_name %q parses to %q, %v; want backend %s", l, c.GetLogName(), a, err, addr)
		}
	}
}

// TestAccessLogBadTCPAddress: a tcp backend whose address is not host:port
// logs nothing (weft-dp would refuse it) and fails nothing else.
func TestAccessLogBadTCPAddress(t *testing.T) {
	s, p := loadInput(t, "testdata/25.input.yaml")
	for _, b := range s.MeshSpec.GetLogging().GetBackends() {
		if b.GetType() == "tcp" {
			b.Address = "no-port"
		}
	}
	s.MeshSpec.Logging.Backends = append(s.MeshSpec.Logging.Backends, &meshv1.Logging_Backend{Name: "unused", Type: "tcp"})
	res, err := Generate(s, p)
	if err != nil {
		t.Fatal(err)
	}
	if got := grpcLoggers(t, res[resourcev3.ListenerType]); len(got) != 0 {
		t.Fatalf("loggers for a backend without a port: %v", got)
	}
}
