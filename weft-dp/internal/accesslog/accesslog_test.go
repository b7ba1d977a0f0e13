package accesslog

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	datav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/pkg/xdsnames"
)

func sockAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

var start = time.Date(2026, 11, 30, 16, 0, 0, 123e6, time.UTC)

func httpEntry(path string, code uint32) *datav3.HTTPAccessLogEntry {
	return &datav3.HTTPAccessLogEntry{
		CommonProperties: &datav3.AccessLogCommon{
			StartTime:               timestamppb.New(start),
			DownstreamRemoteAddress: sockAddr("10.0.0.3", 40000),
			UpstreamRemoteAddress:   sockAddr("10.0.0.4", 8080),
			UpstreamCluster:         "api",
			Duration:                durationpb.New(42 * time.Millisecond),
			ResponseFlags:           &datav3.ResponseFlags{UpstreamRetryLimitExceeded: true},
		},
		ProtocolVersion: datav3.HTTPAccessLogEntry_HTTP2,
		Request: &datav3.HTTPRequestProperties{RequestMethod: corev3.RequestMethod_POST, Path: path, Authority: "api.mesh",
			RequestBodyBytes: 7, RequestHeaders: map[string]string{"x-tenant": "acme-corporation-international"}},
		Response: &datav3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(code), ResponseBodyBytes: 11,
			ResponseHeaders: map[string]string{"grpc-status": "0"}},
	}
}

func TestFormat(t *testing.T) {
	e := Entry{HTTP: httpEntry("/greeter.Greeter/SayHello", 200)}
	for _, tc := range []struct{ format, want string }{
		{"[%START_TIME%] %DOWNSTREAM_REMOTE_ADDRESS% -> %UPSTREAM_CLUSTER% %RESPONSE_CODE% %DURATION%ms",
			"[2026-11-30T16:00:00.123Z] 10.0.0.3:40000 -> api 200 42ms"},
		{"%REQ(:METHOD)% %REQ(:PATH):9% %PROTOCOL% %REQ(X-ORG?X-TENANT):4% %RESP(GRPC-STATUS)% %RESPONSE_FLAGS%",
			"POST /greeter. HTTP/2 acme 0 URX"},
		{"%UNKNOWN% 100%% %REQ(X-MISSING)% %BYTES_RECEIVED%/%BYTES_SENT% %UPSTREAM_HOST% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
			"- 100% - 7/11 10.0.0.4:8080 10.0.0.3"},
		{"no operators", "no operators"},
		{"dangling %START_TIME", "dangling %START_TIME"},
	} {
		if got := ParseFormat(tc.format).Line(e); got != tc.want {
			t.Errorf("format %q:\n got %q\nwant %q", tc.format, got, tc.want)
		}
	}
	// The default is Envoy's default format.
	got := ParseFormat("").Line(e)
	want := `[2026-11-30T16:00:00.123Z] "POST /greeter.Greeter/SayHello HTTP/2" 200 URX 7 11 42 - "-" "-" "-" "api.mesh" "10.0.0.4:8080"`
	if got != want {
		t.Errorf("default format:\n got %q\nwant %q", got, want)
	}
	// TCP: bytes from the connection, response code 0, HTTP fields "-".
	tcp := Entry{TCP: &datav3.TCPAccessLogEntry{CommonProperties: &datav3.AccessLogCommon{UpstreamCluster: "redis", TimeToLastDownstreamTxByte: durationpb.New(1500 * time.Millisecond)},
		ConnectionProperties: &datav3.ConnectionProperties{ReceivedBytes: 5, SentBytes: 9}}}
	if got := ParseFormat("%UPSTREAM_CLUSTER% %RESPONSE_CODE% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %REQ(:PATH)% %PROTOCOL%").Line(tcp); got != "redis 0 5 9 1500 - -" {
		t.Errorf("tcp entry: %q", got)
	}
}

// backend is a TCP log backend: it collects the lines of every connection.
type backend struct {
	lis   net.Listener
	mu    sync.Mutex
	lines []string
	conns []net.Conn
}

// close stops the backend: the listener and every connection.
func (b *backend) close() {
	b.lis.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.conns {
		c.Close()
	}
}

func startBackend(t *testing.T, addr string) *backend {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{lis: lis}
	t.Cleanup(b.close)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.mu.Unlock()
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					b.mu.Lock()
					b.lines = append(b.lines, sc.Text())
					b.mu.Unlock()
				}
			}()
		}
	}()
	return b
}

func (b *backend) got() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.lines...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startServer runs the access-log server on a unix socket, as weft-dp does,
// and returns it with a gRPC ALS client connected the way Envoy connects.
func startServer(t testing.TB, opts Options, log *slog.Logger) (*Server, alsv3.AccessLogServiceClient) {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := New(ctx, log, opts)
	path := filepath.Join(t.TempDir(), xdsnames.AccessLogSocket)
	lis, err := ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return srv, alsv3.NewAccessLogServiceClient(conn)
}

func identifier(logName string) *alsv3.StreamAccessLogsMessage_Identifier {
	return &alsv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: "default.web-1"}, LogName: logName}
}

func sendHTTP(t *testing.T, cli alsv3.AccessLogServiceClient, logName string, batches ...[]*datav3.HTTPAccessLogEntry) {
	t.Helper()
	st, err := cli.StreamAccessLogs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range batches {
		m := &alsv3.StreamAccessLogsMessage{LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: b}}}
		if i == 0 { // Envoy names the logger in the first message only
			m.Identifier = identifier(logName)
		}
		if err := st.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
}

