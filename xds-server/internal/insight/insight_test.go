package insight

import (
	"context"
	"io"
	"log/slog"
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
	rec := New(st, "replica-1", 5*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)), func(string, string) (CertInfo, bool) {
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
}
