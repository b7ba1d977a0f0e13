package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftmesh/weft/dns-server/app"
	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

type running struct {
	*app.App
	stop func()
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func startApp(t *testing.T, cli *clientv3.Client, mutate func(*app.Config)) *running {
	t.Helper()
	cfg := app.Default()
	cfg.Etcd.Client = cli
	cfg.Address = "127.0.0.1:0"
	cfg.AdminAddress = "127.0.0.1:0"
	cfg.ResolvConf = "" // tests never reach the internet
	cfg.UDPReaders = 2
	cfg.VIPResync = 50 * time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	if mutate != nil {
		mutate(&cfg)
	}
	a, err := app.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var stopped bool
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
	t.Cleanup(stop)
	return &running{App: a, stop: stop}
}

func create(t *testing.T, st *store.Store, r *resource.Resource) {
	t.Helper()
	if _, err := st.Create(context.Background(), r); err != nil {
		t.Fatalf("create %s: %v", r.Key(), err)
	}
}

func dataplane(mesh, name, addr string, services ...string) *resource.Resource {
	r := resource.New(resource.DataplaneType, mesh, name)
	dp := r.Spec.(*meshv1.Dataplane)
	dp.Networking = &meshv1.Dataplane_Networking{Address: addr}
	for i, s := range services {
		dp.Networking.Inbound = append(dp.Networking.Inbound, &meshv1.Dataplane_Networking_Inbound{
			Port: uint32(8000 + i), Tags: map[string]string{resource.ServiceTag: s},
		})
	}
	return r
}

// ask sends one query from src (a loopback address) over netw.
func ask(t *testing.T, netw, server, src, name string, qtype uint16) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: netw, Timeout: 2 * time.Second}
	if src != "" {
		if netw == "tcp" {
			c.Dialer = &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
		} else {
			c.Dialer = &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
		}
	}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(1232, false)
	r, _, err := c.Exchange(m, server)
	if err != nil {
		t.Fatalf("%s %s from %s: %v", netw, name, src, err)
	}
	return r
}

func aRecord(r *dns.Msg) string {
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String()
		}
	}
	return ""
}

