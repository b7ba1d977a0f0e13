package dnsserver

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var (
	dpDefault = netip.MustParseAddr("10.0.0.1")
	dpOther   = netip.MustParseAddr("10.0.0.2")
	stranger  = netip.MustParseAddr("10.9.9.9")
)

func testTable() *Table {
	t := NewTable(30)
	t.SetVIP("default", "redis", netip.MustParseAddr("240.0.0.5"))
	t.SetVIP("other", "redis", netip.MustParseAddr("240.0.0.6"))
	t.SetVIP("other", "web", netip.MustParseAddr("240.0.0.7"))
	t.SetDataplane("default/dp1", "default", dpDefault)
	t.SetDataplane("other/dp1", "other", dpOther)
	t.Publish()
	return t
}

func query(name string, qtype uint16, edns bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns {
		m.SetEdns0(4096, true)
	}
	return m
}

func exchange(t *testing.T, h *Handler, q *dns.Msg, from netip.Addr) *dns.Msg {
	t.Helper()
	b, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	out := h.HandlePacket(b, from)
	if out == nil {
		t.Fatalf("%s: dropped", q.Question[0].Name)
	}
	r := new(dns.Msg)
	if err := r.Unpack(out); err != nil {
		t.Fatalf("unpack answer: %v", err)
	}
	if r.Id != q.Id || !r.Response {
		t.Fatalf("answer id %d response %v, want id %d response", r.Id, r.Response, q.Id)
	}
	return r
}

func aOf(r *dns.Msg) string {
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String()
		}
	}
	return ""
}

func TestResolve(t *testing.T) {
	h := NewHandler(testTable(), Options{})
	cases := []struct {
		name  string
		qtype uint16
		from  netip.Addr
		rcode int
		a     string
		soa   bool
	}{
		{"redis.mesh.", dns.TypeA, dpDefault, dns.RcodeSuccess, "240.0.0.5", false},
		{"redis.mesh.", dns.TypeA, dpOther, dns.RcodeSuccess, "240.0.0.6", false},
		{"ReDiS.MeSh.", dns.TypeA, dpOther, dns.RcodeSuccess, "240.0.0.6", false},
		{"redis.default.mesh.", dns.TypeA, dpOther, dns.RcodeSuccess, "240.0.0.5", false},
		{"REDIS.OTHER.MESH.", dns.TypeA, stranger, dns.RcodeSuccess, "240.0.0.6", false},
		{"redis.mesh.", dns.TypeANY, dpDefault, dns.RcodeSuccess, "240.0.0.5", false},
		{"redis.mesh.", dns.TypeAAAA, dpDefault, dns.RcodeSuccess, "", true},
		{"redis.other.mesh.", dns.TypeTXT, dpDefault, dns.RcodeSuccess, "", true},
		{"web.mesh.", dns.TypeA, dpDefault, dns.RcodeNameError, "", true},
		{"web.mesh.", dns.TypeA, dpOther, dns.RcodeSuccess, "240.0.0.7", false},
		{"redis.mesh.", dns.TypeA, stranger, dns.RcodeNameError, "", true},
		{"nope.mesh.", dns.TypeA, dpDefault, dns.RcodeNameError, "", true},
		{"nope.default.mesh.", dns.TypeA, dpDefault, dns.RcodeNameError, "", true},
		{"default.mesh.", dns.TypeA, stranger, dns.RcodeSuccess, "", true}, // empty non-terminal
		{"a.redis.default.mesh.", dns.TypeA, dpDefault, dns.RcodeNameError, "", true},
		{"mesh.", dns.TypeA, dpDefault, dns.RcodeSuccess, "", true},
		{`red\.is.mesh.`, dns.TypeA, dpDefault, dns.RcodeNameError, "", true},
		{"example.com.", dns.TypeA, dpDefault, dns.RcodeRefused, "", false}, // no upstream
	}
	for _, c := range cases {
		for _, edns := range []bool{false, true} {
			r := exchange(t, h, query(c.name, c.qtype, edns), c.from)
			if r.Rcode != c.rcode || aOf(r) != c.a {
				t.Errorf("%s %s from %s edns=%v: rcode %s A %q, want %s %q", c.name, dns.TypeToString[c.qtype], c.from, edns,
					dns.RcodeToString[r.Rcode], aOf(r), dns.RcodeToString[c.rcode], c.a)
			}
			if gotSOA := len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == dns.TypeSOA; gotSOA != c.soa {
				t.Errorf("%s: authority %v, want SOA %v", c.name, r.Ns, c.soa)
			}
			if c.a != "" && r.Answer[0].Header().Ttl != 30 {
				t.Errorf("%s: ttl %d", c.name, r.Answer[0].Header().Ttl)
			}
			if c.a != "" && r.Answer[0].Header().Name != c.name {
				t.Errorf("%s: answer owner %q does not echo the question", c.name, r.Answer[0].Header().Name)
			}
			if opt := r.IsEdns0(); (opt != nil) != edns || (edns && (opt.UDPSize() != 1232 || !opt.Do())) {
				t.Errorf("%s edns=%v: OPT %v", c.name, edns, opt)
			}
		}
	}
	// The apex SOA.
	if r := exchange(t, h, query("mesh.", dns.TypeSOA, false), stranger); len(r.Answer) != 1 || r.Answer[0].Header().Rrtype != dns.TypeSOA {
		t.Errorf("mesh. SOA: %v", r)
	}
	// EDNS version 1 gets BADVERS.
	q := query("redis.mesh.", dns.TypeA, true)
	q.IsEdns0().SetVersion(1)
	if r := exchange(t, h, q, dpDefault); r.Rcode != dns.RcodeBadVers {
		t.Errorf("EDNS version 1: rcode %s, want BADVERS", dns.RcodeToString[r.Rcode])
	}
	// Other opcodes are not implemented.
	q = query("redis.mesh.", dns.TypeA, false)
	q.Opcode = dns.OpcodeStatus
	if r := exchange(t, h, q, dpDefault); r.Rcode != dns.RcodeNotImplemented {
		t.Errorf("STATUS: rcode %s", dns.RcodeToString[r.Rcode])
	}
}

