package main

// Scenarios with several xds-server replicas (issue 18: (d) a replica
// killed with its proxies on it, (e) the xds-server restarted, (f) a
// replica added, proxies rebalancing within --max-connection-age).
//
// Spread: the replicas sit behind a simulated Service. Every new
// connection of a proxy goes to a uniformly random ready replica, as
// kube-proxy (iptables mode) does for a ClusterIP Service, which is how
// weft-dp and Envoy reach the xds-server: one address, one connection,
// re-dialled (to any replica) when the stream ends. A replica leaves the
// Service when it is signalled (a terminating pod leaves the endpoints;
// for SIGKILL this is optimistic, Kubernetes takes seconds to notice) and
// joins it once it logs "serving xDS" (ready).
//
// A proxy keeps its last ACKed configuration while it reconnects (as
// Envoy and grpc-go do) and re-subscribes with its versions; what is
// counted per proxy:
//   - back on full config: from the signal (or the new replica's start)
//     until a stream opened afterwards has ACKed every subscribed type;
//   - without a stream: from its stream's end until the next stream is
//     opened (on a connection to a ready replica);
//   - over delta (-delta) a reconnect sends initial_resource_versions and
//     gets only what changed: CDS and LDS are answered anyway (a wildcard
//     first request, once the replica has the proxy's snapshot), a named
//     type held at its current versions is not, so it counts as back once
//     CDS and LDS are;
//   - gap: a response on a new stream that lacks a resource the proxy
//     held (the proxy would drop it: config lost); version change: the
//     new stream's version differs from the one held, though nothing
//     changed in the store (it would be a needless push).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/connectivity"
)

// envoyBackoff is Envoy's xDS stream retry (JitteredExponentialBackOff,
// base 500 ms, max 30 s): the n-th retry waits uniformly in
// [0, (2^n−1)·base), capped at max.
type envoyBackoff struct{ n uint }

const (
	retryBase = 500 * time.Millisecond
	retryMax  = 30 * time.Second
)

func (b *envoyBackoff) next() time.Duration {
	if b.n == 0 {
		b.n = 1
	}
	ceil := time.Duration(1<<b.n-1) * retryBase
	if ceil <= retryMax {
		b.n++
	}
	d := time.Duration(rand.Int64N(int64(ceil)))
	return min(d, retryMax)
}

func (b *envoyBackoff) reset() { b.n = 0 }

// awaitConnection makes one connection attempt before a stream attempt,
// as Envoy does (its xDS stream opens a connection on demand): without
// it a gRPC channel in TRANSIENT_FAILURE fails the stream at once during
// gRPC's own reconnect backoff, without dialling, and every such failure
// would double the stream backoff too.
func (p *proxy) awaitConnection(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	st := p.conn.GetState()
	if st == connectivity.TransientFailure {
		p.conn.ResetConnectBackoff()
	}
	p.conn.Connect()
	tried := false
	for {
		switch st {
		case connectivity.Ready, connectivity.Shutdown:
			return
		case connectivity.Connecting:
			tried = true
		case connectivity.TransientFailure:
			if tried {
				return
			}
		}
		if !p.conn.WaitForStateChange(ctx, st) {
			return
		}
		st = p.conn.GetState()
	}
}

// replicaState is one proxy's current stream, guarded by proxy.mu.
type replicaState struct {
	connAddr    string    // the replica of the proxy's connection (dialled last)
	streamStart time.Time // the current stream's start
	streamTypes map[string]bool
	// deltaHeld are, over delta, the named types (EDS, RDS, SDS) the
	// current stream subscribed to with initial_resource_versions: when
	// they are current the server sends nothing for them.
	deltaHeld map[string]bool
	fullAt    time.Time // when the current stream had every subscribed type ACKed
	ended     time.Time // when the previous stream ended (zero: none)
	// down are the times without a stream (end → next stream opened).
	down []time.Duration
	// streamEnds, gaps and versionChanges count since the start.
	streamEnds, gaps, versionChanges, sameVersion int
	gapWhy                                        string
}

func (p *proxy) dialed(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rs.connAddr = addr
}

func (p *proxy) streamStarted() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rs.streamStart, p.rs.fullAt = time.Now(), time.Time{}
	if !p.rs.ended.IsZero() {
		p.rs.down = append(p.rs.down, p.rs.streamStart.Sub(p.rs.ended))
	}
	p.rs.streamTypes = map[string]bool{}
	p.rs.deltaHeld = nil
}

