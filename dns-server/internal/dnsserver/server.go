package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Server serves a Handler on UDP (several SO_REUSEPORT sockets, each with a
// fast-path reader) and TCP, all on one port.
type Server struct {
	h       *Handler
	udp     []net.PacketConn
	tcp     net.Listener
	servers []*dns.Server
	// slow counts the slow-path goroutines of direct-mode readers.
	slow sync.WaitGroup
}

// Listen binds addr on UDP (readers sockets) and TCP, on the same port.
func Listen(ctx context.Context, h *Handler, addr string, readers int) (*Server, error) {
	if readers <= 0 {
		readers = 1
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	var lastErr error
	// With port 0 the TCP port must follow the UDP one; retry on the rare
	// port already taken for TCP.
	for attempt := 0; attempt < 10; attempt++ {
		first, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen udp %s: %w", addr, err)
		}
		bound := first.LocalAddr().String()
		tl, err := net.Listen("tcp", bound)
		if err != nil {
			first.Close()
			lastErr = fmt.Errorf("listen tcp %s: %w", bound, err)
			if _, port, _ := net.SplitHostPort(addr); port == "0" {
				continue
			}
			return nil, lastErr
		}
		s := &Server{h: h, udp: []net.PacketConn{first}, tcp: tl}
		for i := 1; i < readers; i++ {
			pc, err := lc.ListenPacket(ctx, "udp", bound)
			if err != nil {
				s.close()
				return nil, fmt.Errorf("listen udp %s (reader %d): %w", bound, i, err)
			}
			s.udp = append(s.udp, pc)
		}
		return s, nil
	}
	return nil, lastErr
}

// Close closes the sockets (Serve closes them itself when ctx ends).
func (s *Server) Close() { s.close() }

func (s *Server) close() {
	for _, pc := range s.udp {
		pc.Close()
	}
	s.tcp.Close()
}

// UDPAddr and TCPAddr are the bound addresses.
func (s *Server) UDPAddr() net.Addr { return s.udp[0].LocalAddr() }
func (s *Server) TCPAddr() net.Addr { return s.tcp.Addr() }

// Serve answers queries until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	errs := make(chan error, len(s.udp)+1)
	var wg sync.WaitGroup
	start := func(srv *dns.Server) {
		s.servers = append(s.servers, srv)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- srv.ActivateAndServe()
		}()
	}
	for _, pc := range s.udp {
		start(&dns.Server{PacketConn: pc, Handler: s.h, UDPSize: 65535, DecorateReader: s.decorate})
	}
	start(&dns.Server{Listener: s.tcp, Handler: s.h, DecorateReader: s.decorate,
		ReadTimeout: 5 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second }, MaxTCPQueries: 1000})
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range s.servers {
		_ = srv.ShutdownContext(sctx)
	}
	// A server whose goroutine had not reached ActivateAndServe yet refuses
	// Shutdown ("not started") and would then serve forever: closing the
	// sockets ends every serve loop either way.
	s.close()
	wg.Wait()
	s.slow.Wait()
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("dns server: %w", err)
	}
	return nil
}

func (s *Server) decorate(r dns.Reader) dns.Reader {
	return &reader{Reader: r, s: s, h: s.h, buf: make([]byte, 65535)}
}

// reader is a dns.Reader that answers fast-path queries itself and hands
// the rest to miekg/dns.
//
// A socket bound to one address needs no control messages to answer from
// the right source, so it reads and writes batches with recvmmsg/sendmmsg
// (direct mode). A wildcard socket
// uses miekg/dns's sessions, which carry the destination address of each
// query into the source address of its answer.
type reader struct {
	dns.Reader
	s    *Server
	h    *Handler
	buf  []byte
	fp   fastPath
	mode int // 0 unknown, 1 direct, 2 session
}

var errTooLarge = errors.New("dns request larger than the size limit")

func (r *reader) ReadTCP(conn net.Conn, timeout time.Duration) ([]byte, error) {
	m, err := r.Reader.ReadTCP(conn, timeout)
	if err == nil && len(m) > r.h.o.MaxRequestSize {
		r.h.m.dropped.WithLabelValues("too_large").Inc()
		return nil, errTooLarge
	}
	return m, err
}