func TestDropsResponsesAndOversizedRequests(t *testing.T) {
	h := NewHandler(testTable(), Options{MaxRequestSize: 600})
	q := query("redis.mesh.", dns.TypeA, false)
	q.Response = true
	b, _ := q.Pack()
	if out := h.HandlePacket(b, dpDefault); out != nil {
		t.Error("a response was answered (reflection)")
	}
	q = query("redis.mesh.", dns.TypeA, false)
	q.Extra = append(q.Extra, &dns.TXT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeTXT, Class: dns.ClassINET}, Txt: []string{strings.Repeat("x", 250), strings.Repeat("y", 250), strings.Repeat("z", 250)}})
	b, _ = q.Pack()
	if out := h.HandlePacket(b, dpDefault); out != nil {
		t.Errorf("a %d-byte request over the 600-byte limit was answered", len(b))
	}
	for _, b := range [][]byte{nil, {1}, make([]byte, 11)} {
		if out := h.HandlePacket(b, dpDefault); out != nil {
			t.Errorf("short packet %v answered", b)
		}
	}
}

// The fast path must say exactly what the full handler says.
func TestFastPathMatchesSlowPath(t *testing.T) {
	for _, ra := range []bool{false, true} {
		o := Options{}
		if ra {
			o.Upstreams = []string{"127.0.0.1:1"}
		}
		h := NewHandler(testTable(), o)
		answered := 0
		for _, name := range []string{"redis.mesh.", "REDIS.mesh.", "web.mesh.", "redis.default.mesh.", "web.other.mesh.", "nope.mesh.", "mesh."} {
			for _, from := range []netip.Addr{dpDefault, dpOther, stranger} {
				for _, edns := range []bool{false, true} {
					for _, bits := range []int{0, 1, 2, 3} {
						q := query(name, dns.TypeA, edns)
						q.RecursionDesired = bits&1 != 0
						q.CheckingDisabled = bits&2 != 0
						b, _ := q.Pack()
						var fp fastPath
						fast, ok := fp.answer(h, b, from)
						if !ok {
							continue
						}
						answered++
						slow := h.slow(b, from, false)
						fm, sm := new(dns.Msg), new(dns.Msg)
						if err := fm.Unpack(fast); err != nil {
							t.Fatalf("fast answer to %s does not parse: %v", name, err)
						}
						if err := sm.Unpack(slow); err != nil {
							t.Fatal(err)
						}
						if fm.String() != sm.String() {
							t.Errorf("%s from %s edns=%v bits=%d:\nfast:\n%s\nslow:\n%s", name, from, edns, bits, fm, sm)
						}
					}
				}
			}
		}
		if answered == 0 {
			t.Fatal("fast path answered nothing")
		}
	}
}