func (p *proxy) streamEnded() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rs.streamTypes == nil {
		return // no stream opened
	}
	p.rs.streamTypes = nil
	p.rs.ended = time.Now()
	p.rs.streamEnds++
}

// streamAcked records an ACKed response of type t on the current stream;
// prev is the response ACKed before it (on this or an earlier stream).
func (p *proxy) streamAcked(t string, prev, resp *discoveryv3.DiscoveryResponse) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	rs := &p.rs
	if rs.streamTypes == nil {
		return
	}
	first := !rs.streamTypes[t]
	rs.streamTypes[t] = true
	if first && prev != nil && rs.streamEnds > 0 {
		if prev.GetVersionInfo() == resp.GetVersionInfo() {
			rs.sameVersion++
		} else {
			rs.versionChanges++
		}
		had := map[string]bool{}
		for _, a := range prev.GetResources() {
			n, _ := resourceKey(t, a)
			had[n] = true
		}
		for _, a := range resp.GetResources() {
			n, _ := resourceKey(t, a)
			delete(had, n)
		}
		if len(had) > 0 {
			rs.gaps++
			for n := range had {
				rs.gapWhy = fmt.Sprintf("%s %q gone after reconnecting (%s → %s)", t[strings.LastIndexByte(t, '.')+1:], n, prev.GetVersionInfo(), resp.GetVersionInfo())
				break
			}
		}
	}
	if rs.fullAt.IsZero() {
		full := true
		// Over delta, go-control-plane answers the wildcard types' (CDS,
		// LDS) first requests even with nothing changed, but only once the
		// replica has the proxy's snapshot; a named type held at its
		// current versions gets no response. So a named type the stream
		// subscribed to with the versions it holds is back once both
		// wildcard types are ACKed on the stream (or on its own ACK).
		wildcardBack := rs.streamTypes[resourcev3.ClusterType] && rs.streamTypes[resourcev3.ListenerType]
		for typ, names := range p.names {
			if rs.deltaHeld[typ] && wildcardBack {
				continue
			}
			if !rs.streamTypes[typ] && (names == nil || len(names) > 0) {
				full = false
				break
			}
		}
		if full {
			rs.fullAt = now
		}
	}
}

// fullSince: the proxy's current stream started after t and has every
// subscribed type ACKed; it returns when it was full.
func (p *proxy) fullSince(t time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rs.streamTypes == nil || p.rs.fullAt.IsZero() || p.rs.streamStart.Before(t) {
		return time.Time{}, false
	}
	return p.rs.fullAt, true
}

// describe is the proxy's stream state, for errors.
func (p *proxy) describe() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var types []string
	for t, names := range p.names {
		types = append(types, fmt.Sprintf("%s(%d names) acked on this stream %v", t[strings.LastIndexByte(t, '.')+1:], len(names), p.rs.streamTypes[t]))
	}
	sort.Strings(types)
	e, _ := p.lastErr.Load().(string)
	return fmt.Sprintf("%s: stream open %v since %s on %q, %d streams; %s; last error %q", p.spec.Name, p.rs.streamTypes != nil,
		p.rs.streamStart.Format("15:04:05.000"), p.rs.connAddr, p.streams.Load(), strings.Join(types, ", "), e)
}

// replicaAddr is the replica of the proxy's open stream ("": none).
func (p *proxy) replicaAddr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rs.streamTypes == nil {
		return ""
	}
	return p.rs.connAddr
}

// streamSince: the proxy's current stream was opened after t (on a
// connection to a ready replica).
func (p *proxy) streamSince(t time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rs.streamTypes == nil || p.rs.streamStart.Before(t) {
		return time.Time{}, false
	}
	return p.rs.streamStart, true
}

// replica is one started xds-server process.
type replica struct {
	name        string
	c           *xdsChild
	addr, admin string
	pid         int
	peakRSS     atomic.Int64
	stopSample  chan struct{}
	sampled     chan struct{}
}

// replicaSet is the replicas and the Service in front of them.
type replicaSet struct {
	cp      *controlPlane
	dir     string
	args    []string // xds-server flags, instance "xds-fleet"
	mu      sync.Mutex
	all     []*replica
	ready   []*replica // in the Service
	sampleT time.Duration
}

