// Package vip owns virtual IP allocation: one stable IPv4 address per
// (mesh, service) reachable in the zone, taken from a CIDR, stored in etcd as
// VirtualIP resources and agreed by every dns-server replica through etcd
// compare-and-swap.
//
// Every allocation writes two keys in one transaction: the VirtualIP resource
// (/weft/resources/VirtualIP/<mesh>/<service>) and a claim of its address
// (/weft/vips/claims/<ip>), both guarded by CreateRevision == 0. Two replicas
// racing for the same service both aim at the same key, so one wins and the
// other adopts its answer; two services racing for the same address both aim
// at the same claim, so one of them moves on. No address is ever handed out
// twice, in any mesh.
//
// A VIP whose service disappears is marked released (released_time) and kept
// for a grace period, so clients holding a cached answer are never sent to a
// reused address; if the service comes back in time it gets the same VIP
// again. After the grace period the VIP and its claim are deleted together.
package vip

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/dns-server/internal/dnsview"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/telemetry"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	storev1 "github.com/weftmesh/weft/proto/gen/go/weft/store/v1"
)

// Defaults.
const (
	DefaultCIDR        = "240.0.0.0/4"
	DefaultGracePeriod = time.Hour
	DefaultClaimPrefix = "/weft/vips/claims/"
)

// Config configures an Allocator.
type Config struct {
	// CIDR the addresses come from (IPv4).
	CIDR netip.Prefix
	// GracePeriod keeps a released VIP reserved before it may be reused.
	GracePeriod time.Duration
	// Zone is this control plane's zone; ZoneIngresses of this zone are not
	// counted as remote (their services are local ones already).
	Zone string
	// ClaimPrefix is the etcd prefix of the per-address claim keys.
	ClaimPrefix string
	// Now is the clock (tests inject one).
	Now func() time.Time
	// Logger, Registerer: observability; nil means none.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Debounce coalesces bursts of changes before a reconcile (default 20ms).
	Debounce time.Duration
	// Resync is the period of the reconcile that frees VIPs whose grace
	// period ended and collects orphaned claims (default min(grace/4, 30s)).
	Resync time.Duration
	// BatchSize is how many allocations share one etcd transaction (default 32).
	BatchSize int
	// Settle is how long a VIP must look unneeded before it is released when
	// this replica cannot tell that its view is newer than the VIP (default 1s).
	Settle time.Duration
	// Informers are the process's shared store informers (the DNS table
	// reads the same Dataplane and VirtualIP caches); nil makes the
	// allocator its own.
	Informers *store.Informers
}

// Key identifies a (mesh, service).
type Key struct{ Mesh, Service string }

func (k Key) String() string { return k.Mesh + "/" + k.Service }

// Allocator keeps the VirtualIPs of a zone in line with its services.
type Allocator struct {
	st   *store.Store
	cli  *clientv3.Client
	cfg  Config
	log  *slog.Logger
	m    *metrics
	base uint32
	size uint64

	// State below is owned by the Run goroutine.
	dps    map[string][]Key // dataplane mesh/name -> services
	zis    map[string][]Key // zoneingress name -> services
	vips   map[Key]vipState
	used   map[uint32]Key
	taken  map[uint32]struct{} // claims seen in conflicts, not (yet) known as VIPs
	synced [3]bool
	// rev is the newest store revision each watch has delivered.
	rev [3]int64
	// unneeded notes when an active VIP was first seen without a service,
	// for VIPs newer than this replica's view of services.
	unneeded map[Key]time.Time
	wake     bool
	ready    chan struct{}
	gcDue    bool
	lastEx   time.Time
}

