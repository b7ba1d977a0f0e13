package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/weftmesh/weft/pkg/xdsnames"
)

// procStat is an xds-server's CPU time and RSS from /proc/<pid>.
type procStat struct {
	cpu time.Duration
	rss int64 // bytes
}

// clkTck is USER_HZ, 100 on every Linux this runs on.
const clkTck = 100

func readProc(pid int) (procStat, error) {
	if pid == 0 {
		return procStat{}, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// Fields after the ")" of the command: state is field 3; utime and
	// stime are fields 14 and 15 (1-based).
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	ps := procStat{cpu: time.Duration(ut+st) * time.Second / clkTck}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, err
	}
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			kb, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			ps.rss = kb << 10
		}
	}
	return ps, nil
}

// goMetrics reads go_goroutines and go_memstats_heap_inuse_bytes from an
// admin /metrics.
func goMetrics(ctx context.Context, admin string) (goroutines, heap float64, err error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+admin+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "go_goroutines":
			goroutines = v
		case "go_memstats_heap_inuse_bytes":
			heap = v
		}
	}
	return goroutines, heap, sc.Err()
}

// result is one run's numbers.
type result struct {
	label, kind         string
	n, services         int
	loadStart, loadEnd  string
	register            time.Duration
	connect, configured []time.Duration
	configureAll        time.Duration
	before, after       procStat
	connectCPU, idleCPU time.Duration
	// connectGens: proxy generations (weft_xds_generation_seconds_count)
	// during the connect storm; N when every proxy is generated once.
	connectGens              float64
	idleWindow               time.Duration
	idleHalves               [2]time.Duration
	goroutines0, goroutines  float64
	heap0, heap              float64
	endpoint, policy         []time.Duration
	endpointCPU, policyCPU   time.Duration
	afterScenarios           procStat
	xdsArgs                  []string
	streamsOpened, acksTotal int64
	reconnects               int64
	// -mtls, -meshes, -churn (scenarios.go, churn.go).
	mtls                         bool
	meshes                       int
	affectedA, affectedB         int
	othersPushedA, othersPushedB [2]int64 // proxies, responses
	churn                        *churnResult
	// -delta, -nack (delta.go, nack.go).
	delta        bool
	deltaProxies int // proxies holding state built from delta responses
	nack         float64
	nackA, nackB *nackOutcome
	// weft_xds_acks_total's increase over (a) and (b).
	serverAcksA, serverAcksB float64
	gcA, gcB                 float64 // xds-server GC cycles during (a), (b)
}

