// Package proxy is the built-in ingress data path: it reads the server name
// from a connection's TLS ClientHello without terminating TLS, picks a
// healthy local endpoint of the (mesh, service, tag subset) the name
// (pkg/sni) says, replays the ClientHello to it and pipes bytes both ways.
// The TLS session stays between the caller and the workload: the ingress
// holds no workload key and sees only ciphertext.
package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftmesh/weft/pkg/sni"
)

// Rejection reasons (the reason label of weft_ingress_rejected_total).
const (
	ReasonNotTLS         = "not_tls"         // the first bytes are not a TLS ClientHello
	ReasonNoSNI          = "no_sni"          // a ClientHello without a server name
	ReasonBadSNI         = "bad_sni"         // a server name outside the .mesh format
	ReasonForeignMesh    = "foreign_mesh"    // a mesh this zone serves no service of
	ReasonUnknownService = "unknown_service" // a service this zone does not have
	ReasonNoEndpoint     = "no_endpoint"     // no healthy instance (of the subset)
	ReasonDialFailed     = "dial_failed"     // every endpoint tried refused
	ReasonLimit          = "limit"           // --max-connections reached
)

// Config tunes a Server.
type Config struct {
	// MaxConnections open at once; more are closed at accept.
	MaxConnections int
	// IdleTimeout closes a connection with no byte in either direction.
	IdleTimeout time.Duration
	// HelloTimeout bounds the wait for the ClientHello.
	HelloTimeout time.Duration
	// MaxHelloBytes bounds what is read before the server name is known.
	MaxHelloBytes int
	// DialTimeout bounds one endpoint dial.
	DialTimeout time.Duration
	// DrainTimeout: on shutdown the listener closes at once and open
	// connections get this long to finish before they are cut.
	DrainTimeout time.Duration
	Log          *slog.Logger
	Registerer   prometheus.Registerer
}

// Defaults fills zero fields.
func (c Config) Defaults() Config {
	if c.MaxConnections == 0 {
		c.MaxConnections = 10000
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 10 * time.Minute
	}
	if c.HelloTimeout == 0 {
		c.HelloTimeout = 5 * time.Second
	}
	if c.MaxHelloBytes == 0 {
		c.MaxHelloBytes = 64 << 10
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Server is the SNI-routing TCP proxy.
type Server struct {
	cfg     Config
	ln      net.Listener
	table   atomic.Pointer[Table]
	rr      atomic.Uint64
	m       *metrics
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	closing bool
	wg      sync.WaitGroup
}

// Listen binds addr.
func Listen(addr string, cfg Config) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return New(ln, cfg), nil
}

// New serves on ln.
func New(ln net.Listener, cfg Config) *Server {
	cfg = cfg.Defaults()
	s := &Server{cfg: cfg, ln: ln, conns: map[net.Conn]struct{}{}, m: newMetrics(cfg.Registerer)}
	s.table.Store(&Table{})
	return s
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// SetTable replaces the routing table; open connections keep their
// endpoint.
func (s *Server) SetTable(t *Table) { s.table.Store(t) }

// Active is the number of open connections.
func (s *Server) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Serve accepts until ctx ends, then drains: no new connection, open ones
// get DrainTimeout to finish, then they are closed. It returns nil after a
// drain, or the accept error that stopped it.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.ln.Close() })
	defer stop()
	var err error
	for {
		c, aerr := s.ln.Accept()
		if aerr != nil {
			if ctx.Err() == nil {
				var ne net.Error
				if errors.As(aerr, &ne) && ne.Timeout() {
					continue
				}
				err = aerr
			}
			break
		}
		if !s.track(c) {
			s.m.rejected.WithLabelValues(ReasonLimit).Inc()
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			s.handle(c)
		}()
	}
	s.drain()
	return err
}

func (s *Server) drain() {
	s.mu.Lock()
	s.closing = true
	n := len(s.conns)
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	if n > 0 {
		s.cfg.Log.Info("ingress draining: the listener is closed, open connections may finish", "connections", n, "timeout", s.cfg.DrainTimeout)
	}
	t := time.NewTimer(s.cfg.DrainTimeout)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	s.mu.Lock()
	left := len(s.conns)
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.cfg.Log.Warn("ingress drain timeout: closed the connections still open; raise --drain-timeout to let long streams finish", "connections", left)
	<-done
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || len(s.conns) >= s.cfg.MaxConnections {
		return false
	}
	s.conns[c] = struct{}{}
	s.m.active.Inc()
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.m.active.Dec()
}

// errHello stops the TLS handshake once the ClientHello is read.
var errHello = errors.New("client hello read")

// recorder records what the TLS stack reads and refuses to write: the
// handshake goes no further than the ClientHello.
type recorder struct {
	net.Conn
	buf bytes.Buffer
	max int
}

var errHelloTooLarge = errors.New("client hello too large")

func (r *recorder) Read(p []byte) (int, error) {
	if r.buf.Len() >= r.max {
		return 0, errHelloTooLarge
	}
	if len(p) > r.max-r.buf.Len() {
		p = p[:r.max-r.buf.Len()]
	}
	n, err := r.Conn.Read(p)
	r.buf.Write(p[:n])
	return n, err
}

func (r *recorder) Write(p []byte) (int, error) { return 0, errors.New("peek only") }

// PeekServerName reads a TLS ClientHello from c (at most max bytes) and
// returns its server name and the bytes read, to be replayed upstream. ok
// is false when the bytes are not a TLS ClientHello.
func PeekServerName(c net.Conn, max int) (name string, read []byte, ok bool) {
	rec := &recorder{Conn: c, max: max}
	got := false
	err := tls.Server(rec, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		name, got = h.ServerName, true
		return nil, errHello
	}}).Handshake()
	if !got || !errors.Is(err, errHello) {
		return "", rec.buf.Bytes(), false
	}
	return name, rec.buf.Bytes(), true
}