type metrics struct {
	events    *prometheus.CounterVec
	exhausted prometheus.Counter
	inUse     prometheus.Gauge
	capacity  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_dns_vip_events_total",
			Help: "VIP allocation events by kind: allocated, adopted (another replica won), claim_conflict, released, reclaimed (service came back in its grace period), freed, orphan_claim_deleted, error.",
		}, []string{"event"}),
		exhausted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_dns_vip_cidr_exhausted_total",
			Help: "Allocations that failed because the VIP CIDR has no free address.",
		}),
		inUse: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_dns_vip_in_use",
			Help: "VIPs held (active or in their grace period), all meshes.",
		}),
		capacity: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_dns_vip_capacity",
			Help: "Usable addresses in the VIP CIDR.",
		}),
	}
	var err error
	if m.events, err = telemetry.Register(reg, m.events); err != nil {
		return nil, err
	}
	if m.exhausted, err = telemetry.Register(reg, m.exhausted); err != nil {
		return nil, err
	}
	if m.inUse, err = telemetry.Register(reg, m.inUse); err != nil {
		return nil, err
	}
	if m.capacity, err = telemetry.Register(reg, m.capacity); err != nil {
		return nil, err
	}
	return m, nil
}

// New returns an allocator on a store.
func New(st *store.Store, cfg Config) (*Allocator, error) {
	if !cfg.CIDR.IsValid() {
		cfg.CIDR = netip.MustParsePrefix(DefaultCIDR)
	}
	if !cfg.CIDR.Addr().Is4() {
		return nil, fmt.Errorf("vip: CIDR %s: only IPv4 is supported", cfg.CIDR)
	}
	cfg.CIDR = cfg.CIDR.Masked()
	if cfg.GracePeriod <= 0 {
		cfg.GracePeriod = DefaultGracePeriod
	}
	if cfg.ClaimPrefix == "" {
		cfg.ClaimPrefix = DefaultClaimPrefix
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = 20 * time.Millisecond
	}
	if cfg.Resync <= 0 {
		cfg.Resync = min(cfg.GracePeriod/4, 30*time.Second)
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 32
	}
	if cfg.Settle <= 0 {
		cfg.Settle = time.Second
	}
	if cfg.Informers == nil {
		cfg.Informers = store.NewInformers(st)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("vip: %w", err)
	}
	a4 := cfg.CIDR.Addr().As4()
	a := &Allocator{
		st: st, cli: st.Client(), cfg: cfg, log: cfg.Logger.With("component", "vip"), m: m,
		base: uint32(a4[0])<<24 | uint32(a4[1])<<16 | uint32(a4[2])<<8 | uint32(a4[3]),
		size: 1 << (32 - cfg.CIDR.Bits()),
		dps:  map[string][]Key{}, zis: map[string][]Key{}, vips: map[Key]vipState{},
		used: map[uint32]Key{}, taken: map[uint32]struct{}{}, ready: make(chan struct{}), unneeded: map[Key]time.Time{},
	}
	a.m.capacity.Set(float64(a.usable()))
	return a, nil
}

// Ready is closed after the first reconcile over a complete view.
func (a *Allocator) Ready() <-chan struct{} { return a.ready }

// usable counts the addresses handed out: the network and broadcast
// addresses of the CIDR are skipped (240.0.0.0/4 ends in 255.255.255.255).
func (a *Allocator) usable() uint64 {
	if a.size > 2 {
		return a.size - 2
	}
	return a.size
}

func (a *Allocator) offsetOK(off uint64) bool {
	return a.size <= 2 || (off != 0 && off != a.size-1)
}

func (a *Allocator) addr(off uint64) uint32 { return a.base + uint32(off) }

func ipString(ip uint32) string {
	return netip.AddrFrom4([4]byte{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)}).String()
}

func parseIP(s string) (uint32, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return 0, false
	}
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]), true
}

// Services returns the (mesh, service) keys a Dataplane makes reachable:
// its services by the identity rule (inbounds and gateway).
func dataplaneServices(r *resource.Resource) []Key {
	dp, ok := r.Spec.(*meshv1.Dataplane)
	if !ok {
		return nil
	}
	var out []Key
	for _, s := range resource.DataplaneServices(dp) {
		if validService(s) {
			out = append(out, Key{r.Meta.GetMesh(), s})
		}
	}
	return out
}

func (a *Allocator) ingressServices(r *resource.Resource) []Key {
	zi, ok := r.Spec.(*meshv1.ZoneIngress)
	if !ok || (a.cfg.Zone != "" && zi.GetZone() == a.cfg.Zone) {
		return nil
	}
	var out []Key
	for _, s := range zi.GetAvailableServices() {
		if svc := s.GetTags()[resource.ServiceTag]; validService(svc) && validService(s.GetMesh()) {
			out = append(out, Key{s.GetMesh(), svc})
		}
	}
	return out
}

