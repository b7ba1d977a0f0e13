package dnsserver

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Zone is the name space the server is authoritative for.
const Zone = "mesh."

// Options configure the handler.
type Options struct {
	// Upstreams are host:port resolvers for names outside `.mesh`; tried in
	// order. None: such queries are REFUSED.
	Upstreams []string
	// ForwardTimeout bounds one forwarded query across all upstreams.
	ForwardTimeout time.Duration
	// MaxForwards bounds concurrent forwarded queries; past it they get
	// SERVFAIL at once instead of piling up.
	MaxForwards int
	// EDNSSize is the UDP payload size advertised in our OPT records, and
	// the largest UDP answer sent whatever size the client advertises.
	EDNSSize uint16
	// ForwardAllow are the sources, besides known Dataplane addresses (of
	// any mesh), whose queries outside `.mesh` are forwarded; others get
	// REFUSED. Nil: loopback only.
	ForwardAllow []netip.Prefix
	// MaxRequestSize drops larger requests before parsing.
	MaxRequestSize int
	Logger         *slog.Logger
	Metrics        *Metrics
}

// Handler answers DNS queries from a Table. It implements dns.Handler.
type Handler struct {
	t   *Table
	o   Options
	log *slog.Logger
	m   *Metrics
	sem chan struct{}
	ra  bool
	soa dns.RR
	// refusedLogged: the first refused forward is logged, once.
	refusedLogged sync.Once
}

// LoopbackPrefixes is the default of Options.ForwardAllow.
var LoopbackPrefixes = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// mayForward reports whether queries from addr may be forwarded upstream:
// addr is a known Dataplane address, or in ForwardAllow. The server is not
// an open resolver.
func (h *Handler) mayForward(from netip.Addr) bool {
	for _, p := range h.o.ForwardAllow {
		if p.Contains(from) {
			return true
		}
	}
	return h.t.knownSource(from)
}

// NewHandler returns a handler over t.
func NewHandler(t *Table, o Options) *Handler {
	if o.ForwardTimeout <= 0 {
		o.ForwardTimeout = 2 * time.Second
	}
	if o.MaxForwards <= 0 {
		o.MaxForwards = 1024
	}
	if o.EDNSSize < 512 {
		o.EDNSSize = 1232
	}
	if o.MaxRequestSize <= 0 {
		o.MaxRequestSize = 4096
	}
	if o.ForwardAllow == nil {
		o.ForwardAllow = LoopbackPrefixes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil, t)
	}
	h := &Handler{t: t, o: o, log: o.Logger.With("component", "dns"), m: o.Metrics, sem: make(chan struct{}, o.MaxForwards), ra: len(o.Upstreams) > 0}
	h.soa = &dns.SOA{
		Hdr: dns.RR_Header{Name: Zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: t.TTL()},
		Ns:  "ns.mesh.", Mbox: "hostmaster.mesh.", Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: t.TTL(),
	}
	return h
}

// ServeDNS implements dns.Handler (the slow path: everything the UDP fast
// path does not answer, and all of TCP).
func (h *Handler) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	start := time.Now()
	tcp := false
	var from netip.Addr
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		from = a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		from = a.AddrPort().Addr().Unmap()
		tcp = true
	}
	resp, path := h.respond(req, tcp, from)
	if resp == nil {
		h.m.dropped.WithLabelValues("unanswerable").Inc()
		return
	}
	if err := w.WriteMsg(resp); err != nil {
		h.log.Debug("dns: write failed", "error", err)
	}
	h.observe(req, resp, path, start)
}

func (h *Handler) observe(req, resp *dns.Msg, path string, start time.Time) {
	qt := uint16(0)
	if len(req.Question) > 0 {
		qt = req.Question[0].Qtype
	}
	h.m.query(qt, resp.Rcode).Inc()
	h.m.latency.WithLabelValues(path).Observe(time.Since(start).Seconds())
}

// respond builds the answer to req, or nil to drop it.
func (h *Handler) respond(req *dns.Msg, tcp bool, from netip.Addr) (*dns.Msg, string) {
	if req.Response {
		return nil, ""
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = h.ra
	if req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		m.Question = nil
		return m, "mesh"
	}
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m, "mesh"
	}
	opt := req.IsEdns0()
	if opt != nil && opt.Version() != 0 {
		m.SetEdns0(h.o.EDNSSize, opt.Do())
		m.Rcode = dns.RcodeBadVers
		return m, "mesh"
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	path := "mesh"
	if name == Zone || strings.HasSuffix(name, "."+Zone) {
		h.meshAnswer(m, q, name, from)
	} else if !h.mayForward(from) {
		path = "forward"
		h.m.forwardErrors.WithLabelValues("not-allowed").Inc()
		h.refusedLogged.Do(func() {
			h.log.Warn("dns: refusing to forward for a source that is neither a Dataplane address nor in --forward-allow (logged once; see weft_dns_forward_errors_total{reason=\"not-allowed\"}); add the source's network to --forward-allow if it should resolve names outside .mesh",
				"source", from.String())
		})
		m.Rcode = dns.RcodeRefused
	} else {
		path = "forward"
		m = h.forward(req, tcp)
	}
	if opt != nil {
		m.SetEdns0(h.o.EDNSSize, opt.Do())
	}
	if !tcp {
		// The client's advertised size, but never more than ours: a small
		// query must not buy a large answer.
		size := dns.MinMsgSize
		if opt != nil {
			size = max(size, min(int(opt.UDPSize()), int(h.o.EDNSSize)))
		}
		m.Truncate(size)
	}
	return m, path
}

