// Package zonesync benchmarks zone-sync: global plus five zones, each with
// its own embedded etcd, in one process.
//
//	go test github.com/weftmesh/weft/bench/zonesync -run XXX -bench . -benchtime 1x -timeout 30m
//
// ZONESYNC_BENCH_ZONES and ZONESYNC_BENCH_DATAPLANES change the size
// (default 5 zones × 2,000 Dataplanes).
package zonesync

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"

	"github.com/weftmesh/weft/zone-sync/apptest"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func permission(src string) *resource.Resource {
	r := resource.New(resource.TrafficPermissionType, "default", "allow")
	r.Spec = &meshv1.TrafficPermission{
		Sources:      []*meshv1.Selector{{Match: map[string]string{resource.ServiceTag: src}}},
		Destinations: []*meshv1.Selector{{Match: map[string]string{resource.ServiceTag: "*"}}},
	}
	return r
}

// createDataplanes creates n Dataplanes named prefix-i in st, 32 at a time.
func createDataplanes(b *testing.B, st *store.Store, prefix string, n int) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			dp := apptest.Dataplane(fmt.Sprintf("%s-%d", prefix, i), fmt.Sprintf("svc-%d", i%50), 8080)
			if _, err := st.Create(context.Background(), dp, store.WithoutMeshCheck()); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
}

