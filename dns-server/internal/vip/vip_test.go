package vip_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftmesh/weft/dns-server/internal/vip"
	"github.com/weftmesh/weft/pkg/etcdembed"
	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

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

func newStore(t *testing.T, srv *etcdembed.Server) *store.Store {
	return store.New(etcdtest.Client(t, srv))
}

func mustCreate(t *testing.T, st *store.Store, r *resource.Resource) {
	t.Helper()
	if _, err := st.Create(context.Background(), r); err != nil {
		t.Fatalf("create %s: %v", r.Key(), err)
	}
}

func mesh(t *testing.T, st *store.Store, name string) {
	mustCreate(t, st, resource.New(resource.MeshType, "", name))
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

func ingress(name, zone, mesh string, services ...string) *resource.Resource {
	r := resource.New(resource.ZoneIngressType, "", name)
	zi := r.Spec.(*meshv1.ZoneIngress)
	zi.Zone = zone
	zi.Networking = &meshv1.ZoneIngress_Networking{Address: "10.1.0.1", Port: 10001}
	for _, s := range services {
		zi.AvailableServices = append(zi.AvailableServices, &meshv1.ZoneIngress_AvailableService{Mesh: mesh, Tags: map[string]string{resource.ServiceTag: s}, Instances: 1})
	}
	return r
}

type started struct {
	a      *vip.Allocator
	reg    *prometheus.Registry
	cancel func()
	done   chan struct{}
	err    error
}

func (s *started) stop(t *testing.T) {
	s.cancel()
	<-s.done
	if s.err != nil {
		t.Errorf("allocator: %v", s.err)
	}
}

func start(t *testing.T, st *store.Store, cfg vip.Config) *started {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	if cfg.Resync == 0 {
		cfg.Resync = 50 * time.Millisecond
	}
	a, err := vip.New(st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &started{a: a, reg: reg, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.err = a.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
	return s
}

// vips reads every VirtualIP from etcd: mesh/service -> resource.
func vips(t *testing.T, st *store.Store) map[string]*meshv1.VirtualIP {
	t.Helper()
	items, _, err := st.ListAll(context.Background(), resource.VirtualIPType, "")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*meshv1.VirtualIP{}
	for _, r := range items {
		out[r.Meta.GetMesh()+"/"+r.Meta.GetName()] = r.Spec.(*meshv1.VirtualIP)
	}
	return out
}

func claims(t *testing.T, cli *clientv3.Client) map[string]string {
	t.Helper()
	resp, err := cli.Get(context.Background(), vip.DefaultClaimPrefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), vip.DefaultClaimPrefix)] = string(kv.Value)
	}
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkConsistent asserts every VIP has a distinct address in the CIDR and
// exactly its own claim.
func checkConsistent(t *testing.T, st *store.Store, cidr string) map[string]*meshv1.VirtualIP {
	t.Helper()
	p := netip.MustParsePrefix(cidr)
	vs := vips(t, st)
	cs := claims(t, st.Client())
	seen := map[string]string{}
	for k, v := range vs {
		ip, err := netip.ParseAddr(v.GetIp())
		if err != nil || !p.Contains(ip) {
			t.Errorf("%s: ip %q outside %s", k, v.GetIp(), cidr)
		}
		if prev, dup := seen[v.GetIp()]; dup {
			t.Errorf("duplicate VIP %s: %s and %s", v.GetIp(), prev, k)
		}
		seen[v.GetIp()] = k
		if cs[v.GetIp()] != k {
			t.Errorf("%s: claim of %s is %q", k, v.GetIp(), cs[v.GetIp()])
		}
		if v.GetService() != strings.SplitN(k, "/", 2)[1] {
			t.Errorf("%s: service field %q", k, v.GetService())
		}
	}
	if len(cs) != len(vs) {
		t.Errorf("%d claims for %d VIPs", len(cs), len(vs))
	}
	return vs
}

func TestAllocatesLocalAndRemoteServicesPerMesh(t *testing.T) {
	srv := etcdtest.Start(t)
	st := newStore(t, srv)
	mesh(t, st, "default")
	mesh(t, st, "other")
	mustCreate(t, st, dataplane("default", "redis-1", "10.0.0.1", "redis", "redis-admin"))
	mustCreate(t, st, dataplane("default", "redis-2", "10.0.0.2", "redis"))
	mustCreate(t, st, dataplane("other", "redis-1", "10.0.0.3", "redis"))
	mustCreate(t, st, ingress("zone-2-ingress", "zone-2", "default", "payments"))
	mustCreate(t, st, ingress("zone-1-ingress", "zone-1", "default", "local-only")) // our own zone
	mustCreate(t, st, dataplane("default", "bad", "10.0.0.4", "Not_A_Label"))

	s := start(t, st, vip.Config{Zone: "zone-1"})
	<-s.a.Ready()
	want := []string{"default/redis", "default/redis-admin", "default/payments", "other/redis"}
	eventually(t, 5*time.Second, "4 VIPs", func() bool { return len(vips(t, st)) == len(want) })
	vs := checkConsistent(t, st, vip.DefaultCIDR)
	for _, k := range want {
		if vs[k] == nil {
			t.Errorf("no VIP for %s", k)
		}
	}
	if vs["default/redis"].GetIp() == vs["other/redis"].GetIp() {
		t.Error("the same service in two meshes shares a VIP")
	}
	// A new service while running.
	mustCreate(t, st, dataplane("other", "web-1", "10.0.0.5", "web"))
	eventually(t, 5*time.Second, "VIP for other/web", func() bool { return vips(t, st)["other/web"] != nil })
	checkConsistent(t, st, vip.DefaultCIDR)
}

func TestReplicasRacingAllocateEachVIPOnce(t *testing.T) {
	srv := etcdtest.Start(t)
	st := newStore(t, srv)
	const n = 150
	for _, m := range []string{"a", "b"} {
		mesh(t, st, m)
		for i := 0; i < n; i += 10 {
			var svcs []string
			for j := i; j < i+10; j++ {
				svcs = append(svcs, fmt.Sprintf("svc-%d", j))
			}
			mustCreate(t, st, dataplane(m, fmt.Sprintf("dp-%d", i), "10.0.0.1", svcs...))
		}
	}
	// A small CIDR makes address collisions between different services
	// likely, not just same-service races.
	const cidr = "240.0.0.0/22"
	var rs []*started
	for i := 0; i < 4; i++ {
		rs = append(rs, start(t, newStore(t, srv), vip.Config{CIDR: netip.MustParsePrefix(cidr), BatchSize: 8 + i}))
	}
	eventually(t, 20*time.Second, "every service to get a VIP", func() bool { return len(vips(t, st)) == 2*n })
	// More services appear while all replicas run.
	for i := 0; i < 20; i++ {
		mustCreate(t, st, dataplane("a", fmt.Sprintf("late-%d", i), "10.0.0.9", fmt.Sprintf("late-%d", i)))
	}
	eventually(t, 20*time.Second, "late services", func() bool { return len(vips(t, st)) == 2*n+20 })
	// Let every replica's view settle, then check nothing moved.
	before := checkConsistent(t, st, cidr)
	for _, r := range rs {
		eventually(t, 60*time.Second, "replica ready", func() bool {
			select {
			case <-r.a.Ready():
				return true
			default:
				return false
			}
		})
	}
	time.Sleep(200 * time.Millisecond) // several resync periods: nothing may change
	after := checkConsistent(t, st, cidr)
	for k, v := range before {
		if after[k].GetIp() != v.GetIp() {
			t.Errorf("%s moved from %s to %s", k, v.GetIp(), after[k].GetIp())
		}
	}
	total, adopted, conflicts := 0.0, 0.0, 0.0
	for _, r := range rs {
		total += metric(t, r.reg, "weft_dns_vip_events_total", "allocated")
		adopted += metric(t, r.reg, "weft_dns_vip_events_total", "adopted")
		conflicts += metric(t, r.reg, "weft_dns_vip_events_total", "claim_conflict")
	}
	t.Logf("allocated %v, adopted from another replica %v, address conflicts %v", total, adopted, conflicts)
	if int(total) != 2*n+20 {
		t.Errorf("replicas allocated %v VIPs in total, want exactly %d", total, 2*n+20)
	}
}

// metric reads a counter from a registry: the series with the label value
// when label is set, else the first series.
func metric(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" {
				return m.GetCounter().GetValue()
			}
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestGracePeriodExhaustionAndNoReuse(t *testing.T) {
	srv := etcdtest.Start(t)
	st := newStore(t, srv)
	mesh(t, st, "default")
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	const cidr = "240.0.0.0/30" // two usable addresses: .1 and .2
	mustCreate(t, st, dataplane("default", "a", "10.0.0.1", "a"))
	mustCreate(t, st, dataplane("default", "b", "10.0.0.2", "b"))
	s := start(t, st, vip.Config{CIDR: netip.MustParsePrefix(cidr), GracePeriod: time.Hour, Now: clk.Now})
	eventually(t, 5*time.Second, "2 VIPs", func() bool { return len(vips(t, st)) == 2 })
	ipA := vips(t, st)["default/a"].GetIp()

	// a goes away: released, kept.
	if err := st.Delete(context.Background(), resource.DataplaneType, "default", "a", 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a released", func() bool { return vips(t, st)["default/a"].GetReleasedTime() != nil })

	// c arrives: the only free address is a's, still in its grace period.
	mustCreate(t, st, dataplane("default", "c", "10.0.0.3", "c"))
	eventually(t, 5*time.Second, "exhaustion reported", func() bool {
		return metric(t, s.reg, "weft_dns_vip_cidr_exhausted_total", "") > 0
	})
	if v := vips(t, st); v["default/c"] != nil || v["default/a"].GetIp() != ipA {
		t.Fatalf("a VIP was reused inside its grace period: %v", v)
	}

	// Half the grace period later a is still held.
	clk.Add(30 * time.Minute)
	time.Sleep(150 * time.Millisecond)
	if v := vips(t, st); v["default/a"] == nil || v["default/c"] != nil {
		t.Fatalf("freed before the grace period ended: %v", v)
	}
	// After it, a is freed and c gets the address.
	clk.Add(31 * time.Minute)
	eventually(t, 5*time.Second, "c allocated after a's grace period", func() bool { return vips(t, st)["default/c"] != nil })
	v := checkConsistent(t, st, cidr)
	if v["default/a"] != nil || v["default/c"].GetIp() != ipA {
		t.Fatalf("after grace: %v", v)
	}

	// b goes away and comes back inside its grace period: same VIP.
	ipB := v["default/b"].GetIp()
	if err := st.Delete(context.Background(), resource.DataplaneType, "default", "b", 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "b released", func() bool { return vips(t, st)["default/b"].GetReleasedTime() != nil })
	clk.Add(10 * time.Minute)
	mustCreate(t, st, dataplane("default", "b2", "10.0.0.4", "b"))
	eventually(t, 5*time.Second, "b reclaimed", func() bool {
		vb := vips(t, st)["default/b"]
		return vb != nil && vb.GetReleasedTime() == nil
	})
	if got := vips(t, st)["default/b"].GetIp(); got != ipB {
		t.Errorf("b came back with %s, want its old %s", got, ipB)
	}
}

func TestRestartKeepsEveryVIP(t *testing.T) {
	srv := etcdtest.Start(t)
	st := newStore(t, srv)
	mesh(t, st, "default")
	for i := 0; i < 30; i++ {
		mustCreate(t, st, dataplane("default", fmt.Sprintf("dp-%d", i), "10.0.0.1", fmt.Sprintf("svc-%d", i)))
	}
	s1 := start(t, st, vip.Config{})
	eventually(t, 5*time.Second, "30 VIPs", func() bool { return len(vips(t, st)) == 30 })
	before := checkConsistent(t, st, vip.DefaultCIDR)
	s1.stop(t)

	s2 := start(t, newStore(t, srv), vip.Config{})
	<-s2.a.Ready()
	time.Sleep(100 * time.Millisecond)
	after := checkConsistent(t, st, vip.DefaultCIDR)
	if len(after) != 30 {
		t.Fatalf("%d VIPs after restart", len(after))
	}
	for k, v := range before {
		if after[k].GetIp() != v.GetIp() || after[k].GetReleasedTime() != nil {
			t.Errorf("%s: %v before restart, %v after", k, v, after[k])
		}
	}
	if n := metric(t, s2.reg, "weft_dns_vip_events_total", "allocated"); n != 0 {
		t.Errorf("restarted allocator allocated %v VIPs", n)
	}
}

func TestOrphanedClaimsAreCollected(t *testing.T) {
	srv := etcdtest.Start(t)
	st := newStore(t, srv)
	mesh(t, st, "gone")
	mustCreate(t, st, dataplane("gone", "dp", "10.0.0.1", "svc"))
	start(t, st, vip.Config{})
	eventually(t, 5*time.Second, "VIP", func() bool { return len(vips(t, st)) == 1 })
	// Deleting the mesh deletes its VIPs (store cascade) but not the claims.
	if err := st.Delete(context.Background(), resource.MeshType, "", "gone", 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "orphaned claim deleted", func() bool { return len(claims(t, st.Client())) == 0 })
}

func TestRejectsIPv6CIDR(t *testing.T) {
	srv := etcdtest.Start(t)
	if _, err := vip.New(newStore(t, srv), vip.Config{CIDR: netip.MustParsePrefix("fd00::/64")}); err == nil {
		t.Fatal("IPv6 CIDR accepted")
	}
}

func TestClaimedAddressesAreSkipped(t *testing.T) {
	srv := etcdtest.Start(t)
	st := newStore(t, srv)
	mesh(t, st, "default")
	const cidr = "240.0.0.0/29" // .1 to .6
	// Every address but .6 is claimed by a VIP that no longer exists (what a
	// Mesh deletion leaves behind).
	for i := 1; i <= 5; i++ {
		if _, err := st.Client().Put(context.Background(), fmt.Sprintf("%s240.0.0.%d", vip.DefaultClaimPrefix, i), "old/svc"); err != nil {
			t.Fatal(err)
		}
	}
	mustCreate(t, st, dataplane("default", "dp", "10.0.0.1", "a", "b", "c"))
	s := start(t, st, vip.Config{CIDR: netip.MustParsePrefix(cidr)})
	eventually(t, 5*time.Second, "3 VIPs", func() bool { return len(vips(t, st)) == 3 })
	checkConsistent(t, st, cidr)
	if n := metric(t, s.reg, "weft_dns_vip_events_total", "orphan_claim_deleted"); n == 0 {
		t.Error("no orphaned claim was collected")
	}
}

// A VIP newer than the last Dataplane and ZoneIngress events this replica
// has seen (here: written straight into etcd, with no service behind it) is
// released once etcd confirms no service was written since: released, kept,
// not deleted.
func TestStrayVIPIsReleasedAfterCheckingTheViewIsCurrent(t *testing.T) {
	srv := etcdtest.Start(t)
	st := newStore(t, srv)
	mesh(t, st, "default")
	s := start(t, st, vip.Config{})
	<-s.a.Ready()
	r := resource.New(resource.VirtualIPType, "default", "ghost")
	r.Spec = &meshv1.VirtualIP{Service: "ghost", Ip: "240.1.2.3"}
	mustCreate(t, st, r)
	eventually(t, 5*time.Second, "ghost released", func() bool { return vips(t, st)["default/ghost"].GetReleasedTime() != nil })
	if got := vips(t, st)["default/ghost"].GetIp(); got != "240.1.2.3" {
		t.Errorf("ip changed to %s", got)
	}
}

// A gateway's service is a service of its Dataplane (the shared identity
// rule, resource.DataplaneServices): it gets a VIP like an inbound's.
func TestGatewayServicesGetVIPs(t *testing.T) {
	srv := etcdtest.Start(t)
	st := newStore(t, srv)
	mesh(t, st, "default")
	gw := resource.New(resource.DataplaneType, "default", "edge-1")
	gw.Spec = &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: "10.0.0.7",
		Gateway: &meshv1.Dataplane_Networking_Gateway{Tags: map[string]string{resource.ServiceTag: "edge"}}}}
	mustCreate(t, st, gw)
	mustCreate(t, st, dataplane("default", "web-1", "10.0.0.1", "web"))
	s := start(t, st, vip.Config{})
	<-s.a.Ready()
	eventually(t, 20*time.Second, "VIPs for edge and web", func() bool {
		vs := vips(t, st)
		return vs["default/edge"] != nil && vs["default/web"] != nil
	})
}