func TestFastPathDoesNotAllocate(t *testing.T) {
	h := NewHandler(testTable(), Options{})
	b, _ := query("redis.mesh.", dns.TypeA, true).Pack()
	var fp fastPath
	if n := testing.AllocsPerRun(1000, func() {
		if _, ok := fp.answer(h, b, dpDefault); !ok {
			t.Fatal("not answered")
		}
	}); n != 0 {
		t.Errorf("fast path allocates %.1f times per query", n)
	}
}

func TestTableCopyOnWrite(t *testing.T) {
	tb := testTable()
	before := tb.load()
	tb.SetVIP("default", "db", netip.MustParseAddr("240.0.0.9"))
	tb.DeleteVIP("default", "redis")
	if _, ok := tb.Lookup("default", "db"); ok {
		t.Error("change visible before Publish")
	}
	tb.Publish()
	if _, ok := tb.Lookup("default", "db"); !ok {
		t.Error("change not visible after Publish")
	}
	if _, ok := tb.Lookup("default", "redis"); ok {
		t.Error("deleted name still answered")
	}
	var scratch [512]byte
	if _, st := tb.resolve(before, []byte("redis.default"), 2, stranger, scratch[:]); st != hit {
		t.Error("an old snapshot changed under its readers")
	}
	if tb.Size() != 3 {
		t.Errorf("size %d, want 3", tb.Size())
	}
	tb.DeleteDataplane("default/dp1")
	tb.Publish()
	if len(tb.load().addrs[dpDefault]) != 0 {
		t.Error("dataplane address kept after delete")
	}
}

// startServer runs a Server for h on 127.0.0.1:0.
func startServer(t *testing.T, h *Handler) *Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Listen(ctx, h, "127.0.0.1:0", 2)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return s
}

// upstream is a tiny authoritative server for example. names.
func upstream(t *testing.T) string {
	t.Helper()
	// UDP and TCP on one port: a free UDP port's TCP twin may be taken,
	// so try a few.
	var pc net.PacketConn
	var l net.Listener
	for attempt := 0; ; attempt++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if attempt == 20 {
			t.Fatalf("no port free for both UDP and TCP: %v", err)
		}
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		switch q.Name {
		case "example.com.":
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)}}
		case "big.example.com.":
			for i := 0; i < 40; i++ {
				m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{strings.Repeat("t", 60)}})
			}
		default:
			m.Rcode = dns.RcodeNameError
		}
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
			size := 512
			if o := r.IsEdns0(); o != nil {
				size = int(o.UDPSize())
			}
			m.Truncate(size)
		}
		_ = w.WriteMsg(m)
	})
	// Shutdown before ActivateAndServe has started fails and leaves the
	// server running: wait until both have started.
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	us := &dns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: notify}
	ts := &dns.Server{Listener: l, Handler: h, NotifyStartedFunc: notify}
	go us.ActivateAndServe()
	go ts.ActivateAndServe()
	for range 2 {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("upstream DNS servers did not start")
		}
	}
	t.Cleanup(func() { _ = us.Shutdown(); _ = ts.Shutdown() })
	return pc.LocalAddr().String()
}

func TestServeUDPAndTCPWithForwarding(t *testing.T) {
	up := upstream(t)
	h := NewHandler(testTable(), Options{Upstreams: []string{up}})
	s := startServer(t, h)
	if s.UDPAddr().String() != s.TCPAddr().String() {
		t.Fatalf("UDP %s and TCP %s differ", s.UDPAddr(), s.TCPAddr())
	}
	addr := s.UDPAddr().String()
	for _, netw := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: netw, Timeout: 2 * time.Second}
		r, _, err := c.Exchange(query("redis.other.mesh.", dns.TypeA, false), addr)
		if err != nil || aOf(r) != "240.0.0.6" || !r.Authoritative || !r.RecursionAvailable {
			t.Fatalf("%s redis.other.mesh: %v %v", netw, r, err)
		}
		r, _, err = c.Exchange(query("example.com.", dns.TypeA, false), addr)
		if err != nil || aOf(r) != "192.0.2.1" {
			t.Fatalf("%s forwarded example.com: %v %v", netw, r, err)
		}
		r, _, err = c.Exchange(query("missing.example.com.", dns.TypeA, true), addr)
		if err != nil || r.Rcode != dns.RcodeNameError || r.IsEdns0() == nil {
			t.Fatalf("%s forwarded NXDOMAIN: %v %v", netw, r, err)
		}
	}
	// A big answer is truncated over UDP; the TCP retry gets all of it.
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	r, _, err := c.Exchange(query("big.example.com.", dns.TypeTXT, false), addr)
	if err != nil || !r.Truncated {
		t.Fatalf("UDP big answer: truncated=%v err=%v", r != nil && r.Truncated, err)
	}
	c.Net = "tcp"
	r, _, err = c.Exchange(query("big.example.com.", dns.TypeTXT, false), addr)
	if err != nil || r.Truncated || len(r.Answer) != 40 {
		t.Fatalf("TCP big answer: %d records, truncated %v, err %v", len(r.Answer), r.Truncated, err)
	}
}

