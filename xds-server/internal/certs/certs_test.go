package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	cav1 "github.com/weftmesh/weft/proto/gen/go/weft/ca/v1"
	"github.com/weftmesh/weft/xds-server/internal/catest"
)

func TestIssueRenewRotate(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := store.New(etcdtest.Client(t, nil))
	rs, _ := resource.UnmarshalAll(strings.NewReader(`
type: Mesh
name: m
---
type: Dataplane
mesh: m
name: web-1
networking:
  address: 10.0.0.1
  inbound:
  - port: 80
    tags:
      weft.io/service: web
`))
	client, ca := startCA(ctx, t, st, rs, 3*time.Second)
	var mu sync.Mutex
	updates := 0
	m := New(ctx, client, 0, slog.New(slog.NewTextHandler(io.Discard, nil)), func(mesh, name string) {
		mu.Lock()
		updates++
		mu.Unlock()
	})
	count := func() int { mu.Lock(); defer mu.Unlock(); return updates }
	wait := func(what string, d time.Duration, f func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !f() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out: %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	m.Acquire("m", "web-1", "tok", trace.SpanContext{})
	m.Acquire("m", "web-1", "tok", trace.SpanContext{}) // counted
	wait("first certificate", 5*time.Second, func() bool { return count() >= 1 })
	id, info := m.Identity("m", "web-1")
	cert, err := tls.X509KeyPair(id.CertChainPEM, id.KeyPEM)
	if err != nil {
		t.Fatalf("certificate does not match its key: %v", err)
	}
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://m/web" {
		t.Fatalf("SANs: %v", leaf.URIs)
	}
	if blk, _ := pem.Decode(id.TrustBundlePEM); blk == nil {
		t.Fatal("no trust bundle")
	}
	// Renewed at 4/5 of the 3s lifetime, not before.
	got := time.Now()
	wait("renewal", 5*time.Second, func() bool { return count() >= 2 })
	if el := time.Since(got); el < 1500*time.Millisecond {
		t.Fatalf("renewed after %s, want about 2.4s", el)
	}
	if _, info2 := m.Identity("m", "web-1"); !info2.NotAfter.After(info.NotAfter) {
		t.Fatal("renewal did not extend the certificate")
	}
	// Rotation of the mesh CA re-signs at once.
	n := count()
	if err := ca.Rotate("m"); err != nil {
		t.Fatal(err)
	}
	wait("re-sign after CA rotation", 5*time.Second, func() bool { return count() > n })
	id2, info2 := m.Identity("m", "web-1")
	if string(id2.TrustBundlePEM) == string(id.TrustBundlePEM) {
		t.Fatal("trust bundle did not change with the CA")
	}
	if info2.Regenerations < 2 {
		t.Fatalf("regenerations = %d", info2.Regenerations)
	}
	m.Release("m", "web-1")
	if m.Get("m", "web-1") == nil {
		t.Fatal("released while still referenced")
	}
	m.Release("m", "web-1")
	if m.Get("m", "web-1") != nil {
		t.Fatal("kept after the last release")
	}
}

// TestNoGoroutinePerCertificate: a kept certificate costs no goroutine
// while it waits for its renewal (before, each had one for its life: the
// sixth goroutine per proxy of an mTLS mesh at scale). Renewal and release
// still work without it.
func TestNoGoroutinePerCertificate(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := store.New(etcdtest.Client(t, nil))
	const n = 40
	var y strings.Builder
	y.WriteString("type: Mesh\nname: m\n")
	for i := range n {
		fmt.Fprintf(&y, "---\ntype: Dataplane\nmesh: m\nname: web-%d\nnetworking:\n  address: 10.0.0.%d\n  inbound:\n  - port: 80\n    tags:\n      weft.io/service: web\n", i, i+1)
	}
	rs, err := resource.UnmarshalAll(strings.NewReader(y.String()))
	if err != nil {
		t.Fatal(err)
	}
	client, _ := startCA(ctx, t, st, rs, 4*time.Second)
	var mu sync.Mutex
	updates := map[string]int{}
	m := New(ctx, client, 0, slog.New(slog.NewTextHandler(io.Discard, nil)), func(mesh, name string) {
		mu.Lock()
		updates[name]++
		mu.Unlock()
	})
	all := func(k int) bool {
		mu.Lock()
		defer mu.Unlock()
		for i := range n {
			if updates[fmt.Sprintf("web-%d", i)] < k {
				return false
			}
		}
		return true
	}
	wait := func(what string, d time.Duration, f func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !f() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out: %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Warm the connection and the bundle watch with one entry, then count.
	m.Acquire("m", "web-0", "tok", trace.SpanContext{})
	wait("first certificate", 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return updates["web-0"] >= 1 })
	base := runtime.NumGoroutine()
	for i := 1; i < n; i++ {
		m.Acquire("m", fmt.Sprintf("web-%d", i), "tok", trace.SpanContext{})
	}
	wait("all certificates", 10*time.Second, func() bool { return all(1) })
	// The signing goroutines end with their requests; what is left must
	// not grow with the number of certificates kept.
	wait(fmt.Sprintf("goroutines back near %d with %d certificates kept", base, n), 5*time.Second, func() bool {
		return runtime.NumGoroutine() < base+n/4
	})
	// Renewal at 4/5 of the 4 s lifetime comes from the timers.
	wait("renewals", 10*time.Second, func() bool { return all(2) })
	for i := range n {
		m.Release("m", fmt.Sprintf("web-%d", i))
	}
	mu.Lock()
	before := updates["web-1"]
	mu.Unlock()
	// After release no renewal runs: for 4 s, past the next renewal due
	// (3.2 s), at most one request already in flight completes.
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		got := updates["web-1"]
		mu.Unlock()
		if got > before+1 {
			t.Fatalf("web-1 renewed %d times after its release", got-before)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if m.Get("m", "web-1") != nil {
		t.Fatal("kept after the last release")
	}
}

// startCA stores rs, starts a ca-service on st issuing certificates valid
// for validity, and returns a client of it (closed with the test) and it.
func startCA(ctx context.Context, t *testing.T, st *store.Store, rs []*resource.Resource, validity time.Duration) (cav1.CertificateAuthorityServiceClient, *catest.CA) {
	t.Helper()
	for _, r := range rs {
		if _, err := st.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	ca := catest.Start(t, st)
	ca.Validity = validity
	conn, err := grpc.NewClient(ca.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return cav1.NewCertificateAuthorityServiceClient(conn), ca
}