func (h *Handler) meshAnswer(m *dns.Msg, q dns.Question, name string, from netip.Addr) {
	m.Authoritative = true
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		m.Authoritative = false
		m.Rcode = dns.RcodeRefused
		return
	}
	rel := strings.TrimSuffix(strings.TrimSuffix(name, Zone), ".")
	labels := 0
	if rel != "" {
		labels = strings.Count(rel, ".") + 1
	}
	st := nxdomain
	var a answer
	if !strings.ContainsRune(rel, '\\') { // escaped bytes never name a service
		var scratch [2 * 256]byte
		a, st = h.t.resolve(h.t.load(), []byte(rel), labels, from, scratch[:])
	}
	switch {
	case st == hit && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY):
		m.Answer = []dns.RR{&dns.A{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: h.t.TTL()},
			A:   net.IP(a.ip().AsSlice()),
		}}
	case st == nodata && labels == 0 && (q.Qtype == dns.TypeSOA || q.Qtype == dns.TypeANY):
		m.Answer = []dns.RR{dns.Copy(h.soa)}
	case st == nxdomain:
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{dns.Copy(h.soa)}
	default: // NODATA: the name exists, not with this type (AAAA for a VIP)
		m.Ns = []dns.RR{dns.Copy(h.soa)}
	}
}

// forward sends a query for a name outside `.mesh` to the upstreams.
func (h *Handler) forward(req *dns.Msg, tcp bool) *dns.Msg {
	fail := func(rcode int) *dns.Msg {
		m := new(dns.Msg)
		m.SetRcode(req, rcode)
		m.RecursionAvailable = h.ra
		return m
	}
	if len(h.o.Upstreams) == 0 {
		return fail(dns.RcodeRefused)
	}
	select {
	case h.sem <- struct{}{}:
		defer func() { <-h.sem }()
	default:
		h.m.forwardErrors.WithLabelValues("overload").Inc()
		return fail(dns.RcodeServerFailure)
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.o.ForwardTimeout)
	defer cancel()
	q := req.Copy()
	q.Id = dns.Id() // a fresh ID upstream: the client's is not ours to reuse
	q.Extra = nil
	q.SetEdns0(4096, req.IsEdns0() != nil && req.IsEdns0().Do())
	for _, up := range h.o.Upstreams {
		c := &dns.Client{Net: "udp", UDPSize: 4096}
		r, _, err := c.ExchangeContext(ctx, q, up)
		if err == nil && r.Truncated && tcp {
			c.Net = "tcp"
			r, _, err = c.ExchangeContext(ctx, q, up)
		}
		if err != nil {
			h.m.forwardErrors.WithLabelValues("upstream").Inc()
			h.log.Debug("dns: upstream failed", "upstream", up, "error", err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		r.Id = req.Id
		r.Compress = true
		// Our OPT replaces the upstream's (added back by respond when the
		// client sent one).
		extra := r.Extra[:0]
		for _, rr := range r.Extra {
			if rr.Header().Rrtype != dns.TypeOPT {
				extra = append(extra, rr)
			}
		}
		r.Extra = extra
		return r
	}
	return fail(dns.RcodeServerFailure)
}

// HandlePacket answers one raw request as the UDP server would: the fast
// path first, then the full parser and handler. It returns nil when the
// request is dropped. The fuzz target and the fast/slow comparison use it.
func (h *Handler) HandlePacket(b []byte, from netip.Addr) []byte {
	if len(b) > h.o.MaxRequestSize {
		return nil
	}
	var fp fastPath
	if out, ok := fp.answer(h, b, from); ok {
		return append([]byte(nil), out...)
	}
	return h.slow(b, from, false)
}

// slowMsg is the miekg/dns path for one raw request: nil resp drops it
// (too short, a response, or unparsable).
func (h *Handler) slowMsg(b []byte, from netip.Addr, tcp bool) (req, resp *dns.Msg, path string) {
	if len(b) < 12 || b[2]&0x80 != 0 {
		return nil, nil, "" // too short to answer, or a response: never reflect
	}
	req = new(dns.Msg)
	if err := req.Unpack(b); err != nil {
		return nil, nil, ""
	}
	resp, path = h.respond(req, tcp, from)
	return req, resp, path
}

// slow is slowMsg packed.
func (h *Handler) slow(b []byte, from netip.Addr, tcp bool) []byte {
	_, resp, _ := h.slowMsg(b, from, tcp)
	if resp == nil {
		return nil
	}
	out, err := resp.Pack()
	if err != nil {
		return nil
	}
	return out
}
