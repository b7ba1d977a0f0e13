package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/weftmesh/weft/pkg/xdsnames"
)

// NACK on request (-nack F): a fraction F of the proxies reject, in each
// of (a) and (b), the first response that carries the change: a NACK with
// error_detail, the version they still hold (SotW) and that response's
// nonce. They ACK every later response. What it checks: the xds-server
// keeps serving, the other proxies converge as without NACKs (so (a)/(b)
// are measured over them), and the NACKs show in weft_xds_nacks_total and
// the DataplaneInsights. How the NACKing proxies end is reported, not
// required: over SotW go-control-plane answers a NACK with the snapshot it
// holds (after the xds-server's per-stream NACK backoff, 50 ms for a first
// NACK), which the proxy then ACKs; over delta the server has recorded the
// rejected resources as sent and sends them again only when they change.

// nackWait is how long after a change the NACKing proxies are waited for
// (a variable for the tests).
var nackWait = 10 * time.Second

// nackPick: proxy i of the fleet is one of the fraction f that NACK (f of
// every run of consecutive proxies, spread evenly).
func nackPick(i int, f float64) bool {
	return f > 0 && math.Floor(float64(i+1)*f) > math.Floor(float64(i)*f)
}

// validate refuses flag combinations the fleet does not simulate.
func (o options) validate() error {
	if o.delta && o.kind == xdsnames.KindGRPC {
		return errors.New("-delta -kind grpc: gRPC's xDS clients (grpc-go, grpc-java, grpc-c++) speak SotW only, so there is no grpc-like delta proxy to simulate; use -delta with -kind envoy")
	}
	if o.nack < 0 || o.nack > 1 || math.IsNaN(o.nack) {
		return fmt.Errorf("-nack %v: want a fraction in 0..1", o.nack)
	}
	if o.scenario != "" && o.nack > 0 {
		return errors.New("-nack is not implemented for -scenario restart|kill|scaleout")
	}
	return nil
}

// nackOutcome is how the NACKing proxies did in one scenario.
type nackOutcome struct {
	proxies   int   // NACKing proxies in the changed mesh
	sent      int64 // NACKs they sent during the scenario
	converged []time.Duration
	// missing: NACKing proxies that had not ACKed the change nackWait
	// after it (first names one).
	missing      int
	firstMissing string
	// metric is weft_xds_nacks_total's increase over the scenario.
	metric float64
}

// convergeNack is converge for a fleet with NACKing proxies: times are the
// other proxies'; the NACKing ones are waited for until nackWait after
// the change (or until the others have converged, if later). converged
// runs as soon as the others have.
func (f *fleet) convergeNack(ctx context.Context, w *watch, change func() error, timeout time.Duration, converged func()) ([]time.Duration, nackOutcome, error) {
	var out nackOutcome
	var acking, nacking []*proxy
	for _, p := range f.proxies {
		if p.spec.Nack {
			nacking = append(nacking, p)
		} else {
			acking = append(acking, p)
		}
	}
	out.proxies = len(nacking)
	sent0 := make([]int64, len(nacking))
	for i, p := range nacking {
		sent0[i] = p.nacks.Load()
		p.setWatch(w)
	}
	var t0 time.Time
	times, err := (&fleet{proxies: acking}).converge(ctx, w, func() error {
		t0 = time.Now()
		return change()
	}, timeout)
	if err != nil {
		return times, out, err
	}
	converged()
	deadline := time.NewTimer(max(time.Until(t0.Add(nackWait)), 0))
	defer deadline.Stop()
	expired := false
	for _, p := range nacking {
		if !expired {
			select {
			case t := <-p.wDone:
				out.converged = append(out.converged, t.Sub(t0))
				continue
			case <-deadline.C:
				expired = true
			case <-ctx.Done():
				return times, out, ctx.Err()
			}
		} else {
			select {
			case t := <-p.wDone:
				out.converged = append(out.converged, t.Sub(t0))
				continue
			default:
			}
		}
		p.w.Store(nil)
		if out.missing == 0 {
			out.firstMissing = p.spec.Name
		}
		out.missing++
	}
	for i, p := range nacking {
		out.sent += p.nacks.Load() - sent0[i]
	}
	return times, out, nil
}

func (n nackOutcome) String() string {
	s := fmt.Sprintf("%d NACKing proxies sent %d NACKs; xds-server weft_xds_nacks_total +%.0f; %d of them ACKed the change within %s of it",
		n.proxies, n.sent, n.metric, len(n.converged), nackWait)
	if len(n.converged) > 0 {
		s += fmt.Sprintf(" (p50 %s max %s)", pct(n.converged, 50).Round(time.Millisecond), pct(n.converged, 100).Round(time.Millisecond))
	}
	if n.missing > 0 {
		s += fmt.Sprintf(", %d did not (first: %s)", n.missing, n.firstMissing)
	}
	return s
}

// counterSum is the sum of every series of the counter name on an admin
// /metrics.
func counterSum(ctx context.Context, admin, name string) (float64, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+admin+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var sum float64
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name) || (len(l) > len(name) && l[len(name)] != '{' && l[len(name)] != ' ') {
			continue
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum, sc.Err()
}