func run(ctx context.Context, o options) (*result, error) {
	res := &result{label: o.label, kind: o.kind, n: o.n, services: o.services, loadStart: loadavg(), xdsArgs: o.xdsArgs,
		mtls: o.mtls, meshes: max(o.meshes, 1), delta: o.delta, nack: o.nack}
	if err := exportChangeProfile(o); err != nil {
		return nil, err
	}
	if err := checkConnectProfile(o); err != nil {
		return nil, err
	}
	cp, err := startControlPlane(ctx, o)
	if err != nil {
		return nil, err
	}
	defer cp.stop()
	logf := func(format string, args ...any) { fmt.Fprintf(o.log, "xds-fleet: "+format+"\n", args...) }
	r := &rest{base: cp.apiURL, token: cp.token, hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.conc * 2}}}
	t := time.Now()
	specs, err := setupFleet(ctx, r, o)
	if err != nil {
		return nil, err
	}
	res.register = time.Since(t)
	logf("registered %d dataplanes with tokens in %s", o.n, res.register.Round(time.Millisecond))
	tc, err := cpTLS(ctx, cp.xdsAdmin)
	if err != nil {
		return nil, err
	}
	// Let the xds-server digest the registrations before the baseline.
	time.Sleep(2 * time.Second)
	if res.before, err = readProc(cp.xdsPID); err != nil {
		return nil, err
	}
	res.goroutines0, res.heap0, _ = goMetrics(ctx, cp.xdsAdmin)
	gens0, _ := counterSum(ctx, cp.xdsAdmin, "weft_xds_generation_seconds_count")
	if err := connectProfile(cp.xdsPID, true); err != nil {
		return nil, fmt.Errorf("connect profile: %w", err)
	}
	f, all, err := connect(ctx, specs, dialOpts{addr: cp.xds, tls: tc}, o.conc, o.timeout, o.log)
	if f != nil {
		defer f.stop()
	}
	if err != nil {
		if cp.xdsLogTail != nil {
			logf("xds-server log tail:\n%s", cp.xdsLogTail())
		}
		return nil, err
	}
	res.configureAll = all
	for _, p := range f.proxies {
		res.connect = append(res.connect, p.firstResp.Sub(p.start))
		res.configured = append(res.configured, p.full.Sub(p.start))
	}
	after, _ := readProc(cp.xdsPID)
	_ = connectProfile(cp.xdsPID, false)
	res.connectCPU = after.cpu - res.before.cpu
	if gens, err := counterSum(ctx, cp.xdsAdmin, "weft_xds_generation_seconds_count"); err == nil {
		res.connectGens = gens - gens0
	}
	logf("%d proxies configured in %s", o.n, all.Round(time.Millisecond))
	// Settle (insight flushes after the connect storm), then measure idle.
	time.Sleep(o.settle)
	idleProfile(cp.xdsPID, true)
	i0, _ := readProc(cp.xdsPID)
	var im procStat
	for half := 0; half < 2; half++ {
		select {
		case <-time.After(o.idle / 2):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if half == 0 {
			im, _ = readProc(cp.xdsPID)
		}
	}
	i1, _ := readProc(cp.xdsPID)
	idleProfile(cp.xdsPID, false)
	res.idleHalves = [2]time.Duration{im.cpu - i0.cpu, i1.cpu - im.cpu}
	res.idleCPU, res.idleWindow = i1.cpu-i0.cpu, o.idle
	res.after = i1
	res.goroutines, res.heap, _ = goMetrics(ctx, cp.xdsAdmin)
	if cp.heapProfile != nil && o.heapProfile != "" {
		// Wait for the profile (and the memory classes, written last) so
		// the forced GC and the dump see the idle fleet, not (a).
		done := abs(o.heapProfile) + ".memclasses.txt"
		_ = os.Remove(done)
		cp.heapProfile()
		deadline := time.Now().Add(time.Minute)
		for {
			if st, err := os.Stat(done); err == nil && st.Size() > 0 {
				break
			}
			if time.Now().After(deadline) {
				logf("heap profile: %s not written within a minute", done)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	logf("idle: %.3f cores; RSS %d MiB", res.idleCPU.Seconds()/o.idle.Seconds(), i1.rss>>20)

	// With -meshes, (a) and (b) change mesh-0: its proxies must converge,
	// the others get nothing.
	all1 := f
	o.mesh = meshName(o, 0)
	pc := splitByMesh(all1, o.mesh)
	f = pc.target
	res.affectedA, res.affectedB = len(f.proxies), len(f.proxies)

	// (a) one endpoint added to svc-0, which every proxy calls.
	const newAddr = "10.250.0.1"
	pc.arm()
	prof := newChangeProfiler(cp.xdsPID)
	if err := prof.start('a'); err != nil {
		return nil, err
	}
	c0, _ := readProc(cp.xdsPID)
	var so scenarioOut
	res.endpoint, res.nackA, so, err = f.scenario(ctx, o, cp.xdsAdmin, cp.xdsPID, hasEndpoint(newAddr), func() error {
		dp := dataplane(0, o.services)
		dp["networking"].(map[string]any)["address"] = newAddr
		_, err := r.do(ctx, "PUT", "/meshes/"+o.mesh+"/dataplanes/new-endpoint", dp)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("scenario (a): %w", err)
	}
	c1 := so.cpu
	res.endpointCPU, res.serverAcksA, res.gcA = c1.cpu-c0.cpu, so.serverAcks, so.gcCycles
	if err := prof.stop('a'); err != nil {
		return nil, err
	}
	logf("(a) endpoint added: p50 %s p99 %s max %s", pct(res.endpoint, 50), pct(res.endpoint, 99), pct(res.endpoint, 100))
	if res.nackA != nil {
		logf("(a) -nack: %s", res.nackA)
	}
	if len(pc.others) > 0 {
		res.othersPushedA[0], res.othersPushedA[1] = pc.pushed(ctx, 2*time.Second)
		logf("(a) unaffected meshes: %d of %d proxies got a response (%d responses)", res.othersPushedA[0], len(pc.others), res.othersPushedA[1])
	} else {
		time.Sleep(2 * time.Second)
	}

	// (b) a mesh-wide policy: a Timeout for every source and destination.
	pc.arm()
	if err := prof.start('b'); err != nil {
		return nil, err
	}
	c0, _ = readProc(cp.xdsPID)
	// Envoy: the clusters' connect_timeout; proxyless: the route's
	// max_stream_duration (grpc-go has no connect timeout).
	policyWatch := hasConnectTimeout(7 * time.Second)
	if o.kind == xdsnames.KindGRPC {
		policyWatch = hasMaxStreamDuration(7 * time.Second)
	}
	res.policy, res.nackB, so, err = f.scenario(ctx, o, cp.xdsAdmin, cp.xdsPID, policyWatch, func() error {
		_, err := r.do(ctx, "PUT", "/meshes/"+o.mesh+"/timeouts/mesh-wide", map[string]any{"type": "Timeout",
			"sources":      []any{map[string]any{"match": map[string]string{"weft.io/service": "*"}}},
			"destinations": []any{map[string]any{"match": map[string]string{"weft.io/service": "*"}}},
			"conf":         map[string]any{"connectTimeout": "7s", "http": map[string]any{"requestTimeout": "7s"}}})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("scenario (b): %w", err)
	}
	c1 = so.cpu
	res.policyCPU, res.serverAcksB, res.gcB = c1.cpu-c0.cpu, so.serverAcks, so.gcCycles
	if err := prof.stop('b'); err != nil {
		return nil, err
	}
	logf("(b) mesh-wide policy: p50 %s p99 %s max %s", pct(res.policy, 50), pct(res.policy, 99), pct(res.policy, 100))
	if res.nackB != nil {
		logf("(b) -nack: %s", res.nackB)
	}
	res.afterScenarios = c1
	if len(pc.others) > 0 {
		res.othersPushedB[0], res.othersPushedB[1] = pc.pushed(ctx, 2*time.Second)
		logf("(b) unaffected meshes: %d of %d proxies got a response (%d responses)", res.othersPushedB[0], len(pc.others), res.othersPushedB[1])
	}
	f = all1
	if o.churn > 0 {
		if res.churn, err = runChurn(ctx, o, cp, r, f, tc, logf); err != nil {
			return nil, fmt.Errorf("churn: %w", err)
		}
	}
	for _, p := range f.proxies {
		p.mu.Lock()
		if len(p.held) > 0 {
			res.deltaProxies++
		}
		p.mu.Unlock()
		res.streamsOpened += p.streams.Load()
		res.acksTotal += p.acks.Load()
	}
	res.reconnects = res.streamsOpened - int64(len(f.proxies))
	res.loadEnd = loadavg()
	return res, nil
}

// scenario runs one change on the fleet and waits for convergence: with
// -nack, the NACKing proxies apart (nackOutcome, with the xds-server's NACK
// counter over the scenario); times are the other proxies'.
// scenarioOut is what scenario measures besides the convergence times.
type scenarioOut struct {
	// cpu is the xds-server's /proc when the (ACKing) proxies had all
	// converged: the scenario's CPU ends there, not after the wait for
	// the NACKing ones.
	cpu procStat
	// serverAcks is the increase of the xds-server's weft_xds_acks_total
	// (ACKs it matched to a version it pushed), read once it stopped
	// growing (an ACK the proxy sent may still be in flight when it
	// converged).
	serverAcks float64
	// gcCycles is the xds-server's GC cycles (go_gc_duration_seconds_count)
	// from the change until convergence: at 10k proxies one cycle marks
	// ~600 MB of live heap, which moves a change's CPU by a second or more.
	gcCycles float64
}

// scenario runs one change on the fleet and waits for convergence: with
// -nack, the NACKing proxies apart (nackOutcome, with the xds-server's NACK
// counter over the scenario); times are the other proxies'.
func (f *fleet) scenario(ctx context.Context, o options, admin string, pid int, w *watch, change func() error) ([]time.Duration, *nackOutcome, scenarioOut, error) {
	var out scenarioOut
	a0, _ := counterSum(ctx, admin, "weft_xds_acks_total")
	g0, _ := counterSum(ctx, admin, gcCyclesMetric)
	m0, err := counterSum(ctx, admin, "weft_xds_nacks_total")
	if err != nil {
		return nil, nil, out, err
	}
	converged := func() {
		out.cpu, _ = readProc(pid)
		g1, _ := counterSum(ctx, admin, gcCyclesMetric)
		out.gcCycles = g1 - g0
	}
	var times []time.Duration
	var n *nackOutcome
	if o.nack <= 0 {
		times, err = f.converge(ctx, w, change, o.timeout)
		converged()
	} else {
		var no nackOutcome
		times, no, err = f.convergeNack(ctx, w, change, o.timeout, converged)
		n = &no
	}
	if err != nil {
		return times, n, out, err
	}
	out.serverAcks = settledCounter(ctx, admin, "weft_xds_acks_total") - a0
	if n != nil {
		m1, err := counterSum(ctx, admin, "weft_xds_nacks_total")
		if err != nil {
			return nil, nil, out, err
		}
		n.metric = m1 - m0
	}
	return times, n, out, nil
}

// gcCyclesMetric counts the xds-server's GC cycles (the Go collector's).
const gcCyclesMetric = "go_gc_duration_seconds_count"

// settledCounter reads a counter until it has not grown for 500 ms (at
// most 3 s).
func settledCounter(ctx context.Context, admin, name string) float64 {
	last, _ := counterSum(ctx, admin, name)
	stable := time.Now()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && time.Since(stable) < 500*time.Millisecond; {
		select {
		case <-ctx.Done():
			return last
		case <-time.After(100 * time.Millisecond):
		}
		if v, _ := counterSum(ctx, admin, name); v != last {
			last, stable = v, time.Now()
		}
	}
	return last
}

func (r *result) print(w io.Writer) {
	mib := func(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
	perProxy := func(b float64) string { return fmt.Sprintf("%.1f KB", b/float64(r.n)/1000) }
	mtls := "mTLS off"
	if r.mtls {
		mtls = "mTLS on (builtin CA, SDS)"
	}
	meshes := ""
	if r.meshes > 1 {
		meshes = fmt.Sprintf(" over %d meshes", r.meshes)
	}
	proto := "SotW"
	if r.delta {
		proto = "delta"
	}
	if r.nack > 0 {
		proto += fmt.Sprintf(", -nack %g", r.nack)
	}
	fmt.Fprintf(w, "# xds-fleet %s: N=%d %s proxies (%s)%s, %d services per mesh, %s; %s; load average %s → %s\n",
		r.label, r.n, r.kind, proto, meshes, r.services, mtls, goVersion(), r.loadStart, r.loadEnd)
	if len(xdsEnv) > 0 {
		fmt.Fprintf(w, "# xds-server extra environment: %s\n", strings.Join(xdsEnv, " "))
	}
	if len(r.xdsArgs) > 0 {
		fmt.Fprintf(w, "# xds-server extra flags: %s\n", strings.Join(r.xdsArgs, " "))
	}
	fmt.Fprintf(w, "register (REST PUT + token, c parallel): %s\n", r.register.Round(time.Millisecond))
	fmt.Fprintf(w, "connect (dial → first response): p50 %s p99 %s max %s\n", pct(r.connect, 50), pct(r.connect, 99), pct(r.connect, 100))
	fmt.Fprintf(w, "configured (dial → all types ACKed): p50 %s p99 %s max %s; all %d in %s\n",
		pct(r.configured, 50), pct(r.configured, 99), pct(r.configured, 100), r.n, r.configureAll.Round(time.Millisecond))
	fmt.Fprintf(w, "xds-server RSS %s → %s (%s per proxy); heap in use %.0f → %.0f MiB (%s per proxy); goroutines %.0f → %.0f (%.1f per proxy)\n",
		mib(r.before.rss), mib(r.after.rss), perProxy(float64(r.after.rss-r.before.rss)),
		r.heap0/(1<<20), r.heap/(1<<20), perProxy(r.heap-r.heap0), r.goroutines0, r.goroutines, (r.goroutines-r.goroutines0)/float64(r.n))
	fmt.Fprintf(w, "xds-server CPU: connect %.2f s (%.2f ms per proxy; %.0f generations); idle %.3f cores over %s (first half %.3f, second half %.3f)\n", r.connectCPU.Seconds(),
		r.connectCPU.Seconds()*1000/float64(max(r.n, 1)), r.connectGens, r.idleCPU.Seconds()/r.idleWindow.Seconds(), r.idleWindow, 2*r.idleHalves[0].Seconds()/r.idleWindow.Seconds(), 2*r.idleHalves[1].Seconds()/r.idleWindow.Seconds())
	fmt.Fprintf(w, "(a) one endpoint added → all %d ACKed: p50 %s p99 %s max %s (xds-server CPU %.2f s, %.0f GC cycles)\n",
		len(r.endpoint), pct(r.endpoint, 50), pct(r.endpoint, 99), pct(r.endpoint, 100), r.endpointCPU.Seconds(), r.gcA)
	fmt.Fprintf(w, "(b) mesh-wide Timeout → all %d ACKed: p50 %s p99 %s max %s (xds-server CPU %.2f s, %.0f GC cycles)\n",
		len(r.policy), pct(r.policy, 50), pct(r.policy, 99), pct(r.policy, 100), r.policyCPU.Seconds(), r.gcB)
	fmt.Fprintf(w, "xds-server weft_xds_acks_total (ACKs of pushed versions it matched): (a) +%.0f, (b) +%.0f\n", r.serverAcksA, r.serverAcksB)
	if r.nackA != nil {
		fmt.Fprintf(w, "(a) -nack: %s\n", r.nackA)
	}
	if r.nackB != nil {
		fmt.Fprintf(w, "(b) -nack: %s\n", r.nackB)
	}
	if r.meshes > 1 {
		fmt.Fprintf(w, "-meshes %d: (a) and (b) changed mesh-0 (%d proxies affected); the other %d proxies got responses: (a) %d proxies, %d responses; (b) %d proxies, %d responses (2 s window after convergence)\n",
			r.meshes, r.affectedA, r.n-r.affectedA, r.othersPushedA[0], r.othersPushedA[1], r.othersPushedB[0], r.othersPushedB[1])
	}
	if r.churn != nil {
		r.churn.print(w)
	}
	fmt.Fprintf(w, "streams opened %d (reconnects %d), ACKs sent %d\n", r.streamsOpened, r.reconnects, r.acksTotal)
	if r.delta {
		fmt.Fprintf(w, "delta: %d of %d proxies hold state built from delta responses\n", r.deltaProxies, r.n)
	}
	fmt.Fprintf(w, "| %s | %d | %s | %s / %s | %s | %s | %.2f s | %.3f | %s / %s / %s | %s / %s / %s |\n",
		r.label, r.n, r.configureAll.Round(10*time.Millisecond), pct(r.configured, 50).Round(time.Millisecond), pct(r.configured, 99).Round(time.Millisecond),
		perProxy(float64(r.after.rss-r.before.rss)), perProxy(r.heap-r.heap0), r.connectCPU.Seconds(), r.idleCPU.Seconds()/r.idleWindow.Seconds(),
		pct(r.endpoint, 50).Round(time.Millisecond), pct(r.endpoint, 99).Round(time.Millisecond), pct(r.endpoint, 100).Round(time.Millisecond),
		pct(r.policy, 50).Round(time.Millisecond), pct(r.policy, 99).Round(time.Millisecond), pct(r.policy, 100).Round(time.Millisecond))
}
