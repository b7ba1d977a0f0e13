package ads

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/xds-server/internal/generator"
)

// Bounds on what one xDS client can make this replica hold. Everything a
// proxy sends is checked against them before it reaches a metric label, an
// insight (and so etcd and zone-sync), or a log line.
const (
	// MaxVersionLength bounds version_info and response_nonce: the values we
	// send are short hashes and counters.
	MaxVersionLength = 256
	// MaxErrorDetailLength is how much of a NACK's error detail is kept (in
	// insights and logs); the rest is cut.
	MaxErrorDetailLength = 1024
	// MaxResourceNames bounds the resource names of one request.
	MaxResourceNames = 10000
	// MaxResourceNameLength bounds each of them.
	MaxResourceNameLength = 1024
)

// Limits are the per-replica caps that have flags.
type Limits struct {
	// FirstRequestTimeout: a stream must send its first (authenticating)
	// request within it.
	FirstRequestTimeout time.Duration
	// MaxPendingStreams caps streams that have not yet sent their first
	// request, over all connections.
	MaxPendingStreams int
	// MaxStreamsPerProxy caps concurrent streams of one node id on this
	// replica (each is a subscription in the DataplaneInsight).
	MaxStreamsPerProxy int
	// MaxConcurrentHandshakes caps connections in their TLS and HTTP/2
	// set-up at once (LimitHandshakes); 0: no cap.
	MaxConcurrentHandshakes int
}

// HandshakeMaxHold is the longest one connection's set-up holds its
// handshake slot (LimitHandshakes).
const HandshakeMaxHold = time.Second

// HandshakeMaxWait is the longest a connection waits for a handshake slot
// (LimitHandshakes) before its set-up goes on without one.
const HandshakeMaxWait = 30 * time.Second

// DefaultLimits are the flags' defaults.
func DefaultLimits() Limits {
	return Limits{FirstRequestTimeout: 10 * time.Second, MaxPendingStreams: 1024, MaxStreamsPerProxy: 8, MaxConcurrentHandshakes: 64}
}

// KnownTypeURL reports whether a type URL is one this server serves.
func KnownTypeURL(typeURL string) bool {
	for _, t := range generator.TypeURLs {
		if t == typeURL {
			return true
		}
	}
	return false
}

// checkRequest refuses what is never valid from a proxy, before anything of
// it is recorded.
func checkRequest(typeURL, nonce, version string, names []string) error {
	if !KnownTypeURL(typeURL) {
		return status.Errorf(codes.InvalidArgument, "type_url %q is not served here (served: %s)", truncate(typeURL, 128), strings.Join(generator.TypeURLs, ", "))
	}
	if len(version) > MaxVersionLength {
		return status.Errorf(codes.InvalidArgument, "version_info longer than %d bytes", MaxVersionLength)
	}
	if len(nonce) > MaxVersionLength {
		return status.Errorf(codes.InvalidArgument, "response_nonce longer than %d bytes", MaxVersionLength)
	}
	if len(names) > MaxResourceNames {
		return status.Errorf(codes.InvalidArgument, "%d resource names, at most %d", len(names), MaxResourceNames)
	}
	for _, n := range names {
		if len(n) > MaxResourceNameLength {
			return status.Errorf(codes.InvalidArgument, "resource name longer than %d bytes", MaxResourceNameLength)
		}
	}
	return nil
}

// checkDeltaRequest bounds what checkRequest does not see of a delta
// request: its unsubscribed names and its initial_resource_versions (names
// and versions; a version of go-control-plane's delta cache is 64 bytes).
func checkDeltaRequest(req *discoveryv3.DeltaDiscoveryRequest) error {
	if len(req.GetResourceNamesUnsubscribe()) > MaxResourceNames || len(req.GetInitialResourceVersions()) > MaxResourceNames {
		return status.Errorf(codes.InvalidArgument, "more than %d resource names", MaxResourceNames)
	}
	for _, n := range req.GetResourceNamesUnsubscribe() {
		if len(n) > MaxResourceNameLength {
			return status.Errorf(codes.InvalidArgument, "resource name longer than %d bytes", MaxResourceNameLength)
		}
	}
	for n, v := range req.GetInitialResourceVersions() {
		if len(n) > MaxResourceNameLength {
			return status.Errorf(codes.InvalidArgument, "resource name longer than %d bytes", MaxResourceNameLength)
		}
		if len(v) > MaxVersionLength {
			return status.Errorf(codes.InvalidArgument, "initial resource version longer than %d bytes", MaxVersionLength)
		}
	}
	return nil
}

// truncate cuts s to at most n bytes (on a rune boundary) and marks the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && cut < len(s) && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}

// FirstRequestLimit is a stream interceptor, placed before StreamAuth: the
// first request of an xDS stream must arrive within timeout, and at most
// maxPending streams may wait for theirs at once (beyond: ResourceExhausted).
// A silent, unauthenticated client so holds nothing for long.
func FirstRequestLimit(l Limits, log *slog.Logger) grpc.StreamServerInterceptor {
	var pending atomic.Int64
	var logged sync.Once
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if !strings.HasPrefix(info.FullMethod, "/envoy.service.") {
			return handler(srv, ss)
		}
		if n := pending.Add(1); l.MaxPendingStreams > 0 && n > int64(l.MaxPendingStreams) {
			pending.Add(-1)
			logged.Do(func() {
				log.Warn("refusing xDS streams: too many streams have not sent their first request; raise --max-pending-streams if these are real proxies, else find the client holding them",
					"max", l.MaxPendingStreams, "peer", peerAddr(ss.Context()))
			})
			return status.Errorf(codes.ResourceExhausted, "too many xDS streams waiting for their first request (%d): retry later", l.MaxPendingStreams)
		}
		fs := &firstStream{ServerStream: ss, timeout: l.FirstRequestTimeout, release: func() { pending.Add(-1) }}
		defer fs.done()
		return handler(srv, fs)
	}
}

type firstStream struct {
	grpc.ServerStream
	timeout  time.Duration
	received bool
	once     sync.Once
	release  func()
}

func (s *firstStream) done() { s.once.Do(s.release) }

func (s *firstStream) RecvMsg(m any) error {
	if s.received {
		return s.ServerStream.RecvMsg(m)
	}
	s.received = true
	defer s.done()
	if s.timeout <= 0 {
		return s.ServerStream.RecvMsg(m)
	}
	errc := make(chan error, 1)
	// The receive ends with the stream: returning the error ends the
	// handler, and gRPC then cancels the stream's context.
	go func() { errc <- s.ServerStream.RecvMsg(m) }()
	t := time.NewTimer(s.timeout)
	defer t.Stop()
	select {
	case err := <-errc:
		return err
	case <-t.C:
		return status.Errorf(codes.DeadlineExceeded, "no first xDS request within %s", s.timeout)
	case <-s.Context().Done():
		return status.FromContextError(s.Context().Err()).Err()
	}
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// streamCounts caps concurrent streams per node id.
type streamCounts struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *streamCounts) acquire(node string, limit int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	if limit > 0 && c.n[node] >= limit {
		return status.Errorf(codes.ResourceExhausted, "proxy %s already has %d xDS streams on this replica (--max-streams-per-proxy)", node, limit)
	}
	c.n[node]++
	return nil
}

func (c *streamCounts) release(node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[node] <= 1 {
		delete(c.n, node)
		return
	}
	c.n[node]--
}