// validService accepts the names that can be a VirtualIP name and a DNS
// label: lowercase letters, digits and '-', at most 63 characters.
func validService(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

const (
	wDataplane = iota
	wIngress
	wVIP
)

// Run watches the store and keeps VIPs allocated until ctx ends.
func (a *Allocator) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var chans [3]chan store.Batch
	var subs []*store.Subscription
	// The views the DNS table shares (dnsview): they keep what put reads.
	views := map[*resource.Type][]*store.View{resource.DataplaneType: {dnsview.Dataplane}, resource.VirtualIPType: {dnsview.VirtualIP}}
	for i, t := range []*resource.Type{resource.DataplaneType, resource.ZoneIngressType, resource.VirtualIPType} {
		ch := make(chan store.Batch)
		chans[i] = ch
		subs = append(subs, a.cfg.Informers.For(t, views[t]...).Subscribe(ctx, "vip allocator", func(b store.Batch) error {
			select {
			case ch <- b:
			case <-ctx.Done():
			}
			return nil
		}))
	}
	defer func() {
		cancel()
		for _, s := range subs {
			<-s.Done()
		}
	}()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	resync := time.NewTicker(a.cfg.Resync)
	defer resync.Stop()
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	dirty := false
	kick := func() {
		if !dirty {
			dirty = true
			debounce.Reset(a.cfg.Debounce)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case b := <-chans[wDataplane]:
			for _, ev := range b.Events {
				a.apply(wDataplane, ev)
			}
			kick()
		case b := <-chans[wIngress]:
			for _, ev := range b.Events {
				a.apply(wIngress, ev)
			}
			kick()
		case b := <-chans[wVIP]:
			for _, ev := range b.Events {
				a.apply(wVIP, ev)
			}
			kick()
		case <-debounce.C:
			dirty = false
			a.reconcile(ctx)
		case <-settle.C:
			a.reconcile(ctx)
		case <-resync.C:
			a.gcDue = true
			a.reconcile(ctx)
		}
		if a.wake {
			a.wake = false
			settle.Reset(a.cfg.Settle)
		}
	}
}

func (a *Allocator) apply(w int, ev store.Event) {
	a.rev[w] = max(a.rev[w], ev.Revision)
	switch ev.Kind {
	case store.EventSync:
		a.synced[w] = true
		switch w {
		case wDataplane:
			a.dps = map[string][]Key{}
		case wIngress:
			a.zis = map[string][]Key{}
		case wVIP:
			a.vips = map[Key]vipState{}
			a.used = map[uint32]Key{}
		}
		for _, r := range ev.Resources {
			a.put(w, r)
		}
	case store.EventPut:
		a.put(w, ev.Resource)
	case store.EventDelete:
		a.del(w, ev.Resource)
	}
	a.m.inUse.Set(float64(len(a.vips)))
}

func (a *Allocator) put(w int, r *resource.Resource) {
	switch w {
	case wDataplane:
		a.dps[r.Meta.GetMesh()+"/"+r.Meta.GetName()] = dataplaneServices(r)
	case wIngress:
		a.zis[r.Meta.GetName()] = a.ingressServices(r)
	case wVIP:
		a.setVIP(r)
	}
}

func (a *Allocator) del(w int, r *resource.Resource) {
	switch w {
	case wDataplane:
		delete(a.dps, r.Meta.GetMesh()+"/"+r.Meta.GetName())
	case wIngress:
		delete(a.zis, r.Meta.GetName())
	case wVIP:
		a.forget(Key{r.Meta.GetMesh(), r.Meta.GetName()})
	}
}

func (a *Allocator) forget(k Key) {
	delete(a.unneeded, k)
	if old, ok := a.vips[k]; ok {
		if old.ipOK && a.used[old.ip] == k {
			delete(a.used, old.ip)
		}
		delete(a.vips, k)
	}
}

// vipState is what the allocator keeps of a VirtualIP: a few words rather
// than the whole resource, since a zone may hold hundreds of thousands.
type vipState struct {
	ip       uint32
	ipOK     bool
	version  int64
	released time.Time // zero: active
}

