package insight

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLeaseLostAndRegained: when the replica's lease goes (expired during a
// partition, or revoked), its insights vanish with it, and the recorder
// grants a new lease and writes them again.
func TestLeaseLostAndRegained(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	st := store.New(etcdtest.Client(t, nil))
	if _, err := st.Create(ctx, resource.New(resource.MeshType, "", "m")); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	rec := New(st, "replica-1", 5*time.Second, slog.New(slog.NewTextHandler(logs, nil)), func(string, string) (CertInfo, bool) {
		return CertInfo{NotAfter: time.Unix(2000000000, 0), Issued: time.Unix(1900000000, 0), Regenerations: 3, Backend: "ca-1"}, true
	})
	done := make(chan struct{})
	go func() { _ = rec.Run(ctx); close(done) }()
	rec.Opened("s1", "m", "web-1", "envoy")
	rec.Acked("s1", "type.googleapis.com/envoy.config.listener.v3.Listener", "v1")
	rec.Nacked("s1", "type.googleapis.com/envoy.config.cluster.v3.Cluster", "bad cluster")
	get := func() *meshv1.DataplaneInsight {
		r, err := st.Get(ctx, resource.DataplaneInsightType, "m", "web-1")
		if err != nil {
			return nil
		}
		return r.Spec.(*meshv1.DataplaneInsight)
	}
	waitFor(t, "insight", func() bool {
		in := get()
		return in != nil && in.GetSubscriptions()[0].GetTypes()["type.googleapis.com/envoy.config.cluster.v3.Cluster"].GetLastError() == "bad cluster"
	})
	in := get()
	sub := in.GetSubscriptions()[0]
	if sub.GetControlPlaneInstanceId() != "replica-1" || sub.GetProxyKind() != "envoy" || sub.GetConnectTime() == nil ||
		sub.GetTypes()["type.googleapis.com/envoy.config.listener.v3.Listener"].GetLastVersion() != "v1" ||
		in.GetMtls().GetCertificateRegenerations() != 3 || in.GetMtls().GetCertificateExpirationTime().AsTime().Unix() != 2000000000 {
		t.Fatalf("insight %v", in)
	}

	// Lose the lease.
	rec.mu.Lock()
	lease := rec.lease
	rec.mu.Unlock()
	if _, err := st.Client().Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "insight rewritten under a new lease", func() bool {
		rec.mu.Lock()
		l := rec.lease
		rec.mu.Unlock()
		if l == lease || get() == nil {
			return false
		}
		resp, err := st.Client().Get(ctx, st.Key(resource.DataplaneInsightType, "m", "web-1"))
		return err == nil && len(resp.Kvs) == 1 && clientv3.LeaseID(resp.Kvs[0].Lease) == l
	})

	// The last stream closing removes the insight; a clean stop revokes the lease.
	rec.Closed("s1")
	waitFor(t, "insight removed", func() bool { return get() == nil })
	rec.Opened("s2", "m", "web-1", "grpc")
	waitFor(t, "insight back", func() bool { return get() != nil })
	cancel()
	<-done
	if get2, err := st.Get(context.Background(), resource.DataplaneInsightType, "m", "web-1"); !store.IsNotFound(err) {
		t.Fatalf("insight survived a clean stop: %v %v", get2, err)
	}
	// The revoke above lost the lease once; the clean stop must not be
	// reported as another loss.
	if n := strings.Count(logs.String(), "insight lease lost"); n != 1 {
		t.Fatalf("%d 'insight lease lost' logs, want 1 (the revoke; not the clean stop):\n%s", n, logs.String())
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestStreamsGroupedByDataplane: each insight carries exactly its own
// dataplane's streams, and closing one of two streams keeps the other.
func TestStreamsGroupedByDataplane(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := store.New(etcdtest.Client(t, nil))
	if _, err := st.Create(ctx, resource.New(resource.MeshType, "", "m")); err != nil {
		t.Fatal(err)
	}
	rec := New(st, "replica-1", 5*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)), func(string, string) (CertInfo, bool) { return CertInfo{}, false })
	done := make(chan struct{})
	go func() { _ = rec.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	rec.Opened("s1", "m", "web-1", "envoy")
	rec.Opened("s2", "m", "web-1", "envoy")
	rec.Opened("s3", "m", "web-2", "grpc")
	subs := func(name string) []string {
		r, err := st.Get(ctx, resource.DataplaneInsightType, "m", name)
		if err != nil {
			return nil
		}
		var ids []string
		for _, s := range r.Spec.(*meshv1.DataplaneInsight).GetSubscriptions() {
			ids = append(ids, s.GetId())
		}
		return ids
	}
	same := func(a []string, b ...string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }
	waitFor(t, "both insights", func() bool {
		return same(subs("web-1"), "replica-1/s1", "replica-1/s2") && same(subs("web-2"), "replica-1/s3")
	})
	rec.Closed("s1")
	rec.Acked("s2", "t", "v9") // a rewrite of a known value: one conditional put
	waitFor(t, "web-1 keeps its other stream", func() bool { return same(subs("web-1"), "replica-1/s2") })
	if !same(subs("web-2"), "replica-1/s3") {
		t.Fatalf("web-2 insight changed: %v", subs("web-2"))
	}
}

// BenchmarkCollectAllDirty is the recorder's time under its lock after a
// mesh-wide change: every one of N single-stream dataplanes is dirty.
func BenchmarkCollectAllDirty(b *testing.B) {
	for _, n := range []int{1000, 5000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			rec := New(nil, "r", time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
			for i := 0; i < n; i++ {
				id := fmt.Sprint("s", i)
				rec.Opened(id, "m", fmt.Sprint("dp-", i), "envoy")
				rec.Acked(id, "type.googleapis.com/envoy.config.cluster.v3.Cluster", "v1")
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				rec.mu.Lock()
				for k := range rec.byDP {
					rec.dirty[k] = true
				}
				rec.mu.Unlock()
				b.StartTimer()
				if jobs, _ := rec.collect(); len(jobs) != n {
					b.Fatalf("%d jobs, want %d", len(jobs), n)
				}
			}
		})
	}
}