func count(ctx context.Context, st *store.Store, t *resource.Type) int64 {
	page, err := st.List(ctx, t, "", store.ListOptions{Limit: 1})
	if err != nil {
		return -1
	}
	return page.Total
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func BenchmarkZoneSync(b *testing.B) {
	ctx := context.Background()
	zones := envInt("ZONESYNC_BENCH_ZONES", 5)
	perZone := envInt("ZONESYNC_BENCH_DATAPLANES", 2000)
	start := time.Now()
	c := apptest.Start(b, apptest.Options{Zones: zones})
	b.Logf("started global + %d zones in %s", zones, time.Since(start).Round(time.Millisecond))
	if _, err := c.Global.Store.Create(ctx, permission("web")); err != nil {
		b.Fatal(err)
	}

	// Every zone registers its Dataplanes; they all reach global.
	start = time.Now()
	var wg sync.WaitGroup
	for _, z := range c.Zones {
		wg.Add(1)
		go func() { defer wg.Done(); createDataplanes(b, z.Store, "dp", perZone) }()
	}
	wg.Wait()
	created := time.Since(start)
	want := int64(zones * perZone)
	apptest.Eventually(b, 10*time.Minute, func() error {
		if n := count(ctx, c.Global.Store, resource.DataplaneType); n != want {
			return fmt.Errorf("global has %d of %d dataplanes", n, want)
		}
		return nil
	})
	b.Logf("initial: %d Dataplanes created in the zones in %s, all on global after %s",
		want, created.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	b.Logf("heap in use after setup (all 6 control planes, etcds included): %d MiB", ms.HeapInuse>>20)
	for _, z := range c.Zones {
		apptest.Eventually(b, time.Minute, func() error {
			if _, err := z.Store.Get(ctx, resource.TrafficPermissionType, "default", "allow"); err != nil {
				return err
			}
			return nil
		})
	}

	b.Run("policy-change-to-all-zones", func(b *testing.B) {
		const changes = 300
		var lat []time.Duration
		for i := 0; i < b.N; i++ {
			// One watch per zone, from now on.
			wctx, cancel := context.WithCancel(ctx)
			chans := make([]<-chan store.Event, len(c.Zones))
			for j, z := range c.Zones {
				rev, _ := z.Store.Revision(ctx)
				ch, err := z.Store.Watch(wctx, resource.TrafficPermissionType, "default", rev)
				if err != nil {
					b.Fatal(err)
				}
				chans[j] = ch
			}
			for k := 0; k < changes; k++ {
				src := fmt.Sprintf("web-%d-%d", i, k)
				t0 := time.Now()
				if _, err := c.Global.Store.Update(ctx, permission(src)); err != nil {
					b.Fatal(err)
				}
				for _, ch := range chans {
					for ev := range ch {
						if ev.Kind == store.EventPut && ev.Resource.Spec.(*meshv1.TrafficPermission).GetSources()[0].GetMatch()[resource.ServiceTag] == src {
							break
						}
					}
				}
				lat = append(lat, time.Since(t0))
			}
			cancel()
		}
		b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(percentile(lat, 1).Microseconds())/1000, "max-ms")
		b.Logf("policy change → applied in all %d zones: n=%d p50=%s p99=%s max=%s", len(c.Zones), len(lat),
			percentile(lat, 0.5), percentile(lat, 0.99), percentile(lat, 1))
	})

	b.Run("500-new-dataplanes-to-global", func(b *testing.B) {
		z := c.Zones[0]
		for i := 0; i < b.N; i++ {
			before := count(ctx, c.Global.Store, resource.DataplaneType)
			t0 := time.Now()
			createDataplanes(b, z.Store, fmt.Sprintf("batch%d", i), 500)
			createdIn := time.Since(t0)
			apptest.Eventually(b, 5*time.Minute, func() error {
				if n := count(ctx, c.Global.Store, resource.DataplaneType); n != before+500 {
					return fmt.Errorf("global has %d, want %d", n, before+500)
				}
				return nil
			})
			b.Logf("500 Dataplanes: created in zone-1 in %s, all on global after %s", createdIn.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
		}
	})

	b.Run("bytes-one-change-vs-full-set", func(b *testing.B) {
		z := c.Zones[1]
		sent := func() float64 {
			return testutil.ToFloat64(z.App.Metrics().SentBytes.WithLabelValues(z.Name, "Dataplane", "up"))
		}
		resources := func() float64 {
			return testutil.ToFloat64(z.App.Metrics().SentResources.WithLabelValues(z.Name, "Dataplane", "up"))
		}
		full, fullN := sent(), resources()
		for i := 0; i < b.N; i++ {
			before, beforeN := sent(), resources()
			cur, err := z.Store.Get(ctx, resource.DataplaneType, "default", "dp-7")
			if err != nil {
				b.Fatal(err)
			}
			cur.Spec.(*meshv1.Dataplane).Networking.Address = fmt.Sprintf("10.9.%d.%d", i/250, i%250+1)
			if _, err := z.Store.Update(ctx, cur); err != nil {
				b.Fatal(err)
			}
			name := apptest.ZoneName(1) + ".dp-7"
			apptest.Eventually(b, time.Minute, func() error {
				r, err := c.Global.Store.Get(ctx, resource.DataplaneType, "default", name)
				if err != nil {
					return err
				}
				if r.Spec.(*meshv1.Dataplane).GetNetworking().GetAddress() != cur.Spec.(*meshv1.Dataplane).GetNetworking().GetAddress() {
					return fmt.Errorf("not yet")
				}
				return nil
			})
			one, oneN := sent()-before, resources()-beforeN
			b.ReportMetric(one, "bytes-one-change")
			b.ReportMetric(full, "bytes-full-set")
			b.Logf("one changed Dataplane: %.0f bytes in %.0f resource(s); the whole set at first sync: %.0f bytes in %.0f resources (%.0f bytes each)",
				one, oneN, full, fullN, full/fullN)
		}
	})

	b.Run("global-restart-resume", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			upBefore := make([]float64, len(c.Zones))
			for j, z := range c.Zones {
				upBefore[j] = testutil.ToFloat64(z.App.Metrics().SentBytes.WithLabelValues(z.Name, "Dataplane", "up"))
			}
			c.Global.Stop(b)
			src := fmt.Sprintf("restart-%d", i)
			if _, err := c.Global.Store.Update(ctx, permission(src)); err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			c.StartGlobal(b)
			b.Logf("global zone-sync restarted (bound, serving) in %s", time.Since(t0).Round(time.Millisecond))
			for _, z := range c.Zones {
				waitConnected(b, z)
			}
			b.Logf("all zones reconnected %s after restart", time.Since(t0).Round(time.Millisecond))
			for _, z := range c.Zones {
				apptest.Eventually(b, time.Minute, func() error {
					r, err := z.Store.Get(ctx, resource.TrafficPermissionType, "default", "allow")
					if err != nil {
						return err
					}
					if r.Spec.(*meshv1.TrafficPermission).GetSources()[0].GetMatch()[resource.ServiceTag] != src {
						return fmt.Errorf("%s not updated yet", z.Name)
					}
					return nil
				})
			}
			took := time.Since(t0)
			var down, downN, up float64
			for j, z := range c.Zones {
				for _, t := range []string{"Mesh", "TrafficPermission", "ZoneIngress", "Secret", "GlobalSecret"} {
					down += testutil.ToFloat64(c.Global.App.Metrics().SentBytes.WithLabelValues(z.Name, t, "down"))
					downN += testutil.ToFloat64(c.Global.App.Metrics().SentResources.WithLabelValues(z.Name, t, "down"))
				}
				up += testutil.ToFloat64(z.App.Metrics().SentBytes.WithLabelValues(z.Name, "Dataplane", "up")) - upBefore[j]
			}
			b.ReportMetric(down, "bytes-down-after-restart")
			b.ReportMetric(up, "bytes-up-after-restart")
			b.Logf("global restarted with 1 policy changed: every zone updated %s after restart; sent down %.0f bytes in %.0f resources (all zones), sent up %.0f Dataplane bytes (%d held on global)",
				took.Round(time.Millisecond), down, downN, up, count(ctx, c.Global.Store, resource.DataplaneType))
		}
	})
}

func waitConnected(b *testing.B, z *apptest.ControlPlane) {
	apptest.Eventually(b, time.Minute, func() error {
		if !z.App.Connected() {
			return fmt.Errorf("%s not connected", z.Name)
		}
		return nil
	})
}