func (v vipState) resource(k Key) *resource.Resource {
	r := resource.New(resource.VirtualIPType, k.Mesh, k.Service)
	spec := r.Spec.(*meshv1.VirtualIP)
	spec.Service = k.Service
	if v.ipOK {
		spec.Ip = ipString(v.ip)
	}
	if !v.released.IsZero() {
		spec.ReleasedTime = resource.Timestamp(v.released)
	}
	r.Meta.Version = v.version
	return r
}

// setVIP records a VirtualIP unless a newer version is already known (our
// own writes are recorded before their watch events arrive).
func (a *Allocator) setVIP(r *resource.Resource) {
	k := Key{r.Meta.GetMesh(), r.Meta.GetName()}
	if old, ok := a.vips[k]; ok {
		if old.version > r.Meta.GetVersion() {
			return
		}
		if old.ipOK && a.used[old.ip] == k {
			delete(a.used, old.ip)
		}
	}
	spec, _ := r.Spec.(*meshv1.VirtualIP)
	v := vipState{version: r.Meta.GetVersion()}
	v.ip, v.ipOK = parseIP(spec.GetIp())
	if rt := spec.GetReleasedTime(); rt != nil {
		v.released = rt.AsTime()
	}
	a.vips[k] = v
	if v.ipOK {
		a.used[v.ip] = k
		delete(a.taken, v.ip)
	}
}

func (a *Allocator) desired() map[Key]struct{} {
	d := map[Key]struct{}{}
	for _, ks := range a.dps {
		for _, k := range ks {
			d[k] = struct{}{}
		}
	}
	for _, ks := range a.zis {
		for _, k := range ks {
			d[k] = struct{}{}
		}
	}
	return d
}