// start starts a replica named instance and puts it in the Service once
// it serves.
func (rs *replicaSet) start(ctx context.Context, instance string) (*replica, error) {
	a := append([]string(nil), rs.args...)
	for i := range a {
		if a[i] == "xds-fleet" {
			a[i] = instance
		}
	}
	c, err := startXDSChild(ctx, a, fmt.Sprintf("%s/%s-%d.log", rs.dir, instance, time.Now().UnixNano()), "", "")
	if err != nil {
		return nil, err
	}
	r := rs.adopt(instance, c)
	return r, nil
}

func (rs *replicaSet) adopt(name string, c *xdsChild) *replica {
	r := &replica{name: name, c: c, addr: c.addr, admin: c.admin, pid: c.cmd.Process.Pid,
		stopSample: make(chan struct{}), sampled: make(chan struct{})}
	go r.sample(rs.sampleT)
	rs.mu.Lock()
	rs.all = append(rs.all, r)
	rs.ready = append(rs.ready, r)
	rs.mu.Unlock()
	return r
}

// sample tracks the replica's peak RSS until it exits or stopSample.
func (r *replica) sample(every time.Duration) {
	defer close(r.sampled)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if ps, err := readProc(r.pid); err == nil && ps.rss > r.peakRSS.Load() {
			r.peakRSS.Store(ps.rss)
		}
		select {
		case <-t.C:
		case <-r.c.done:
			return
		case <-r.stopSample:
			return
		}
	}
}

// signal takes r out of the Service and sends it sig.
func (rs *replicaSet) signal(r *replica, sig syscall.Signal) error {
	rs.mu.Lock()
	for i, x := range rs.ready {
		if x == r {
			rs.ready = append(rs.ready[:i:i], rs.ready[i+1:]...)
			break
		}
	}
	rs.mu.Unlock()
	return r.c.cmd.Process.Signal(sig)
}

// dial is the Service: a random ready replica per connection.
func (rs *replicaSet) dial(ctx context.Context, _ string) (net.Conn, error) {
	rs.mu.Lock()
	n := len(rs.ready)
	var addr string
	if n > 0 {
		addr = rs.ready[rand.IntN(n)].addr
	}
	rs.mu.Unlock()
	if addr == "" {
		return nil, errors.New("no ready xds-server replica")
	}
	return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
}

func (rs *replicaSet) stop() {
	rs.mu.Lock()
	all := append([]*replica(nil), rs.all...)
	rs.mu.Unlock()
	for _, r := range all {
		select {
		case <-r.stopSample:
		default:
			close(r.stopSample)
		}
		r.c.stop()
	}
}

func (rs *replicaSet) byAddr() map[string]*replica {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	m := map[string]*replica{}
	for _, r := range rs.all {
		m[r.addr] = r
	}
	return m
}

// spread counts the proxies with a stream per replica (client side).
func (rs *replicaSet) spread(f *fleet) map[string]int {
	by := rs.byAddr()
	out := map[string]int{}
	for _, p := range f.proxies {
		if a := p.replicaAddr(); a != "" {
			if r := by[a]; r != nil {
				out[r.name]++
			} else {
				out[a]++
			}
		}
	}
	return out
}

// connectedProxies is the replica's weft_xds_connected_proxies (all kinds).
func connectedProxies(ctx context.Context, admin string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+admin+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	n := 0.0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "weft_xds_connected_proxies") {
			f := strings.Fields(l)
			var v float64
			if _, err := fmt.Sscan(f[len(f)-1], &v); err == nil {
				n += v
			}
		}
	}
	return int(n), nil
}

