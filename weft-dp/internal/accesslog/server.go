package accesslog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/pkg/xdsnames"
)

// Options bound the server.
type Options struct {
	// QueueSize is each backend's queue of lines (default 4096).
	QueueSize int
	// MaxBackends bounds the distinct backend addresses (default 32).
	MaxBackends int
	// MinBackoff and MaxBackoff bound reconnection (default 100 ms, 10 s).
	MinBackoff, MaxBackoff time.Duration
	// MaxMessage bounds one message from Envoy (default 4 MiB).
	MaxMessage int
}

func (o *Options) defaults() {
	if o.QueueSize <= 0 {
		o.QueueSize = 4096
	}
	if o.MaxBackends <= 0 {
		o.MaxBackends = 32
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Second
	}
	if o.MaxMessage <= 0 {
		o.MaxMessage = 4 << 20
	}
}

// Server is the gRPC access-log service Envoy's http_grpc / tcp_grpc
// loggers stream to.
type Server struct {
	alsv3.UnimplementedAccessLogServiceServer
	opts Options
	log  *slog.Logger
	ctx  context.Context

	mu      sync.Mutex
	senders map[string]*Sender
	wg      sync.WaitGroup
}

// New returns a server whose senders live until ctx ends.
func New(ctx context.Context, log *slog.Logger, opts Options) *Server {
	opts.defaults()
	return &Server{opts: opts, log: log, ctx: ctx, senders: map[string]*Sender{}}
}

// Sender returns the sender of a backend address, nil if none was used.
func (s *Server) Sender(addr string) *Sender {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.senders[addr]
}

func (s *Server) sender(addr string) (*Sender, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if x := s.senders[addr]; x != nil {
		return x, nil
	}
	if len(s.senders) >= s.opts.MaxBackends {
		return nil, fmt.Errorf("more than %d access log backends", s.opts.MaxBackends)
	}
	x := newSender(addr, s.opts.QueueSize, s.opts.MinBackoff, s.opts.MaxBackoff, s.log)
	s.senders[addr] = x
	s.wg.Add(1)
	go func() { defer s.wg.Done(); x.run(s.ctx) }()
	return x, nil
}

// StreamAccessLogs receives one logger's entries: the first message names
// the logger (log_name "<host:port>;<format>"), the rest carry entries.
func (s *Server) StreamAccessLogs(stream alsv3.AccessLogService_StreamAccessLogsServer) error {
	var (
		snd *Sender
		f   *Format
		cur string
	)
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&alsv3.StreamAccessLogsResponse{})
		}
		if err != nil {
			return err
		}
		if id := msg.GetIdentifier(); id != nil && id.GetLogName() != cur {
			addr, format, err := xdsnames.ParseAccessLogName(id.GetLogName())
			if err != nil {
				return status.Error(codes.InvalidArgument, err.Error())
			}
			if snd, err = s.sender(addr); err != nil {
				return status.Error(codes.ResourceExhausted, err.Error())
			}
			f, cur = ParseFormat(format), id.GetLogName()
		}
		if snd == nil {
			return status.Error(codes.InvalidArgument, "the first message must carry identifier.log_name")
		}
		for _, e := range msg.GetHttpLogs().GetLogEntry() {
			snd.Enqueue(f.Line(Entry{HTTP: e}))
		}
		for _, e := range msg.GetTcpLogs().GetLogEntry() {
			snd.Enqueue(f.Line(Entry{TCP: e}))
		}
	}
}

// Serve serves on lis until ctx ends, then waits for the senders.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	g := grpc.NewServer(grpc.MaxRecvMsgSize(s.opts.MaxMessage))
	alsv3.RegisterAccessLogServiceServer(g, s)
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
		}
		g.Stop()
	}()
	err := g.Serve(lis)
	close(done)
	s.wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// ListenUnix listens on a unix socket at path (a stale socket file is
// removed first) readable and writable by this user only.
func ListenUnix(path string) (net.Listener, error) {
	if len(path) > 104 {
		return nil, fmt.Errorf("access log socket %s: %d bytes, longer than a unix socket path may be (104); use a shorter --workdir", path, len(path))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		lis.Close()
		return nil, err
	}
	return lis, nil
}
