package app_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/token"
	cav1 "github.com/weftmesh/weft/proto/gen/go/weft/ca/v1"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// BenchmarkSign measures SignWorkloadCertificate over real gRPC with TLS
// and a service token, client and server in one process on this machine.
// Run: go test -run '^$' -bench Sign -benchtime 20000x ./app/
func BenchmarkSign(b *testing.B) {
	for _, kt := range []struct {
		name    string
		keyType string
	}{{"P256", "ecdsa-p256"}, {"RSA2048", "rsa"}} {
		b.Run(kt.name, func(b *testing.B) {
			e := newEnv(b)
			be := builtin("ca")
			be.Builtin = &meshv1.CertificateAuthorityBackend_BuiltinConfig{CaCert: &meshv1.CertificateAuthorityBackend_BuiltinConfig_CaCert{KeyType: kt.keyType}}
			e.put(meshRes("default", "ca", be))
			const dps = 100
			for i := 0; i < dps; i++ {
				e.put(dataplane("default", fmt.Sprintf("dp-%d", i), fmt.Sprintf("svc-%d", i%10)))
			}
			a := e.start(e.config())
			c := e.client(a, e.token(token.KindService, "xds-server"))
			_, pub := newKey(b)
			ctx := context.Background()
			// Warm up (root creation, caches, TLS).
			if _, err := c.SignWorkloadCertificate(ctx, &cav1.SignWorkloadCertificateRequest{Mesh: "default", Dataplane: "dp-0", PublicKey: pub}); err != nil {
				b.Fatal(err)
			}
			var mu sync.Mutex
			lat := make([]time.Duration, 0, b.N)
			b.SetParallelism(16)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				local := make([]time.Duration, 0, 1024)
				i := 0
				for pb.Next() {
					t0 := time.Now()
					_, err := c.SignWorkloadCertificate(ctx, &cav1.SignWorkloadCertificateRequest{Mesh: "default", Dataplane: fmt.Sprintf("dp-%d", i%dps), PublicKey: pub})
					if err != nil {
						b.Error(err)
						return
					}
					local = append(local, time.Since(t0))
					i++
				}
				mu.Lock()
				lat = append(lat, local...)
				mu.Unlock()
			})
			elapsed := time.Since(start)
			b.StopTimer()
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "certs/s")
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			}
		})
	}
}