func (r *reader) ReadUDP(conn *net.UDPConn, _ time.Duration) ([]byte, *dns.SessionUDP, error) {
	if r.mode == 0 {
		r.mode = 2
		if ua, ok := conn.LocalAddr().(*net.UDPAddr); ok && !ua.IP.IsUnspecified() {
			r.mode = 1
		}
	}
	if r.mode == 1 {
		return nil, nil, r.direct(conn)
	}
	for {
		n, sess, err := dns.ReadFromSessionUDP(conn, r.buf)
		if err != nil {
			return nil, nil, err
		}
		if n > r.h.o.MaxRequestSize {
			r.h.m.dropped.WithLabelValues("too_large").Inc()
			continue
		}
		start := time.Now()
		var from netip.Addr
		if ua, ok := sess.RemoteAddr().(*net.UDPAddr); ok {
			from = ua.AddrPort().Addr().Unmap()
		}
		if out, ok := r.fp.answer(r.h, r.buf[:n], from); ok {
			if _, err := dns.WriteToSessionUDP(conn, out, sess); err != nil {
				r.h.m.dropped.WithLabelValues("write_error").Inc()
			}
			r.h.m.fastA.Inc()
			r.h.m.fastLat.Observe(time.Since(start).Seconds())
			continue
		}
		m := make([]byte, n)
		copy(m, r.buf[:n])
		return m, sess, nil
	}
}

// batch is how many datagrams one recvmmsg/sendmmsg moves.
const batch = 32

// direct serves a socket bound to one address until reading fails. It
// reads and writes in batches (recvmmsg/sendmmsg): under load one system
// call moves many queries, which is most of the cost of a fast-path answer.
func (r *reader) direct(conn *net.UDPConn) error {
	var pc interface {
		ReadBatch([]ipv4.Message, int) (int, error)
		WriteBatch([]ipv4.Message, int) (int, error)
	}
	if ua, ok := conn.LocalAddr().(*net.UDPAddr); ok && ua.IP.To4() != nil {
		pc = ipv4.NewPacketConn(conn)
	} else {
		pc = ipv6.NewPacketConn(conn)
	}
	in := make([]ipv4.Message, batch)
	out := make([]ipv4.Message, batch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, r.h.o.MaxRequestSize+1)}
		out[i].Buffers = [][]byte{make([]byte, 512)}
	}
	outBufs := make([][]byte, batch)
	for i := range outBufs {
		outBufs[i] = out[i].Buffers[0]
	}
	for {
		n, err := pc.ReadBatch(in, 0)
		if err != nil {
			return err
		}
		start := time.Now()
		k := 0
		for i := 0; i < n; i++ {
			m := &in[i]
			peer, ok := m.Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			if m.N > r.h.o.MaxRequestSize {
				r.h.m.dropped.WithLabelValues("too_large").Inc()
				continue
			}
			req := m.Buffers[0][:m.N]
			from := peer.AddrPort().Addr().Unmap()
			if ans, ok := r.fp.answer(r.h, req, from); ok {
				out[k].Buffers[0] = append(outBufs[k][:0], ans...)
				out[k].Addr = peer
				k++
				continue
			}
			r.slowPath(conn, append([]byte(nil), req...), peer.AddrPort(), start)
		}
		for sent := 0; sent < k; {
			w, err := pc.WriteBatch(out[sent:k], 0)
			if err != nil || w == 0 {
				// Skip the datagram the kernel refused; send the rest.
				r.h.m.dropped.WithLabelValues("write_error").Inc()
				w = 1
			}
			sent += w
		}
		if k > 0 {
			r.h.m.fastA.Add(float64(k))
			d := time.Since(start).Seconds()
			for i := 0; i < k; i++ {
				r.h.m.fastLat.Observe(d)
			}
		}
	}
}

// slowPath answers one request through miekg/dns on its own goroutine.
func (r *reader) slowPath(conn *net.UDPConn, m []byte, peer netip.AddrPort, start time.Time) {
	r.s.slow.Add(1)
	go func() {
		defer r.s.slow.Done()
		req, resp, path := r.h.slowMsg(m, peer.Addr().Unmap(), false)
		if resp == nil {
			r.h.m.dropped.WithLabelValues("unanswerable").Inc()
			return
		}
		out, err := resp.Pack()
		if err != nil {
			r.h.m.dropped.WithLabelValues("pack_error").Inc()
			return
		}
		if _, err := conn.WriteToUDPAddrPort(out, peer); err != nil {
			r.h.m.dropped.WithLabelValues("write_error").Inc()
		}
		r.h.observe(req, resp, path, start)
	}()
}