func TestForwardTimesOutInsteadOfHanging(t *testing.T) {
	black, err := net.ListenPacket("udp", "127.0.0.1:0") // reads nothing, answers nothing
	if err != nil {
		t.Fatal(err)
	}
	defer black.Close()
	h := NewHandler(testTable(), Options{Upstreams: []string{black.LocalAddr().String()}, ForwardTimeout: 300 * time.Millisecond})
	s := startServer(t, h)
	c := &dns.Client{Net: "udp", Timeout: 3 * time.Second}
	start := time.Now()
	r, _, err := c.Exchange(query("example.com.", dns.TypeA, false), s.UDPAddr().String())
	if err != nil || r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("got %v %v, want SERVFAIL", r, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("SERVFAIL after %s", d)
	}
	// No upstream at all: REFUSED at once.
	h2 := NewHandler(testTable(), Options{})
	s2 := startServer(t, h2)
	r, _, err = c.Exchange(query("example.com.", dns.TypeA, false), s2.UDPAddr().String())
	if err != nil || r.Rcode != dns.RcodeRefused {
		t.Fatalf("no upstream: %v %v, want REFUSED", r, err)
	}
}

func FuzzHandlePacket(f *testing.F) {
	for _, q := range []*dns.Msg{
		query("redis.mesh.", dns.TypeA, false), query("redis.default.mesh.", dns.TypeAAAA, true),
		query("nope.mesh.", dns.TypeA, true), query("example.com.", dns.TypeMX, false), query("mesh.", dns.TypeSOA, false),
	} {
		b, _ := q.Pack()
		f.Add(b, []byte{10, 0, 0, 1})
	}
	h := NewHandler(testTable(), Options{})
	f.Fuzz(func(t *testing.T, b []byte, src []byte) {
		from, _ := netip.AddrFromSlice(src)
		out := h.HandlePacket(b, from)
		if out == nil {
			return
		}
		if len(b) > h.o.MaxRequestSize {
			t.Fatal("answered an oversized request")
		}
		r := new(dns.Msg)
		if err := r.Unpack(out); err != nil {
			t.Fatalf("answer does not parse: %v\nrequest %x\nanswer %x", err, b, out)
		}
		if !r.Response || r.Id != uint16(b[0])<<8|uint16(b[1]) {
			t.Fatalf("answer is not a response to the request: %v", r)
		}
		if len(out) > int(h.o.EDNSSize) {
			t.Fatalf("UDP answer of %d bytes, over the EDNS size %d", len(out), h.o.EDNSSize)
		}
		if len(b) > 12 && !from.IsLoopback() && r.Rcode != dns.RcodeRefused && r.Rcode != dns.RcodeFormatError {
			for _, q := range r.Question {
				if n := strings.ToLower(q.Name); n != Zone && !strings.HasSuffix(n, "."+Zone) && r.Rcode != dns.RcodeNotImplemented && r.Rcode != dns.RcodeBadVers {
					t.Fatalf("forwarded (rcode %d) for %s from %s", r.Rcode, n, from)
				}
			}
		}
	})
}