// reconcile brings etcd in line with the desired set. It runs only over a
// complete view (all three watches synced): before that, a missing
// Dataplane could look like a service that went away.
func (a *Allocator) reconcile(ctx context.Context) {
	if !a.synced[wDataplane] || !a.synced[wIngress] || !a.synced[wVIP] {
		return
	}
	now := a.cfg.Now()
	want := a.desired()
	var alloc []Key
	for k := range want {
		v, ok := a.vips[k]
		if !ok {
			alloc = append(alloc, k)
			continue
		}
		if !v.released.IsZero() {
			a.setReleased(ctx, k, v, false, "reclaimed")
		}
	}
	var keys []Key
	for k := range a.vips {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	// Watches of different types deliver independently: a VIP allocated for
	// a new Dataplane can arrive before the Dataplane does. A VIP is released
	// at once only when this replica's views of Dataplanes and ZoneIngresses
	// are at least as new as the VIP; otherwise after it has looked unneeded
	// for the settle period.
	newest := int64(0)
	for _, k := range keys {
		if v := a.vips[k]; v.released.IsZero() {
			newest = max(newest, v.version)
		}
	}
	a.catchUp(ctx, newest)
	seen := min(a.rev[wDataplane], a.rev[wIngress])
	for k := range a.unneeded {
		if _, ok := want[k]; ok {
			delete(a.unneeded, k)
		}
	}
	for _, k := range keys {
		v := a.vips[k]
		switch {
		case v.released.IsZero() && v.version > seen:
			first, ok := a.unneeded[k]
			if !ok {
				a.unneeded[k] = time.Now()
				a.wake = true
				continue
			}
			if time.Since(first) < a.cfg.Settle {
				a.wake = true
				continue
			}
			delete(a.unneeded, k)
			a.setReleased(ctx, k, v, true, "released")
		case v.released.IsZero():
			delete(a.unneeded, k)
			a.setReleased(ctx, k, v, true, "released")
		case !now.Before(v.released.Add(a.cfg.GracePeriod)):
			a.free(ctx, k, v)
		}
	}
	sort.Slice(alloc, func(i, j int) bool {
		if alloc[i].Mesh != alloc[j].Mesh {
			return alloc[i].Mesh < alloc[j].Mesh
		}
		return alloc[i].Service < alloc[j].Service
	})
	a.allocate(ctx, alloc)
	if a.gcDue {
		a.gcDue = false
		a.collectOrphanClaims(ctx)
	}
	a.m.inUse.Set(float64(len(a.vips)))
	select {
	case <-a.ready:
	default:
		close(a.ready)
	}
}

// catchUp moves a watch's revision forward to the present when etcd holds
// no Dataplane (or ZoneIngress) written after it: a quiet watch has seen
// every service there is. Deletions it may not have seen yet only remove
// services, so they cannot make a release wrong.
func (a *Allocator) catchUp(ctx context.Context, to int64) {
	for w, t := range map[int]*resource.Type{wDataplane: resource.DataplaneType, wIngress: resource.ZoneIngressType} {
		if a.rev[w] >= to {
			continue
		}
		resp, err := a.cli.Get(ctx, a.st.TypePrefix(t, ""), clientv3.WithPrefix(), clientv3.WithCountOnly(),
			clientv3.WithMinModRev(a.rev[w]+1))
		if err == nil && resp.Count == 0 {
			a.rev[w] = max(a.rev[w], resp.Header.Revision)
		}
	}
}

func (a *Allocator) setReleased(ctx context.Context, k Key, v vipState, release bool, event string) {
	nv := v.resource(k)
	spec := nv.Spec.(*meshv1.VirtualIP)
	spec.ReleasedTime = nil
	if release {
		spec.ReleasedTime = resource.Timestamp(a.cfg.Now())
	}
	out, err := a.st.Update(ctx, nv)
	switch {
	case err == nil:
		a.setVIP(out)
		a.m.events.WithLabelValues(event).Inc()
		a.log.Info("vip "+event, "mesh", k.Mesh, "svc", k.Service, "ip", spec.GetIp())
	case store.IsConflict(err), store.IsNotFound(err), store.IsMeshNotFound(err):
		// Another replica got there first; its write reaches us by the watch.
	case ctx.Err() != nil:
	default:
		a.m.events.WithLabelValues("error").Inc()
		a.log.Warn("vip: update failed", "mesh", k.Mesh, "svc", k.Service, "error", err)
	}
}

func (a *Allocator) free(ctx context.Context, k Key, v vipState) {
	ip := ipString(v.ip)
	vkey := a.st.Key(resource.VirtualIPType, k.Mesh, k.Service)
	ops := []clientv3.Op{clientv3.OpDelete(vkey)}
	if v.ipOK {
		ops = append(ops, clientv3.OpDelete(a.cfg.ClaimPrefix+ip))
	}
	resp, err := a.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(vkey), "=", v.version)).Then(ops...).Commit()
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		a.m.events.WithLabelValues("error").Inc()
		a.log.Warn("vip: free failed", "mesh", k.Mesh, "svc", k.Service, "error", err)
		return
	}
	if resp.Succeeded {
		a.forget(k)
		a.m.events.WithLabelValues("freed").Inc()
		a.log.Info("vip freed after grace period", "mesh", k.Mesh, "svc", k.Service, "ip", ip)
	}
}

// candidate picks the first free address at or after the key's hash, so
// replicas with the same view pick the same address for the same service.
func (a *Allocator) candidate(k Key, pending map[uint32]struct{}) (uint32, bool) {
	if uint64(len(a.used)+len(a.taken)+len(pending)) >= a.usable() {
		return 0, false
	}
	h := fnv.New64a()
	h.Write([]byte(k.Mesh))
	h.Write([]byte{0})
	h.Write([]byte(k.Service))
	start := h.Sum64() % a.size
	for i := uint64(0); i < a.size; i++ {
		off := (start + i) % a.size
		if !a.offsetOK(off) {
			continue
		}
		ip := a.addr(off)
		if _, ok := a.used[ip]; ok {
			continue
		}
		if _, ok := a.taken[ip]; ok {
			continue
		}
		if _, ok := pending[ip]; ok {
			continue
		}
		return ip, true
	}
	return 0, false
}

type allocation struct {
	k  Key
	ip uint32
}