// resolves polls until name answers an A record over both UDP and TCP
// (and they agree), and returns it.
func resolves(t *testing.T, a *running, src, name string, within time.Duration) string {
	t.Helper()
	// within is what the test expects; allow a loaded machine (or -race) more.
	within = max(within, 20*time.Second)
	deadline := time.Now().Add(within)
	for {
		u := ask(t, "udp", a.UDPAddr(), src, name, dns.TypeA)
		if ip := aRecord(u); ip != "" {
			tc := ask(t, "tcp", a.TCPAddr(), src, name, dns.TypeA)
			if aRecord(tc) != ip {
				t.Fatalf("%s: UDP says %s, TCP says %v", name, ip, tc)
			}
			return ip
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s from %s did not resolve within %s: %v", name, src, within, u)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func nxdomain(t *testing.T, a *running, src, name string, within time.Duration) {
	t.Helper()
	// within is what the test expects; allow a loaded machine (or -race) more.
	within = max(within, 20*time.Second)
	deadline := time.Now().Add(within)
	for {
		u := ask(t, "udp", a.UDPAddr(), src, name, dns.TypeA)
		if u.Rcode == dns.RcodeNameError {
			if tc := ask(t, "tcp", a.TCPAddr(), src, name, dns.TypeA); tc.Rcode != dns.RcodeNameError {
				t.Fatalf("%s: NXDOMAIN over UDP, %s over TCP", name, dns.RcodeToString[tc.Rcode])
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still answers after %s: %v", name, within, u)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func vipOf(t *testing.T, st *store.Store, mesh, svc string) *meshv1.VirtualIP {
	t.Helper()
	r, err := st.Get(context.Background(), resource.VirtualIPType, mesh, svc)
	if err != nil {
		t.Fatalf("VirtualIP %s/%s: %v", mesh, svc, err)
	}
	return r.Spec.(*meshv1.VirtualIP)
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServiceResolvesThenGoesAwayKeepingItsVIP(t *testing.T) {
	cli := etcdtest.Client(t, nil)
	st := store.New(cli)
	create(t, st, resource.New(resource.MeshType, "", "default"))
	create(t, st, dataplane("default", "client", "127.0.0.1", "client"))
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a := startApp(t, cli, func(c *app.Config) {
		c.Now = clk.Now
		c.VIPGracePeriod = 10 * time.Minute
	})

	create(t, st, dataplane("default", "redis-1", "10.0.0.2", "redis"))
	ip := resolves(t, a, "127.0.0.1", "redis.mesh.", 2*time.Second)
	if got := resolves(t, a, "", "REDIS.default.MESH.", time.Second); got != ip {
		t.Fatalf("explicit name answers %s, implicit %s", got, ip)
	}
	if v := vipOf(t, st, "default", "redis"); v.GetIp() != ip {
		t.Fatalf("answered %s, VirtualIP resource says %s", ip, v.GetIp())
	}
	r := ask(t, "udp", a.UDPAddr(), "127.0.0.1", "redis.mesh.", dns.TypeAAAA)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("AAAA: %v, want NODATA", r)
	}
	if r.IsEdns0() == nil {
		t.Error("no OPT in the answer to an EDNS query")
	}
	r = ask(t, "udp", a.UDPAddr(), "127.0.0.1", "redis.mesh.", dns.TypeA)
	if ttl := r.Answer[0].Header().Ttl; ttl != 30 {
		t.Errorf("TTL %d, want 30", ttl)
	}
	if r := ask(t, "udp", a.UDPAddr(), "127.0.0.1", "example.com.", dns.TypeA); r.Rcode != dns.RcodeRefused {
		t.Errorf("no upstream: %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}

	// The service goes away: NXDOMAIN, but the VIP is held (released) and a
	// new service does not get it.
	if err := st.Delete(context.Background(), resource.DataplaneType, "default", "redis-1", 0); err != nil {
		t.Fatal(err)
	}
	nxdomain(t, a, "127.0.0.1", "redis.mesh.", 5*time.Second)
	v := vipOf(t, st, "default", "redis")
	if v.GetIp() != ip || v.GetReleasedTime() == nil {
		t.Fatalf("after removal the VirtualIP is %v, want %s released", v, ip)
	}
	create(t, st, dataplane("default", "cache-1", "10.0.0.3", "cache"))
	if got := resolves(t, a, "127.0.0.1", "cache.mesh.", 2*time.Second); got == ip {
		t.Fatalf("new service got the released VIP %s", ip)
	}

	// Past the grace period the VIP is freed.
	clk.Add(11 * time.Minute)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := st.Get(context.Background(), resource.VirtualIPType, "default", "redis")
		if store.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("VIP not freed after the grace period: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Admin endpoints.
	base := "http://" + a.AdminAddr()
	if code, _ := httpGet(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz %d", code)
	}
	if code, _ := httpGet(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz %d", code)
	}
	// The allocator counts a freed VIP after its delete reached etcd, and
	// the table follows by watch: wait for the metrics to catch up.
	want := []string{`weft_dns_queries_total{rcode="NOERROR",type="A"}`, `weft_dns_queries_total{rcode="NXDOMAIN",type="A"}`,
		"weft_dns_query_duration_seconds_bucket", "weft_dns_table_names 2", `weft_dns_vip_events_total{event="allocated"}`,
		`weft_dns_vip_events_total{event="released"} 1`, `weft_dns_vip_events_total{event="freed"} 1`, "weft_dns_vip_cidr_exhausted_total 0"}
	deadline = time.Now().Add(20 * time.Second)
	for {
		_, metrics := httpGet(t, base+"/metrics")
		var missing []string
		for _, m := range want {
			if !strings.Contains(metrics, m) {
				missing = append(missing, m)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %v", missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSameServiceInTwoMeshesAnswersEachMeshItsOwnVIP(t *testing.T) {
	cli := etcdtest.Client(t, nil)
	st := store.New(cli)
	for _, m := range []string{"blue", "green"} {
		create(t, st, resource.New(resource.MeshType, "", m))
		create(t, st, dataplane(m, "redis", "10.0.1.1", "redis"))
	}
	create(t, st, dataplane("blue", "client", "127.0.0.2", "client"))
	create(t, st, dataplane("green", "client", "127.0.0.3", "client"))
	a := startApp(t, cli, nil)
	blue := resolves(t, a, "127.0.0.2", "redis.mesh.", 2*time.Second)
	green := resolves(t, a, "127.0.0.3", "redis.mesh.", 2*time.Second)
	if blue == green {
		t.Fatalf("both meshes got %s", blue)
	}
	if vipOf(t, st, "blue", "redis").GetIp() != blue || vipOf(t, st, "green", "redis").GetIp() != green {
		t.Fatal("answers do not match the VirtualIP resources")
	}
	// Explicit names work from anywhere; an unknown source has no mesh.
	if got := resolves(t, a, "127.0.0.3", "redis.blue.mesh.", time.Second); got != blue {
		t.Errorf("redis.blue.mesh from green: %s, want %s", got, blue)
	}
	if r := ask(t, "udp", a.UDPAddr(), "127.0.0.4", "redis.mesh.", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Errorf("redis.mesh from a non-dataplane: %v", r)
	}
}

func TestReplicasAgreeAndRestartKeepsEveryVIP(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	st := store.New(cli)
	create(t, st, resource.New(resource.MeshType, "", "default"))
	const n = 40
	for i := 0; i < n; i++ {
		create(t, st, dataplane("default", fmt.Sprintf("dp-%d", i), "10.0.2.1", fmt.Sprintf("svc-%d", i)))
	}
	// Three replicas, each with its own etcd client, racing from the start.
	var rs []*running
	for i := 0; i < 3; i++ {
		rs = append(rs, startApp(t, etcdtest.Client(t, srv), nil))
	}
	answers := map[string]string{}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("svc-%d.default.mesh.", i)
		ip := resolves(t, rs[0], "", name, 5*time.Second)
		for _, r := range rs[1:] {
			if got := resolves(t, r, "", name, 5*time.Second); got != ip {
				t.Fatalf("%s: replicas answer %s and %s", name, ip, got)
			}
		}
		answers[name] = ip
	}
	seen := map[string]bool{}
	for _, ip := range answers {
		if seen[ip] {
			t.Fatalf("VIP %s handed out twice", ip)
		}
		seen[ip] = true
	}
	for _, r := range rs {
		r.stop()
	}
	// A fresh replica answers the same VIPs.
	fresh := startApp(t, etcdtest.Client(t, srv), nil)
	for name, ip := range answers {
		if got := resolves(t, fresh, "", name, 5*time.Second); got != ip {
			t.Errorf("%s: %s after restart, was %s", name, got, ip)
		}
	}
	items, _, err := st.ListAll(context.Background(), resource.VirtualIPType, "default")
	if err != nil || len(items) != n {
		t.Fatalf("%d VirtualIPs (%v), want %d", len(items), err, n)
	}
}

func TestConfigValidation(t *testing.T) {
	cfg := app.Default()
	cfg.TTL = 0
	cfg.VIPCIDR = "fd00::/8"
	cfg.Upstreams = []string{"not an address"}
	cfg.MaxRequestSize = 10
	err := cfg.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, f := range []string{"--ttl", "--vip-cidr", "--upstreams", "--max-request-size"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not name %s", err, f)
		}
	}
	if code := app.Main(context.Background(), []string{"--ttl=0s", "--etcd-endpoints=127.0.0.1:1"}, io.Discard); code != 2 {
		t.Errorf("Main with --ttl=0s: exit %d, want 2", code)
	}
	t.Setenv("WEFT_DNS_SERVER_VIP_CIDR", "not-a-cidr")
	var out strings.Builder
	if code := app.Main(context.Background(), []string{"--etcd-endpoints=127.0.0.1:1"}, &out); code != 2 || !strings.Contains(out.String(), "--vip-cidr") {
		t.Errorf("WEFT_DNS_SERVER_VIP_CIDR override: exit %d, %q", code, out.String())
	}
}