// TestStreamsToTCPBackend: Envoy's ALS messages (HTTP and TCP loggers) in,
// formatted lines out on the backend's TCP connection, in order.
func TestStreamsToTCPBackend(t *testing.T) {
	be := startBackend(t, "127.0.0.1:0")
	srv, cli := startServer(t, Options{}, nil)
	addr := be.lis.Addr().String()
	format := "%REQ(:PATH)% %RESPONSE_CODE% %UPSTREAM_CLUSTER%"
	sendHTTP(t, cli, xdsnames.AccessLogName(addr, format),
		[]*datav3.HTTPAccessLogEntry{httpEntry("/a", 200), httpEntry("/b", 503)},
		[]*datav3.HTTPAccessLogEntry{httpEntry("/c", 200)})

	st, err := cli.StreamAccessLogs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&alsv3.StreamAccessLogsMessage{Identifier: identifier(xdsnames.AccessLogName(addr, "tcp %UPSTREAM_CLUSTER% %BYTES_SENT%")),
		LogEntries: &alsv3.StreamAccessLogsMessage_TcpLogs{TcpLogs: &alsv3.StreamAccessLogsMessage_TCPAccessLogEntries{LogEntry: []*datav3.TCPAccessLogEntry{
			{CommonProperties: &datav3.AccessLogCommon{UpstreamCluster: "redis"}, ConnectionProperties: &datav3.ConnectionProperties{SentBytes: 9}}}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	want := "/a 200 api\n/b 503 api\n/c 200 api\ntcp redis 9"
	waitFor(t, "four lines at the backend", func() bool { return len(be.got()) >= 4 })
	if got := strings.Join(be.got(), "\n"); got != want {
		t.Fatalf("backend got\n%s\nwant\n%s", got, want)
	}
	s := srv.Sender(addr)
	waitFor(t, "the sender to count four lines", func() bool { return s.Sent() == 4 })
	if s.Dropped() != 0 {
		t.Errorf("sent %d dropped %d, want 4 and 0", s.Sent(), s.Dropped())
	}
}

// TestReconnects: lines queued while the backend is down arrive once it is
// back, on a new connection.
func TestReconnects(t *testing.T) {
	be := startBackend(t, "127.0.0.1:0")
	addr := be.lis.Addr().String()
	srv, cli := startServer(t, Options{MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}, nil)
	name := xdsnames.AccessLogName(addr, "%REQ(:PATH)%")
	sendHTTP(t, cli, name, []*datav3.HTTPAccessLogEntry{httpEntry("/1", 200)})
	waitFor(t, "the first line", func() bool { return len(be.got()) == 1 })

	// The backend goes away; the sender finds out on a write (lines
	// written into the dead connection before that are lost, as with any
	// TCP log shipper) and redials with back-off while lines queue.
	be.close()
	for range 20 {
		sendHTTP(t, cli, name, []*datav3.HTTPAccessLogEntry{httpEntry("/x", 200)})
	}
	be2 := startBackend(t, addr)
	waitFor(t, "lines on the restarted backend", func() bool {
		sendHTTP(t, cli, name, []*datav3.HTTPAccessLogEntry{httpEntry("/y", 200)})
		return len(be2.got()) > 0
	})
	if s := srv.Sender(addr); s.Dropped() != 0 {
		t.Errorf("dropped %d with room in the queue", s.Dropped())
	}
}

// TestQueueBounded: with the backend unreachable, the queue holds
// QueueSize lines, the rest are dropped and counted, and the drop is logged
// once.
func TestQueueBounded(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens: every dial fails
	var logs bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil))
	srv, cli := startServer(t, Options{QueueSize: 4, MinBackoff: time.Second, MaxBackoff: time.Second}, log)
	var batch []*datav3.HTTPAccessLogEntry
	for range 100 {
		batch = append(batch, httpEntry("/x", 200))
	}
	sendHTTP(t, cli, xdsnames.AccessLogName(addr, ""), batch, batch)
	s := srv.Sender(addr)
	// 200 lines: at most 4 queued and what the sender took out for its
	// failing dials (a batch or two of ≤ 5, depending on timing: 190 was
	// seen under -race); the rest dropped.
	if d := s.Dropped(); d < 185 || d > 200 {
		t.Fatalf("dropped %d of 200 with a queue of 4", d)
	}
	logMu.Lock()
	n := strings.Count(logs.String(), "dropping lines")
	logMu.Unlock()
	if n != 1 {
		t.Errorf("the drop was logged %d times, want once:\n%s", n, logs.String())
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestBadInput: a stream without a log name, a log name that is not
// <host:port>;<format>, and more backends than allowed are refused.
func TestBadInput(t *testing.T) {
	_, cli := startServer(t, Options{MaxBackends: 1}, nil)
	call := func(id *alsv3.StreamAccessLogsMessage_Identifier) error {
		st, err := cli.StreamAccessLogs(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		_ = st.Send(&alsv3.StreamAccessLogsMessage{Identifier: id, LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{
			HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: []*datav3.HTTPAccessLogEntry{httpEntry("/", 200)}}}})
		_, err = st.CloseAndRecv()
		return err
	}
	for _, tc := range []struct {
		id   *alsv3.StreamAccessLogsMessage_Identifier
		want codes.Code
	}{
		{nil, codes.InvalidArgument},
		{identifier("not-an-address"), codes.InvalidArgument},
		{identifier("127.0.0.1:1;" + strings.Repeat("x", xdsnames.MaxAccessLogName)), codes.InvalidArgument},
		{identifier("127.0.0.1:1;%START_TIME%"), codes.OK},
		{identifier("127.0.0.1:2;%START_TIME%"), codes.ResourceExhausted},
	} {
		if got := status.Code(call(tc.id)); got != tc.want {
			t.Errorf("log name %.40q: %v, want %v", tc.id.GetLogName(), got, tc.want)
		}
	}
}