func (a *Allocator) encode(k Key, ip uint32) ([]byte, *resource.Resource, error) {
	now := resource.Timestamp(a.cfg.Now())
	r := &resource.Resource{
		Meta: &meshv1.Meta{Type: resource.VirtualIPType.Name, Mesh: k.Mesh, Name: k.Service, CreationTime: now, ModificationTime: now},
		Spec: &meshv1.VirtualIP{Service: k.Service, Ip: ipString(ip)},
	}
	spec, err := proto.MarshalOptions{Deterministic: true}.Marshal(r.Spec)
	if err != nil {
		return nil, nil, err
	}
	val, err := proto.Marshal(&storev1.StoredResource{Meta: r.Meta, Spec: spec})
	return val, r, err
}

func (a *Allocator) exhausted(k Key) {
	a.m.exhausted.Inc()
	if now := time.Now(); now.Sub(a.lastEx) > 10*time.Second {
		a.lastEx = now
		a.log.Error("VIP CIDR exhausted: no free address, service gets no VIP until one is freed",
			"cidr", a.cfg.CIDR.String(), "usable", a.usable(), "inUse", len(a.used), "mesh", k.Mesh, "svc", k.Service)
	}
}

// allocate gives each key a VIP, several per transaction; a batch that
// fails (a race with another replica) is retried one by one.
func (a *Allocator) allocate(ctx context.Context, keys []Key) {
	for len(keys) > 0 && ctx.Err() == nil {
		n := min(len(keys), a.cfg.BatchSize)
		batch := keys[:n]
		keys = keys[n:]
		pending := map[uint32]struct{}{}
		var allocs []allocation
		for _, k := range batch {
			ip, ok := a.candidate(k, pending)
			if !ok {
				a.exhausted(k)
				continue
			}
			pending[ip] = struct{}{}
			allocs = append(allocs, allocation{k: k, ip: ip})
		}
		if len(allocs) == 0 {
			continue
		}
		if len(allocs) > 1 && a.commitBatch(ctx, allocs) {
			continue
		}
		for _, al := range allocs {
			a.allocateOne(ctx, al.k)
		}
	}
}

func (a *Allocator) commitBatch(ctx context.Context, allocs []allocation) bool {
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	meshes := map[string]bool{}
	res := make([]*resource.Resource, len(allocs))
	for i, al := range allocs {
		val, r, err := a.encode(al.k, al.ip)
		if err != nil {
			return false
		}
		res[i] = r
		vkey := a.st.Key(resource.VirtualIPType, al.k.Mesh, al.k.Service)
		ckey := a.cfg.ClaimPrefix + ipString(al.ip)
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(vkey), "=", 0), clientv3.Compare(clientv3.CreateRevision(ckey), "=", 0))
		ops = append(ops, clientv3.OpPut(vkey, string(val)), clientv3.OpPut(ckey, al.k.String()))
		if !meshes[al.k.Mesh] {
			meshes[al.k.Mesh] = true
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(a.st.Key(resource.MeshType, "", al.k.Mesh)), ">", 0))
		}
	}
	resp, err := a.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil || !resp.Succeeded {
		return false
	}
	for i, r := range res {
		r.Meta.Version = resp.Header.Revision
		a.setVIP(r)
		a.m.events.WithLabelValues("allocated").Inc()
		a.log.Debug("vip allocated", "mesh", allocs[i].k.Mesh, "svc", allocs[i].k.Service, "ip", ipString(allocs[i].ip))
	}
	return true
}