// TestNotAnOpenResolver: names outside .mesh are forwarded only for
// Dataplane addresses and --forward-allow sources; others get REFUSED
// (and the upstream is never asked). .mesh names are answered for anyone.
func TestNotAnOpenResolver(t *testing.T) {
	up := upstream(t)
	h := NewHandler(testTable(), Options{Upstreams: []string{up}})
	for _, tc := range []struct {
		from  netip.Addr
		rcode int
	}{
		{stranger, dns.RcodeRefused},
		{netip.MustParseAddr("2001:db8::1"), dns.RcodeRefused},
		{dpDefault, dns.RcodeSuccess},
		{dpOther, dns.RcodeSuccess},
		{netip.MustParseAddr("127.0.0.1"), dns.RcodeSuccess},
		{netip.MustParseAddr("::1"), dns.RcodeSuccess},
	} {
		r := exchange(t, h, query("example.com.", dns.TypeA, false), tc.from)
		if r.Rcode != tc.rcode {
			t.Errorf("example.com from %s: rcode %s, want %s", tc.from, dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
		}
		if tc.rcode == dns.RcodeRefused && len(r.Answer) != 0 {
			t.Errorf("refused with answers: %v", r)
		}
	}
	if r := exchange(t, h, query("redis.default.mesh.", dns.TypeA, false), stranger); aOf(r) != "240.0.0.5" {
		t.Errorf("a .mesh name for a stranger: %v", r)
	}
	// --forward-allow admits a network; loopback is then no longer implied.
	h = NewHandler(testTable(), Options{Upstreams: []string{up}, ForwardAllow: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}})
	if r := exchange(t, h, query("example.com.", dns.TypeA, false), stranger); aOf(r) != "192.0.2.1" {
		t.Errorf("allowed stranger: %v", r)
	}
	if r := exchange(t, h, query("example.com.", dns.TypeA, false), netip.MustParseAddr("127.0.0.1")); r.Rcode != dns.RcodeRefused {
		t.Errorf("loopback outside --forward-allow: %v", r)
	}
	// A Dataplane that goes away loses forwarding.
	tab := testTable()
	h = NewHandler(tab, Options{Upstreams: []string{up}})
	tab.DeleteDataplane("default/dp1")
	tab.Publish()
	if r := exchange(t, h, query("example.com.", dns.TypeA, false), dpDefault); r.Rcode != dns.RcodeRefused {
		t.Errorf("a removed Dataplane's address: %v", r)
	}
	if n := testutil.ToFloat64(h.m.forwardErrors.WithLabelValues("not-allowed")); n != 1 {
		t.Errorf("not-allowed counter: %v, want 1", n)
	}
}

// TestUDPAnswersCappedAtEDNSSize: a client advertising 65535 bytes gets at
// most our EDNS size over UDP (truncated, TC set); TCP gets everything.
func TestUDPAnswersCappedAtEDNSSize(t *testing.T) {
	up := upstream(t)
	h := NewHandler(testTable(), Options{Upstreams: []string{up}, EDNSSize: 1232})
	q := query("big.example.com.", dns.TypeTXT, false)
	q.SetEdns0(65535, false)
	b, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	out := h.HandlePacket(b, dpDefault)
	if len(out) == 0 || len(out) > 1232 {
		t.Fatalf("UDP answer of %d bytes, want 1..1232", len(out))
	}
	r := new(dns.Msg)
	if err := r.Unpack(out); err != nil || !r.Truncated || r.IsEdns0().UDPSize() != 1232 {
		t.Fatalf("UDP answer: %v %v", r, err)
	}
	s := startServer(t, h)
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	r, _, err = c.Exchange(q, s.TCPAddr().String())
	if err != nil || r.Truncated || len(r.Answer) != 40 {
		t.Fatalf("TCP: %v %v", r, err)
	}
}

