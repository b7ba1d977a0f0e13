package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// churnResult is the -churn scenario's numbers.
type churnResult struct {
	window, elapsed time.Duration
	rate            float64
	events, failed  int
	firstErr        string
	configured      []time.Duration // churned proxy: dial → every type ACKed
	reregistered    []time.Duration // stop of the old proxy → new one configured
	cpu             time.Duration   // xds-server CPU from the first event until the last is configured
	rss0, rss       int64           // xds-server RSS before and at the end
	// xds-server goroutines and heap in use before and at the end: the
	// same number of streams, so goroutines must come back (no leak per
	// reconnect).
	goroutines0, goroutines, heap0, heap float64
	acks                                 int64 // responses ACKed by the whole fleet over the window
	loadStart, loadEnd                   string
	// The end check: every live proxy's last ACKed config against a
	// fresh replica's (secrets excluded: each replica signs its own).
	checked, stale int
	firstDiff      string
	convergedAfter time.Duration
	skipped        string
}

// runChurn churns rate×N Dataplanes per minute for o.churn, as pods
// rescheduled would: the proxy goes away, its Dataplane is deleted and
// registered again at a new address (same service and name, a new
// token), and a new proxy connects. Each Dataplane churns at most once.
// Every member of a service churning, its callers get EDS pushes too.
// Then every proxy's last ACKed configuration must equal what a fresh
// replica serves for it (TestChurnConverges' check, at scale).
func runChurn(ctx context.Context, o options, cp *controlPlane, r *rest, f *fleet, tc *tls.Config, logf func(string, ...any)) (*churnResult, error) {
	n := len(f.proxies)
	res := &churnResult{window: o.churn, rate: o.churnRate, loadStart: loadavg()}
	if o.churnRate <= 0 || n == 0 {
		return nil, fmt.Errorf("-churn-rate %v: want > 0", o.churnRate)
	}
	interval := time.Duration(float64(time.Minute) / (o.churnRate * float64(n)))
	events := min(int(o.churn/interval), n)
	res.events = events
	logf("churn: %d Dataplanes over %s (one every %s)", events, o.churn, interval.Round(time.Millisecond))
	live := append([]*proxy(nil), f.proxies...)
	order := rand.New(rand.NewPCG(18, 18)).Perm(n)
	d := dialOpts{addr: cp.xds, tls: tc}
	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		fleets []*fleet
	)
	defer func() {
		for _, fl := range fleets {
			fl.stop()
		}
	}()
	acks0 := make([]int64, n)
	for i, p := range live {
		acks0[i] = p.acks.Load()
	}
	sem := make(chan struct{}, o.conc)
	c0, _ := readProc(cp.xdsPID)
	res.rss0 = c0.rss
	res.goroutines0, res.heap0, _ = goMetrics(ctx, cp.xdsAdmin)
	t0 := time.Now()
	for k := 0; k < events; k++ {
		select {
		case <-time.After(time.Until(t0.Add(time.Duration(k) * interval))):
		case <-ctx.Done():
			wg.Wait()
			return nil, ctx.Err()
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(k, idx int) {
			defer wg.Done()
			defer func() { <-sem }()
			old := live[idx] // each index churns once: no race on live[idx]
			start := time.Now()
			old.cancel()
			<-old.done
			p, fl, err := churnOne(ctx, o, r, old.spec, k, d)
			mu.Lock()
			defer mu.Unlock()
			if fl != nil {
				fleets = append(fleets, fl)
			}
			if err != nil {
				res.failed++
				if res.firstErr == "" {
					res.firstErr = err.Error()
				}
				return
			}
			live[idx] = p
			res.configured = append(res.configured, p.full.Sub(p.start))
			res.reregistered = append(res.reregistered, p.full.Sub(start))
		}(k, order[k])
	}
	wg.Wait()
	res.elapsed = time.Since(t0)
	c1, _ := readProc(cp.xdsPID)
	res.cpu, res.rss = c1.cpu-c0.cpu, c1.rss
	// The streams of the stopped proxies end asynchronously: wait (a few
	// seconds at most) until the goroutines are back to where they were.
	for deadline := time.Now().Add(10 * time.Second); ; {
		res.goroutines, res.heap, _ = goMetrics(ctx, cp.xdsAdmin)
		if res.goroutines <= res.goroutines0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	churned := map[int]bool{}
	for _, idx := range order[:events] {
		churned[idx] = true
	}
	for i, p := range f.proxies {
		if !churned[i] {
			res.acks += p.acks.Load() - acks0[i]
		}
	}
	res.loadEnd = loadavg()
	logf("churn: %d re-registered (%d failed) in %s: configured p50 %s p99 %s; xds-server CPU %.2f s (%.3f cores)",
		len(res.configured), res.failed, res.elapsed.Round(time.Millisecond), pct(res.configured, 50), pct(res.configured, 99),
		res.cpu.Seconds(), res.cpu.Seconds()/res.elapsed.Seconds())
	if res.failed > 0 {
		return res, fmt.Errorf("%d of %d churned proxies not configured: %s", res.failed, events, res.firstErr)
	}

	// The end check.
	if cp.newReplica == nil {
		res.skipped = "no fresh replica (a running control plane: -api-url)"
		return res, nil
	}
	t := time.Now()
	checked, stale, diff, err := checkCurrent(ctx, cp, live, tc, o.conc, o.timeout, o.mtls)
	res.checked, res.stale, res.firstDiff, res.convergedAfter = checked, stale, diff, time.Since(t)
	if err != nil {
		return res, err
	}
	if stale > 0 {
		return res, fmt.Errorf("%d of %d proxies differ from a fresh replica's configuration; first: %s", stale, checked, diff)
	}
	logf("churn: every proxy's last ACKed config equals a fresh replica's (%d checked)", checked)
	return res, nil
}

// churnOne deletes spec's Dataplane, registers it again at a new address
// (the k-th churn's) and connects a new proxy with a new token, waiting
// until it is configured.
func churnOne(ctx context.Context, o options, r *rest, spec proxySpec, k int, d dialOpts) (*proxy, *fleet, error) {
	var i int
	if _, err := fmt.Sscanf(spec.Name, "dp-%d", &i); err != nil {
		return nil, nil, fmt.Errorf("churn %s: %w", spec.Name, err)
	}
	path := "/meshes/" + spec.Mesh + "/dataplanes/" + spec.Name
	if _, err := r.do(ctx, "DELETE", path, nil); err != nil {
		return nil, nil, err
	}
	dp := dataplane(i, o.services)
	dp["networking"].(map[string]any)["address"] = fmt.Sprintf("10.%d.%d.%d", 128+(k>>16&127), k>>8&255, k&255)
	if _, err := r.do(ctx, "PUT", path, dp); err != nil {
		return nil, nil, err
	}
	b, err := r.do(ctx, "POST", "/tokens/dataplane", map[string]any{"mesh": spec.Mesh, "name": spec.Name, "validFor": "24h"})
	if err != nil {
		return nil, nil, err
	}
	var tok struct{ Token string }
	if err := json.Unmarshal(b, &tok); err != nil || tok.Token == "" {
		return nil, nil, fmt.Errorf("token for %s: %v %s", spec.Name, err, b)
	}
	spec.Token = tok.Token
	if spec.Kind != "" && len(spec.GRPCListeners) > 0 {
		// A grpc-like proxy names its server listener by address.
		addr := dp["networking"].(map[string]any)["address"].(string)
		fresh := proxySpecs(spec.Mesh, spec.Kind, []string{tok.Token}, i, o.services)[0]
		for j, l := range fresh.GRPCListeners {
			fresh.GRPCListeners[j] = strings.Replace(l, fmt.Sprintf("10.%d.%d.%d", 1+i>>16&255, i>>8&255, i&255), addr, 1)
		}
		sort.Strings(fresh.GRPCListeners)
		spec.GRPCListeners = fresh.GRPCListeners
	}
	fl, _, err := connect(ctx, []proxySpec{spec}, d, 1, o.timeout, nil)
	if err != nil {
		return nil, fl, err
	}
	return fl.proxies[0], fl, nil
}

// checkCurrent connects a fresh proxy per live proxy to a fresh replica
// (a new xds-server process on the same etcd, empty cache) and waits until
// every live proxy's last ACKed resources equal its fresh twin's, resource
// by resource; it returns how many were checked, how many were still
// stale at the deadline, and the first difference. With mTLS the secrets
// are left out (each replica signs its own certificates) but must be
// there.
func checkCurrent(ctx context.Context, cp *controlPlane, live []*proxy, tc *tls.Config, conc int, timeout time.Duration, mtls bool) (checked, stale int, diff string, err error) {
	freshAddr, _, err := cp.newReplica(ctx, fmt.Sprintf("fresh-%d", time.Now().UnixNano()))
	if err != nil {
		return 0, 0, "", err
	}
	specs := make([]proxySpec, len(live))
	for i, p := range live {
		specs[i] = p.spec
		// The twins speak SotW: a delta proxy's state, built response by
		// response, is checked against a full state of the world.
		specs[i].Delta = false
	}
	fresh, _, err := connect(ctx, specs, dialOpts{addr: freshAddr, tls: tc}, conc, timeout, nil)
	if fresh != nil {
		defer fresh.stop()
	}
	if err != nil {
		return 0, 0, "", fmt.Errorf("fresh replica: %w", err)
	}
	snap := func(p *proxy) map[string]map[string][]byte {
		s := p.snapshot()
		if mtls {
			delete(s, resourcev3.SecretType)
		}
		return s
	}
	want := make([]map[string]map[string][]byte, len(live))
	for i, p := range fresh.proxies {
		want[i] = snap(p)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		stale, diff = 0, ""
		for i, p := range live {
			d := compareSnapshots(snap(p), want[i])
			if d == "" && mtls && len(p.lastACKed(resourcev3.SecretType)) < len(grpcSecrets) {
				d = "secrets missing"
			}
			if d != "" {
				stale++
				if diff == "" {
					diff = p.spec.Mesh + "/" + p.spec.Name + ": " + d
				}
			}
		}
		if stale == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return len(live), stale, diff, ctx.Err()
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

func (c *churnResult) print(w io.Writer) {
	fmt.Fprintf(w, "churn: %.0f%% of the Dataplanes per minute for %s: %d re-registered at a new address (%d failed) in %s; load average %s → %s\n",
		100*c.rate, c.window, len(c.configured), c.failed, c.elapsed.Round(time.Millisecond), c.loadStart, c.loadEnd)
	fmt.Fprintf(w, "churn: churned proxy configured (dial → all ACKed): p50 %s p99 %s max %s; old proxy stopped → new one configured: p50 %s p99 %s max %s\n",
		pct(c.configured, 50), pct(c.configured, 99), pct(c.configured, 100), pct(c.reregistered, 50), pct(c.reregistered, 99), pct(c.reregistered, 100))
	fmt.Fprintf(w, "churn: xds-server CPU %.2f s over %s (%.3f cores); RSS %.0f → %.0f MiB, heap in use %.0f → %.0f MiB, goroutines %.0f → %.0f; responses ACKed by the long-lived proxies %d\n",
		c.cpu.Seconds(), c.elapsed.Round(time.Millisecond), c.cpu.Seconds()/c.elapsed.Seconds(), float64(c.rss0)/(1<<20), float64(c.rss)/(1<<20),
		c.heap0/(1<<20), c.heap/(1<<20), c.goroutines0, c.goroutines, c.acks)
	switch {
	case c.skipped != "":
		fmt.Fprintf(w, "churn: end check skipped: %s\n", c.skipped)
	case c.stale == 0 && c.checked > 0:
		fmt.Fprintf(w, "churn: end check: all %d proxies' last ACKed configs equal a fresh replica's (%s)\n", c.checked, c.convergedAfter.Round(time.Millisecond))
	default:
		fmt.Fprintf(w, "churn: end check: %d of %d stale; first: %s\n", c.stale, c.checked, c.firstDiff)
	}
}

// compareSnapshots says how got differs from want ("" when equal).
func compareSnapshots(got, want map[string]map[string][]byte) string {
	var out []string
	for typ, w := range want {
		g := got[typ]
		for name, wb := range w {
			gb, ok := g[name]
			switch {
			case !ok:
				out = append(out, fmt.Sprintf("%s %q missing", short(typ), name))
			case !bytes.Equal(gb, wb):
				out = append(out, fmt.Sprintf("%s %q differs", short(typ), name))
			}
		}
		for name := range g {
			if _, ok := w[name]; !ok {
				out = append(out, fmt.Sprintf("%s %q extra", short(typ), name))
			}
		}
	}
	for typ := range got {
		if _, ok := want[typ]; !ok && len(got[typ]) > 0 {
			out = append(out, fmt.Sprintf("%s: not in the fresh configuration", short(typ)))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

func short(typ string) string { return typ[strings.LastIndexByte(typ, '.')+1:] }