// allocateOne allocates one VIP, moving to the next address on a claim
// conflict and adopting another replica's VIP when it won the race.
func (a *Allocator) allocateOne(ctx context.Context, k Key) {
	vkey := a.st.Key(resource.VirtualIPType, k.Mesh, k.Service)
	mkey := a.st.Key(resource.MeshType, "", k.Mesh)
	for attempt := 0; attempt < 64 && ctx.Err() == nil; attempt++ {
		if _, ok := a.vips[k]; ok {
			return
		}
		ip, ok := a.candidate(k, nil)
		if !ok {
			a.exhausted(k)
			return
		}
		val, r, err := a.encode(k, ip)
		if err != nil {
			a.log.Error("vip: encode", "error", err)
			return
		}
		ckey := a.cfg.ClaimPrefix + ipString(ip)
		resp, err := a.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.CreateRevision(vkey), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(ckey), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(mkey), ">", 0),
		).Then(clientv3.OpPut(vkey, string(val)), clientv3.OpPut(ckey, k.String())).
			Else(clientv3.OpGet(vkey), clientv3.OpGet(ckey, clientv3.WithCountOnly()), clientv3.OpGet(mkey, clientv3.WithCountOnly())).Commit()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.m.events.WithLabelValues("error").Inc()
			a.log.Warn("vip: allocation failed", "mesh", k.Mesh, "svc", k.Service, "error", err)
			return
		}
		if resp.Succeeded {
			r.Meta.Version = resp.Header.Revision
			a.setVIP(r)
			a.m.events.WithLabelValues("allocated").Inc()
			a.log.Debug("vip allocated", "mesh", k.Mesh, "svc", k.Service, "ip", ipString(ip))
			return
		}
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			if got, err := a.decodeVIP(string(kvs[0].Key), kvs[0].Value, kvs[0].ModRevision); err == nil {
				a.setVIP(got)
				a.m.events.WithLabelValues("adopted").Inc()
			}
			return
		}
		if resp.Responses[2].GetResponseRange().Count == 0 {
			a.log.Debug("vip: mesh does not exist, not allocating", "mesh", k.Mesh, "svc", k.Service)
			return
		}
		// The address is claimed by a VIP we have not seen yet (or an
		// orphan): skip it and let the claim collector look at it.
		a.taken[ip] = struct{}{}
		a.gcDue = true
		a.m.events.WithLabelValues("claim_conflict").Inc()
	}
}

func (a *Allocator) decodeVIP(key string, val []byte, rev int64) (*resource.Resource, error) {
	sr := &storev1.StoredResource{}
	if err := proto.Unmarshal(val, sr); err != nil {
		return nil, err
	}
	spec := &meshv1.VirtualIP{}
	if err := proto.Unmarshal(sr.GetSpec(), spec); err != nil {
		return nil, err
	}
	meta := sr.GetMeta()
	if meta == nil {
		_, mesh, name, err := a.st.ParseKey(key)
		if err != nil {
			return nil, err
		}
		meta = &meshv1.Meta{Type: resource.VirtualIPType.Name, Mesh: mesh, Name: name}
	}
	meta.Version = rev
	return &resource.Resource{Meta: meta, Spec: spec}, nil
}

// collectOrphanClaims deletes claims whose VirtualIP is gone (deleting a
// Mesh removes its VIPs but not their claims) or holds another address.
// Each delete is conditional on etcd still showing the orphan, so a claim
// made by a replica we have not heard from yet is never removed.
func (a *Allocator) collectOrphanClaims(ctx context.Context) {
	resp, err := a.cli.Get(ctx, a.cfg.ClaimPrefix, clientv3.WithPrefix())
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("vip: list claims", "error", err)
		}
		return
	}
	for _, kv := range resp.Kvs {
		ipStr := strings.TrimPrefix(string(kv.Key), a.cfg.ClaimPrefix)
		ip, ok := parseIP(ipStr)
		mesh, svc, ok2 := strings.Cut(string(kv.Value), "/")
		if !ok || !ok2 {
			continue
		}
		k := Key{mesh, svc}
		vkey := a.st.Key(resource.VirtualIPType, mesh, svc)
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)}
		v, known := a.vips[k]
		switch {
		case known && v.ipOK && v.ip == ip:
			continue // a live claim
		case known:
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(vkey), "=", v.version))
		default:
			if kv.ModRevision > resp.Header.Revision {
				continue
			}
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(vkey), "=", 0))
		}
		tr, err := a.cli.Txn(ctx).If(cmps...).Then(clientv3.OpDelete(string(kv.Key))).Commit()
		if err != nil {
			a.log.Warn("vip: delete orphan claim", "ip", ipStr, "error", err)
			continue
		}
		if tr.Succeeded {
			delete(a.taken, ip)
			a.m.events.WithLabelValues("orphan_claim_deleted").Inc()
			a.log.Info("vip: deleted orphaned claim", "ip", ipStr, "mesh", mesh, "svc", svc)
		}
	}
}