// waitFleet polls (every 50 ms, a deadline) until cond holds for every
// proxy in ps.
func waitFleet(ctx context.Context, ps []*proxy, timeout time.Duration, what string, cond func(*proxy) bool) error {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		missing, first := 0, ""
		var firstP *proxy
		for _, p := range ps {
			if !cond(p) {
				if missing == 0 {
					first, firstP = p.describe(), p
				}
				missing++
			}
		}
		if missing == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d of %d proxies not there after %s (first: %s)", what, missing, len(ps), timeout, first)
		}
		_ = firstP
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// replicaResult is one replica scenario's numbers.
type replicaResult struct {
	scenario, signal   string
	delta              bool // the proxies speak delta xDS
	n, replicas        int
	maxAge, grace      time.Duration
	loadStart, loadEnd string
	// errsBefore and errs tally why streams ended while the fleet
	// connected, and from the scenario's start to the end.
	errsBefore, errs []string
	configureAll     time.Duration
	spreadBefore     map[string]int
	affected         int
	reconnected      []time.Duration // signal → a stream on a ready replica
	back             []time.Duration // signal → every type answered on the new stream
	silent           int             // reconnected, no response (same versions)
	probe            []time.Duration // one endpoint change after the scenario → ACKed
	down             []time.Duration // stream end → next first response
	gaps, changes    int
	same             int
	gapWhy           string
	noStream         int // proxies without a stream at the end
	replicas0        []repNumbers
	replicas1        []repNumbers
	timeline         []string
	balanced         time.Duration
	spreadAfter      map[string]int
	storm            time.Duration // signal → all back
	serving          time.Duration // restart: signal → the new replicas serve
	reconnects       int
}

// repNumbers: one replica's memory and CPU at a point.
type repNumbers struct {
	name      string
	rss, peak int64
	cpu       time.Duration
	cpuDelta  time.Duration
	proxies   int     // its weft_xds_connected_proxies
	heap, gor float64 // go_memstats_heap_inuse_bytes, go_goroutines
	exited    bool
	pid       int
}

