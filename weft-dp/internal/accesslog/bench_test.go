package accesslog

import (
	"context"
	"io"
	"net"
	"runtime"
	"testing"

	datav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"

	"github.com/weftmesh/weft/pkg/xdsnames"
)

// BenchmarkFormatLine: formatting one HTTP entry with Envoy's default
// format.
func BenchmarkFormatLine(b *testing.B) {
	f := ParseFormat("")
	e := Entry{HTTP: httpEntry("/greeter.Greeter/SayHello", 200)}
	b.ReportAllocs()
	for b.Loop() {
		_ = f.Line(e)
	}
}

// BenchmarkStreamToBackend: one op is one entry sent by a gRPC ALS client
// over the unix socket in messages of 100 (as Envoy batches), formatted and
// written to a TCP backend that discards it; the op ends once the backend
// has the line, so the number is end-to-end throughput.
func BenchmarkStreamToBackend(b *testing.B) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	// A queue large enough that nothing is dropped: this measures the path.
	srv, cli := startServer(b, Options{QueueSize: 1 << 20}, nil)
	st, err := cli.StreamAccessLogs(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	var batch []*datav3.HTTPAccessLogEntry
	for range 100 {
		batch = append(batch, httpEntry("/greeter.Greeter/SayHello", 200))
	}
	addr := lis.Addr().String()
	first := true
	b.ReportAllocs()
	b.ResetTimer()
	sent := 0
	for sent < b.N {
		n := min(100, b.N-sent)
		m := &alsv3.StreamAccessLogsMessage{LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: batch[:n]}}}
		if first {
			m.Identifier = identifier(xdsnames.AccessLogName(addr, ""))
			first = false
		}
		if err := st.Send(m); err != nil {
			b.Fatal(err)
		}
		sent += n
	}
	if _, err := st.CloseAndRecv(); err != nil {
		b.Fatal(err)
	}
	s := srv.Sender(addr)
	for s.Sent()+s.Dropped() < uint64(b.N) {
		runtime.Gosched() // the benchmark measures until the last line is out
	}
	b.StopTimer()
	b.ReportMetric(float64(s.Dropped()), "dropped")
}
