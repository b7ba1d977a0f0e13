package dnsserver

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// BenchmarkFollowSync measures how long the table takes to load a zone's
// VirtualIPs and Dataplanes from etcd, and the heap it keeps per name
// (the table plus whatever the store watches cache).
func BenchmarkFollowSync(b *testing.B) {
	const n = 5000
	st := store.New(etcdtest.Client(b, nil))
	ctx := context.Background()
	if _, err := st.Create(ctx, resource.New(resource.MeshType, "", "bench")); err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				v := resource.New(resource.VirtualIPType, "bench", fmt.Sprintf("svc-%d", i))
				v.Spec = &meshv1.VirtualIP{Service: fmt.Sprintf("svc-%d", i), Ip: fmt.Sprintf("240.0.%d.%d", i/250, i%250+1)}
				dp := resource.New(resource.DataplaneType, "bench", fmt.Sprintf("dp-%d", i))
				dp.Spec = &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: fmt.Sprintf("10.1.%d.%d", i/250, i%250+1),
					Inbound: []*meshv1.Dataplane_Networking_Inbound{{Port: 80, Tags: map[string]string{resource.ServiceTag: fmt.Sprintf("svc-%d", i)}}}}}
				for _, r := range []*resource.Resource{v, dp} {
					if _, err := st.Create(ctx, r); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	var heap float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		t := NewTable(30)
		fctx, cancel := context.WithCancel(ctx)
		ready := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			benchFollow(fctx, st, t, func() { close(ready) })
		}()
		select {
		case <-ready:
		case <-time.After(time.Minute):
			b.Fatal("table never synced")
		}
		b.StopTimer()
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap = float64(after.HeapAlloc) - float64(before.HeapAlloc)
		runtime.KeepAlive(t)
		cancel()
		<-done
		b.StartTimer()
	}
	b.ReportMetric(heap/n, "heapB/name")
}