// runReplicas runs -scenario restart, kill or scaleout.
func runReplicas(ctx context.Context, o options) (*replicaResult, error) {
	logf := func(format string, args ...any) { fmt.Fprintf(o.log, "xds-fleet: "+format+"\n", args...) }
	sig := syscall.SIGTERM
	switch o.signal {
	case "", "term", "TERM", "SIGTERM":
		if o.signal == "" && o.scenario == "kill" {
			sig = syscall.SIGKILL
		}
	case "kill", "KILL", "SIGKILL":
		sig = syscall.SIGKILL
	default:
		return nil, fmt.Errorf("-signal %q: term or kill", o.signal)
	}
	R := o.replicas
	switch o.scenario {
	case "restart":
		R = max(R, 1)
	case "kill", "scaleout":
		R = max(R, 2)
	default:
		return nil, fmt.Errorf("-scenario %q: restart, kill or scaleout", o.scenario)
	}
	sigName := map[syscall.Signal]string{syscall.SIGTERM: "SIGTERM", syscall.SIGKILL: "SIGKILL"}[sig]
	res := &replicaResult{scenario: o.scenario, signal: sigName, delta: o.delta, n: o.n, replicas: R, loadStart: loadavg(),
		maxAge: o.maxConnAge, grace: o.maxConnAgeGrace}
	if o.scenario == "scaleout" {
		if o.maxConnAge <= 0 {
			return nil, errors.New("-scenario scaleout needs -max-connection-age")
		}
		res.signal = ""
	}
	if o.maxConnAge > 0 {
		o.xdsArgs = append(append([]string(nil), o.xdsArgs...), "--max-connection-age", o.maxConnAge.String(),
			"--max-connection-age-grace", o.maxConnAgeGrace.String())
	}
	if o.apiURL != "" {
		return nil, errors.New("-scenario starts its own control plane and replicas: no -api-url")
	}
	cp, err := startControlPlane(ctx, o)
	if err != nil {
		return nil, err
	}
	defer cp.stop()
	rs := &replicaSet{cp: cp, dir: cp.dir, args: cp.xdsArgs, sampleT: 100 * time.Millisecond}
	defer rs.stop()
	rs.adopt("xds-fleet", cp.child())
	// scaleout begins with one replica; R-1 join later.
	for i := 1; i < R && o.scenario != "scaleout"; i++ {
		if _, err := rs.start(ctx, fmt.Sprintf("xds-fleet-%d", i)); err != nil {
			return nil, err
		}
	}
	r := &rest{base: cp.apiURL, token: cp.token, hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.conc * 2}}}
	toks, err := register(ctx, r, o.mesh, 0, o.n, o.services, o.conc)
	if err != nil {
		return nil, err
	}
	logf("registered %d dataplanes", o.n)
	tc, err := cpTLS(ctx, cp.xdsAdmin)
	if err != nil {
		return nil, err
	}
	d := dialOpts{addr: "passthrough:///xds-server.weft-system:5678", tls: tc, dialer: rs.dial}
	specs := proxySpecs(o.mesh, o.kind, toks, 0, o.services)
	for i := range specs {
		specs[i].Delta = o.delta
	}
	f, all, err := connect(ctx, specs, d, o.conc, o.timeout, o.log)
	if f != nil {
		defer f.stop()
	}
	if err != nil {
		return nil, err
	}
	res.configureAll = all
	res.spreadBefore = rs.spread(f)
	logf("%d proxies configured in %s over %d replicas: %v", o.n, all.Round(time.Millisecond), len(rs.all), res.spreadBefore)
	// Let the connect storm's insight writes pass.
	select {
	case <-time.After(o.settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	res.replicas0 = rs.numbers(ctx, nil)
	base := map[*proxy]replicaState{}
	for _, p := range f.proxies {
		p.mu.Lock()
		base[p] = replicaState{streamEnds: p.rs.streamEnds, down: p.rs.down}
		p.mu.Unlock()
	}
	for _, rr := range rs.all {
		rr.peakRSS.Store(0) // peaks from here on
	}

	res.errsBefore = streamErrs.take()
	var t0 time.Time
	affected := f.proxies
	switch o.scenario {
	case "restart":
		old := append([]*replica(nil), rs.all...)
		t0 = time.Now()
		for _, x := range old {
			if err := rs.signal(x, sig); err != nil {
				return nil, err
			}
		}
		for _, x := range old {
			select {
			case <-x.c.done:
			case <-time.After(60 * time.Second):
				return nil, fmt.Errorf("%s did not exit within 60s of %s", x.name, sig)
			}
		}
		logf("%d replicas exited %s after %s; starting them again", len(old), time.Since(t0).Round(time.Millisecond), sig)
		for _, x := range old {
			if _, err := rs.start(ctx, x.name); err != nil {
				return nil, fmt.Errorf("restarting %s: %w", x.name, err)
			}
		}
		res.serving = time.Since(t0)
		logf("serving again %s after %s", roundDur(res.serving), sig)
	case "kill":
		victim := rs.all[len(rs.all)-1]
		affected = nil
		for _, p := range f.proxies {
			if p.replicaAddr() == victim.addr {
				affected = append(affected, p)
			}
		}
		t0 = time.Now()
		if err := rs.signal(victim, sig); err != nil {
			return nil, err
		}
		logf("%s sent to %s with %d proxies", sig, victim.name, len(affected))
	case "scaleout":
		t0 = time.Now()
		for i := 1; i < R; i++ {
			if _, err := rs.start(ctx, fmt.Sprintf("xds-fleet-%d", i)); err != nil {
				return nil, err
			}
		}
		logf("%d replica(s) added %s after the start", R-1, time.Since(t0).Round(time.Millisecond))
	}
	res.affected = len(affected)

	switch o.scenario {
	case "restart", "kill":
		err := waitFleet(ctx, affected, o.timeout, "reconnected", func(p *proxy) bool { _, ok := p.streamSince(t0); return ok })
		if err != nil {
			return nil, fmt.Errorf("after %s: %w", sig, err)
		}
		res.storm = time.Since(t0)
		for _, p := range affected {
			at, _ := p.streamSince(t0)
			res.reconnected = append(res.reconnected, at.Sub(t0))
		}
		logf("all %d reconnected %s after %s", len(affected), roundDur(res.storm), sig)
	case "scaleout":
		// Every proxy reconnects at least once (age + 10% jitter + grace,
		// + its backoff), and the spread is balanced: each replica holds
		// at least o.balance of its share.
		minMove := o.maxConnAge*11/10 + o.maxConnAgeGrace + retryBase
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		deadline := time.Now().Add(o.timeout)
		for {
			sp := rs.spread(f)
			el := time.Since(t0)
			var parts []string
			ok := true
			for _, x := range rs.all {
				c := sp[x.name]
				if float64(c) < o.balance*float64(o.n)/float64(R) {
					ok = false
				}
				sv, _ := connectedProxies(ctx, x.admin)
				parts = append(parts, fmt.Sprintf("%s %d (server %d)", x.name, c, sv))
			}
			res.timeline = append(res.timeline, fmt.Sprintf("%5.1f s: %s", el.Seconds(), strings.Join(parts, ", ")))
			logf("scale-out %s", res.timeline[len(res.timeline)-1])
			if ok && res.balanced == 0 {
				res.balanced = el
			}
			if res.balanced > 0 && el >= minMove {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("not balanced within %s: %s", o.timeout, res.timeline[len(res.timeline)-1])
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		res.storm = time.Since(t0)
	}
	// The responses on the new streams: a proxy that re-subscribed with
	// the versions the replica computes gets none when it arrived before
	// the replica had its snapshot (the cache answers an open watch only
	// with a different version); it holds the right configuration.
	_ = waitFleet(ctx, affected, o.settle, "full on a new stream", func(p *proxy) bool { _, ok := p.fullSince(t0); return ok })
	for _, p := range affected {
		if at, ok := p.fullSince(t0); ok {
			res.back = append(res.back, at.Sub(t0))
		} else if _, ok := p.streamSince(t0); ok {
			res.silent++
		}
	}
	res.spreadAfter = rs.spread(f)
	res.replicas1 = rs.numbers(ctx, res.replicas0)
	for _, p := range f.proxies {
		p.mu.Lock()
		b := base[p]
		res.reconnects += p.rs.streamEnds - b.streamEnds
		res.down = append(res.down, p.rs.down[len(b.down):]...)
		res.gaps += p.rs.gaps
		res.changes += p.rs.versionChanges
		res.same += p.rs.sameVersion
		if res.gapWhy == "" && p.rs.gapWhy != "" {
			res.gapWhy = p.spec.Name + ": " + p.rs.gapWhy
		}
		if p.rs.streamTypes == nil {
			res.noStream++
		}
		p.mu.Unlock()
	}
	// Every proxy is subscribed on a live stream: one endpoint added to
	// svc-0 (which every proxy calls) reaches all of them.
	res.probe, err = f.converge(ctx, hasEndpoint("10.250.0.1"), func() error {
		dp := dataplane(0, o.services)
		dp["networking"].(map[string]any)["address"] = "10.250.0.1"
		_, err := r.do(ctx, "PUT", "/meshes/"+o.mesh+"/dataplanes/probe-endpoint", dp)
		return err
	}, o.timeout)
	if err != nil {
		return nil, fmt.Errorf("probe change after the scenario: %w", err)
	}
	logf("probe: one endpoint added → all %d ACKed p50 %s p99 %s max %s", len(res.probe), roundDur(pct(res.probe, 50)), roundDur(pct(res.probe, 99)), roundDur(pct(res.probe, 100)))
	res.errs = streamErrs.take()
	res.loadEnd = loadavg()
	return res, nil
}

// numbers reads every replica's /proc and /metrics; CPU deltas against
// before (by name; a restarted replica counts from its start).
func (rs *replicaSet) numbers(ctx context.Context, before []repNumbers) []repNumbers {
	rs.mu.Lock()
	all := append([]*replica(nil), rs.all...)
	rs.mu.Unlock()
	prev := map[int]repNumbers{}
	for _, b := range before {
		prev[b.pid] = b
	}
	var out []repNumbers
	seen := map[string]bool{}
	// The newest process of each name.
	for i := len(all) - 1; i >= 0; i-- {
		r := all[i]
		if seen[r.name] {
			continue
		}
		seen[r.name] = true
		n := repNumbers{name: r.name, pid: r.pid}
		select {
		case <-r.c.done:
			n.exited, n.peak = true, r.peakRSS.Load()
		default:
			ps, _ := readProc(r.pid)
			n.rss, n.cpu = ps.rss, ps.cpu
			n.peak = max(r.peakRSS.Load(), ps.rss)
			n.proxies, _ = connectedProxies(ctx, r.admin)
			n.gor, n.heap, _ = goMetrics(ctx, r.admin)
			// A process started in the scenario counts from its start.
			n.cpuDelta = n.cpu - prev[r.pid].cpu
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func roundDur(d time.Duration) string {
	if d >= 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}

func durDist(d []time.Duration) string {
	if len(d) == 0 {
		return "–"
	}
	return fmt.Sprintf("%s / %s / %s", roundDur(pct(d, 50)), roundDur(pct(d, 99)), roundDur(pct(d, 100)))
}

func (r *replicaResult) print(w io.Writer) {
	mib := func(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
	head := r.scenario
	if r.signal != "" {
		head += " (" + r.signal + ")"
	}
	if r.delta {
		head += ", delta"
	}
	fmt.Fprintf(w, "# xds-fleet -scenario %s: N=%d proxies, %d replicas; %s; load average %s → %s\n", head, r.n, r.replicas, goVersion(), r.loadStart, r.loadEnd)
	if r.maxAge > 0 {
		fmt.Fprintf(w, "# --max-connection-age %s --max-connection-age-grace %s\n", r.maxAge, r.grace)
	}
	fmt.Fprintf(w, "configure all: %s; spread before: %v\n", roundDur(r.configureAll), r.spreadBefore)
	for _, x := range r.replicas0 {
		fmt.Fprintf(w, "before: %s RSS %s, heap %.0f MiB, %.0f goroutines, %d proxies (server)\n", x.name, mib(x.rss), x.heap/(1<<20), x.gor, x.proxies)
	}
	for _, l := range r.timeline {
		fmt.Fprintf(w, "  %s\n", l)
	}
	if r.balanced > 0 {
		fmt.Fprintf(w, "balanced %s after the new replica(s) started\n", roundDur(r.balanced))
	}
	if r.serving > 0 {
		fmt.Fprintf(w, "replicas serving again %s after the signal (exit, start, \"serving xDS\")\n", roundDur(r.serving))
	}
	if r.reconnected != nil {
		fmt.Fprintf(w, "reconnected (signal → stream on a ready replica), %d affected proxies: p50/p99/max %s; all in %s\n", r.affected, durDist(r.reconnected), roundDur(r.storm))
	}
	if r.delta {
		fmt.Fprintln(w, "(delta: a named type (EDS, RDS, SDS) re-subscribed with the versions held counts as answered once CDS and LDS are; the server sends it nothing when they are current)")
	}
	fmt.Fprintf(w, "every type answered on the new stream: %d proxies, p50/p99/max %s (from the signal / scale-out); reconnected without a response (same versions): %d\n",
		len(r.back), durDist(r.back), r.silent)
	fmt.Fprintf(w, "probe after the scenario: one endpoint added → all %d ACKed p50/p99/max %s\n", len(r.probe), durDist(r.probe))
	fmt.Fprintf(w, "without a stream (end → next stream opened), %d reconnects: p50/p99/max %s\n", len(r.down), durDist(r.down))
	fmt.Fprintf(w, "gaps (a resource held before the reconnect missing after it): %d; version changes on reconnect: %d (same version: %d); proxies between streams at the end: %d\n",
		r.gaps, r.changes, r.same, r.noStream)
	if r.gapWhy != "" {
		fmt.Fprintf(w, "first gap: %s\n", r.gapWhy)
	}
	tally := func(errs []string) string {
		if len(errs) == 0 {
			return "none"
		}
		return strings.Join(errs[:min(len(errs), 6)], "; ")
	}
	fmt.Fprintf(w, "streams ended with an error while connecting: %s\n", tally(r.errsBefore))
	fmt.Fprintf(w, "streams ended with an error in the scenario (its own signal included): %s\n", tally(r.errs))
	for _, x := range r.replicas1 {
		if x.exited {
			fmt.Fprintf(w, "after: %s exited\n", x.name)
			continue
		}
		per := "–"
		if x.proxies > 0 {
			per = fmt.Sprintf("%.1f KB", float64(x.rss)/float64(x.proxies)/1000)
		}
		fmt.Fprintf(w, "after: %s RSS %s (peak %s, %s per proxy incl. base), heap %.0f MiB, %.0f goroutines, CPU %.2f s in the scenario, %d proxies (server)\n",
			x.name, mib(x.rss), mib(x.peak), per, x.heap/(1<<20), x.gor, x.cpuDelta.Seconds(), x.proxies)
	}
	fmt.Fprintf(w, "spread after: %v\n", r.spreadAfter)
	var peaks, cpus []string
	var cpu time.Duration
	for _, x := range r.replicas1 {
		if !x.exited {
			peaks = append(peaks, mib(x.peak))
			cpus = append(cpus, fmt.Sprintf("%.2f", x.cpuDelta.Seconds()))
			cpu += x.cpuDelta
		}
	}
	fmt.Fprintf(w, "| %s | %d | %d | %d | %s | %s | %d / %d | %s | %d / %d | %s | %s s | %s | %s → %s |\n",
		head, r.n, r.replicas, r.affected, durDist(r.reconnected), durDist(r.down), len(r.back), r.silent, durDist(r.probe), r.gaps, r.changes, roundDur(r.storm),
		strings.Join(cpus, " + "), strings.Join(peaks, ", "), r.loadStart, r.loadEnd)
}