func benchTable(n int) *Table {
	t := NewTable(30)
	for i := 0; i < n; i++ {
		t.SetVIP("bench", "svc-"+itoa(i), netip.AddrFrom4([4]byte{240, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	t.SetDataplane("bench/client", "bench", dpDefault)
	t.Publish()
	return t
}

func itoa(i int) string {
	var b [20]byte
	n := len(b)
	for {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			return string(b[n:])
		}
	}
}

func benchQueries(b *testing.B, n int, edns bool) [][]byte {
	qs := make([][]byte, 1024)
	for i := range qs {
		p, err := query("svc-"+itoa(i*97%n)+".mesh.", dns.TypeA, edns).Pack()
		if err != nil {
			b.Fatal(err)
		}
		qs[i] = p
	}
	return qs
}

// BenchmarkFastPath is one A hit by source address out of 100k names,
// answered from the raw packet.
func BenchmarkFastPath(b *testing.B) {
	h := NewHandler(benchTable(100000), Options{})
	qs := benchQueries(b, 100000, false)
	var fp fastPath
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := fp.answer(h, qs[i&1023], dpDefault); !ok {
			b.Fatal("miss")
		}
	}
}

// BenchmarkSlowPath is the same query through miekg/dns unpack, the
// handler and pack: what every query would cost without the fast path.
func BenchmarkSlowPath(b *testing.B) {
	h := NewHandler(benchTable(100000), Options{})
	qs := benchQueries(b, 100000, false)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if out := h.slow(qs[i&1023], dpDefault, false); out == nil {
			b.Fatal("dropped")
		}
	}
}

// BenchmarkTableUpdate is one VIP change published to readers in a table
// of 100k names (copy-on-write of one shard).
func BenchmarkTableUpdate(b *testing.B) {
	t := benchTable(100000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t.SetVIP("bench", "svc-"+itoa(i%100000), netip.AddrFrom4([4]byte{241, byte(i >> 16), byte(i >> 8), byte(i)}))
		t.Publish()
	}
}

// A wildcard socket answers through miekg/dns sessions (source address
// from the query's destination); check both paths there too.
func TestServeOnWildcardAddress(t *testing.T) {
	h := NewHandler(testTable(), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Listen(ctx, h, "0.0.0.0:0", 2)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	_, port, _ := net.SplitHostPort(s.UDPAddr().String())
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	r, _, err := c.Exchange(query("redis.other.mesh.", dns.TypeA, false), "127.0.0.1:"+port)
	if err != nil || aOf(r) != "240.0.0.6" {
		t.Fatalf("fast path on wildcard: %v %v", r, err)
	}
	r, _, err = c.Exchange(query("nope.mesh.", dns.TypeA, true), "127.0.0.1:"+port)
	if err != nil || r.Rcode != dns.RcodeNameError {
		t.Fatalf("slow path on wildcard: %v %v", r, err)
	}
}

// FuzzFastPathMatchesSlowPath: whatever packet the fast path answers, the
// full miekg/dns handler answers the same.
func FuzzFastPathMatchesSlowPath(f *testing.F) {
	for _, q := range []*dns.Msg{query("redis.mesh.", dns.TypeA, false), query("REDIS.other.mesh.", dns.TypeA, true), query("web.mesh.", dns.TypeA, false)} {
		b, _ := q.Pack()
		f.Add(b, true)
	}
	h := NewHandler(testTable(), Options{Upstreams: []string{"127.0.0.1:1"}})
	f.Fuzz(func(t *testing.T, b []byte, other bool) {
		from := dpDefault
		if other {
			from = dpOther
		}
		var fp fastPath
		fast, ok := fp.answer(h, b, from)
		if !ok {
			return
		}
		slow := h.slow(b, from, false)
		if slow == nil {
			t.Fatalf("fast path answered a packet the full handler drops: %x", b)
		}
		fm, sm := new(dns.Msg), new(dns.Msg)
		if err := fm.Unpack(fast); err != nil {
			t.Fatalf("fast answer does not parse: %v", err)
		}
		if err := sm.Unpack(slow); err != nil {
			t.Fatal(err)
		}
		if fm.String() != sm.String() {
			t.Fatalf("request %x\nfast:\n%s\nslow:\n%s", b, fm, sm)
		}
	})
}

func TestOversizedRequestsAreDroppedOnUDPAndTCP(t *testing.T) {
	h := NewHandler(testTable(), Options{MaxRequestSize: 600})
	s := startServer(t, h)
	q := query("redis.other.mesh.", dns.TypeA, true)
	q.IsEdns0().SetUDPSize(4096)
	q.Extra = append(q.Extra, &dns.TXT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeTXT, Class: dns.ClassINET}, Txt: []string{strings.Repeat("x", 250), strings.Repeat("y", 250), strings.Repeat("z", 250)}})
	for _, netw := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: netw, Timeout: 300 * time.Millisecond, UDPSize: 4096}
		if r, _, err := c.Exchange(q, s.UDPAddr().String()); err == nil {
			t.Errorf("%s: a request over the size limit was answered: %v", netw, r)
		}
		// The server still answers normal queries afterwards.
		c.Timeout = 2 * time.Second
		if r, _, err := c.Exchange(query("redis.other.mesh.", dns.TypeA, false), s.UDPAddr().String()); err != nil || aOf(r) != "240.0.0.6" {
			t.Errorf("%s after an oversized request: %v %v", netw, r, err)
		}
	}
}