func (s *Server) reject(c net.Conn, reason string, attrs ...any) {
	s.m.rejected.WithLabelValues(reason).Inc()
	s.cfg.Log.Debug("ingress connection refused", append([]any{"reason", reason, "remote", c.RemoteAddr().String()}, attrs...)...)
	c.Close()
}

func (s *Server) handle(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(s.cfg.HelloTimeout))
	name, hello, ok := PeekServerName(c, s.cfg.MaxHelloBytes)
	if !ok {
		s.reject(c, ReasonNotTLS)
		return
	}
	if name == "" {
		s.reject(c, ReasonNoSNI)
		return
	}
	n, err := sni.Parse(name)
	if err != nil {
		s.reject(c, ReasonBadSNI)
		return
	}
	t := s.table.Load()
	if !t.HasMesh(n.Mesh) {
		s.reject(c, ReasonForeignMesh, "mesh", n.Mesh)
		return
	}
	eps, known := t.Lookup(name, n)
	if !known {
		s.reject(c, ReasonUnknownService, "mesh", n.Mesh, "service", n.Service)
		return
	}
	if len(eps) == 0 {
		s.reject(c, ReasonNoEndpoint, "mesh", n.Mesh, "service", n.Service)
		return
	}
	// Known (mesh, service) pairs are bounded by the table's size: safe
	// metric labels.
	up, err := s.dial(eps)
	if err != nil {
		s.reject(c, ReasonDialFailed, "mesh", n.Mesh, "service", n.Service, "error", err)
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	s.m.connections.WithLabelValues(n.Mesh, n.Service).Inc()
	if _, err := up.Write(hello); err != nil {
		up.Close()
		c.Close()
		return
	}
	in, out := s.pipe(c, up)
	s.m.bytes.WithLabelValues(n.Mesh, n.Service, "in").Add(float64(in + int64(len(hello))))
	s.m.bytes.WithLabelValues(n.Mesh, n.Service, "out").Add(float64(out))
}

// dial tries up to three endpoints, starting from a round-robin position.
func (s *Server) dial(eps []Endpoint) (net.Conn, error) {
	start := int(s.rr.Add(1) % uint64(len(eps)))
	var err error
	for i := 0; i < min(3, len(eps)); i++ {
		e := eps[(start+i)%len(eps)]
		var c net.Conn
		if c, err = net.DialTimeout("tcp", e.Addr, s.cfg.DialTimeout); err == nil {
			return c, nil
		}
	}
	return nil, err
}

// pipe copies both ways until both directions end or the connection is
// idle for IdleTimeout; it returns the bytes copied down→up and up→down.
func (s *Server) pipe(down, up net.Conn) (in, out int64) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		out = s.copy(down, up, &last)
	}()
	in = s.copy(up, down, &last)
	wg.Wait()
	down.Close()
	up.Close()
	return in, out
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copy reads src into dst until EOF, an error, or IdleTimeout without a
// byte in either direction (last is shared by both directions). At EOF it
// half-closes dst, so the other direction can finish.
func (s *Server) copy(dst, src net.Conn, last *atomic.Int64) int64 {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var n int64
	var armed time.Time // when the read deadline was last pushed back
	for {
		// Push the deadline back at most twice per IdleTimeout, not on
		// every read: a deadline that fires early is checked against
		// last below and the read resumes.
		if now := time.Now(); now.Sub(armed) > s.cfg.IdleTimeout/2 {
			armed = now
			_ = src.SetReadDeadline(time.Unix(0, last.Load()).Add(s.cfg.IdleTimeout))
		}
		r, err := src.Read(buf)
		if r > 0 {
			last.Store(time.Now().UnixNano())
			w, werr := dst.Write(buf[:r])
			n += int64(w)
			if werr != nil {
				src.Close()
				return n
			}
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, last.Load())) < s.cfg.IdleTimeout {
				armed = time.Time{} // the other direction was busy: re-arm from its last byte
				continue
			}
			if errors.Is(err, io.EOF) {
				if cw, ok := dst.(interface{ CloseWrite() error }); ok {
					_ = cw.CloseWrite()
					return n
				}
			}
			// Idle or broken: end both directions.
			dst.Close()
			src.Close()
			return n
		}
	}
}

type metrics struct {
	connections *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	bytes       *prometheus.CounterVec
	active      prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weft_ingress_connections_total",
			Help: "Connections routed by the built-in ingress, by mesh and service."}, []string{"mesh", "service"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weft_ingress_rejected_total",
			Help: "Connections the built-in ingress closed without routing, by reason."}, []string{"reason"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weft_ingress_bytes_total",
			Help: "Bytes piped by the built-in ingress, by mesh, service and direction (in: from the caller)."}, []string{"mesh", "service", "direction"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{Name: "weft_ingress_active_connections",
			Help: "Connections open through the built-in ingress."}),
	}
	for _, r := range []string{ReasonNotTLS, ReasonNoSNI, ReasonBadSNI, ReasonForeignMesh, ReasonUnknownService, ReasonNoEndpoint, ReasonDialFailed, ReasonLimit} {
		m.rejected.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.connections, m.rejected, m.bytes, m.active)
	}
	return m
}

// Close closes the listener (Serve then drains).
func (s *Server) Close() error { return s.ln.Close() }
