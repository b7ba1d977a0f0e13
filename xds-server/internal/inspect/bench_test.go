package inspect

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/token"
	inspectv1 "github.com/weftmesh/weft/proto/gen/go/weft/inspect/v1"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	"github.com/weftmesh/weft/xds-server/internal/generator"
	"github.com/weftmesh/weft/xds-server/internal/meshview"
)

type noStreams struct{}

func (noStreams) Connected(string) (string, bool)                              { return "", false }
func (noStreams) Snapshot(string) *generator.Snapshot                          { return nil }
func (noStreams) Subscriptions(string, string) []*meshv1.DiscoverySubscription { return nil }

// benchView is a mesh of n Envoy dataplanes over n/10 services, each
// calling 3 services, one permission per service (mTLS on).
func benchView(n int) *meshview.Mesh {
	services := max(n/10, 1)
	v := &meshview.Mesh{Name: "bench", Spec: &meshv1.Mesh{Mtls: &meshv1.Mesh_Mtls{EnabledBackend: "ca",
		Backends: []*meshv1.CertificateAuthorityBackend{{Name: "ca", Type: "builtin"}}}}}
	for i := 0; i < n; i++ {
		dp := &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{
			Address: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
			Inbound: []*meshv1.Dataplane_Networking_Inbound{{Port: 8080, ServicePort: 80,
				Tags: map[string]string{resource.ServiceTag: fmt.Sprintf("svc-%d", i%services), resource.ProtocolTag: "http"}}},
		}}
		for k := 1; k <= 3; k++ {
			dp.Networking.Outbound = append(dp.Networking.Outbound, &meshv1.Dataplane_Networking_Outbound{
				Port: uint32(10000 + k), Tags: map[string]string{resource.ServiceTag: fmt.Sprintf("svc-%d", (i+k)%services)}})
		}
		r := resource.New(resource.DataplaneType, "bench", fmt.Sprintf("dp-%d", i))
		r.Spec = dp
		v.Dataplanes = append(v.Dataplanes, r)
	}
	for s := 0; s < services; s++ {
		tp := resource.New(resource.TrafficPermissionType, "bench", fmt.Sprintf("to-svc-%d", s))
		tp.Spec = &meshv1.TrafficPermission{
			Sources:      []*meshv1.Selector{{Match: map[string]string{resource.ServiceTag: "*"}}},
			Destinations: []*meshv1.Selector{{Match: map[string]string{resource.ServiceTag: fmt.Sprintf("svc-%d", s)}}},
		}
		v.TrafficPermissions = append(v.TrafficPermissions, tp)
	}
	return v
}

// BenchmarkPreviewPolicy: one dry-run preview of a Timeout on every caller
// of svc-1: Explain, two snapshots, and a before/after generation of every
// dataplane (compared up to MaxComparedProxies).
func BenchmarkPreviewPolicy(b *testing.B) {
	for _, n := range []int{100, 1000} {
		view := benchView(n)
		s := &Service{Instance: "bench", Rec: noStreams{}, Insights: noStreams{},
			Verify: func(context.Context, string) (*token.Claims, error) {
				return &token.Claims{Kind: token.KindUser, Groups: []string{token.AdminGroup}}, nil
			},
			Views: func(string) *meshview.Mesh { return view }}
		p := resource.New(resource.TimeoutType, "bench", "to-svc-1")
		p.Spec = &meshv1.Timeout{
			Sources:      []*meshv1.Selector{{Match: map[string]string{resource.ServiceTag: "*"}}},
			Destinations: []*meshv1.Selector{{Match: map[string]string{resource.ServiceTag: "svc-1"}}},
			Conf:         &meshv1.Timeout_Conf{ConnectTimeout: "1s"},
		}
		a, err := resource.ToAPI(p)
		if err != nil {
			b.Fatal(err)
		}
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer x"))
		b.Run(fmt.Sprintf("dataplanes=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var resp *inspectv1.PreviewPolicyResponse
			for i := 0; i < b.N; i++ {
				if resp, err = s.PreviewPolicy(ctx, &inspectv1.PreviewPolicyRequest{Policy: a}); err != nil {
					b.Fatal(err)
				}
			}
			if resp.GetChangedProxies() == 0 {
				b.Fatalf("nothing changed: %v", resp)
			}
			b.ReportMetric(float64(resp.GetChangedProxies()), "changed-proxies")
		})
	}
}
