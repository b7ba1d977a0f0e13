package inspect

import (
	"context"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/token"
	inspectv1 "github.com/weftmesh/weft/proto/gen/go/weft/inspect/v1"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	"github.com/weftmesh/weft/xds-server/internal/meshview"
)

const keyPEM = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n"

func inline(s string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: s}}
}

func TestRedactEverySecretKind(t *testing.T) {
	orig := &tlsv3.Secret{Name: "identity_cert", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: inline("-----BEGIN CERTIFICATE-----\n"), PrivateKey: inline(keyPEM), Password: inline("hunter2")}}}
	for _, res := range []types.Resource{
		orig,
		&tlsv3.Secret{Name: "generic", Type: &tlsv3.Secret_GenericSecret{GenericSecret: &tlsv3.GenericSecret{
			Secret: inline(keyPEM), Secrets: map[string]*corev3.DataSource{"k": inline("hunter2")}}}},
		&tlsv3.Secret{Name: "tickets", Type: &tlsv3.Secret_SessionTicketKeys{SessionTicketKeys: &tlsv3.TlsSessionTicketKeys{Keys: []*corev3.DataSource{inline("hunter2")}}}},
	} {
		st, _, err := toStruct(res)
		if err != nil {
			t.Fatal(err)
		}
		js, _ := protojson.Marshal(st)
		if strings.Contains(string(js), "PRIVATE KEY") || strings.Contains(string(js), "hunter2") || !strings.Contains(string(js), Redacted) {
			t.Fatalf("%s not redacted: %s", res.(*tlsv3.Secret).GetName(), js)
		}
		if !strings.Contains(string(js), `"@type":"type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"`) {
			t.Fatalf("no @type: %s", js)
		}
	}
	// The cached resource itself is never modified (the proxy still gets
	// its key).
	if orig.GetTlsCertificate().GetPrivateKey().GetInlineString() != keyPEM {
		t.Fatal("Redact modified the served secret")
	}
	// Anything else that would carry key text is refused, not shown.
	leak := &clusterv3.Cluster{Name: keyPEM}
	if _, _, err := toStruct(leak); err == nil {
		t.Fatal("a resource with private key text was rendered")
	}
}

func TestDumpIsSizeBounded(t *testing.T) {
	var list []types.Resource
	for i := 0; i < 100; i++ {
		list = append(list, &clusterv3.Cluster{Name: strings.Repeat("c", 1000) + string(rune('a'+i%26))})
	}
	budget := 20 << 10
	td := &inspectv1.TypeDump{}
	if !dumpResources(td, list, &budget) {
		t.Fatal("not reported truncated")
	}
	if td.GetTotal() != 100 || len(td.GetResources()) == 0 || len(td.GetResources()) >= 100 || budget < 0 {
		t.Fatalf("total %d, kept %d, budget left %d", td.GetTotal(), len(td.GetResources()), budget)
	}
	budget = MaxDumpBytes
	td = &inspectv1.TypeDump{}
	if dumpResources(td, list, &budget) || len(td.GetResources()) != 100 {
		t.Fatalf("within the limit: kept %d", len(td.GetResources()))
	}
}

func TestDiffType(t *testing.T) {
	a := &clusterv3.Cluster{Name: "a"}
	b1, b2 := &clusterv3.Cluster{Name: "b"}, &clusterv3.Cluster{Name: "b", AltStatName: "x"}
	c := &clusterv3.Cluster{Name: "c"}
	d := diffType("t", []types.Resource{a, b1}, []types.Resource{b2, c})
	if strings.Join(d.GetAdded(), ",") != "c" || strings.Join(d.GetChanged(), ",") != "b" || strings.Join(d.GetRemoved(), ",") != "a" {
		t.Fatalf("diff: %v", d)
	}
	if diffType("t", []types.Resource{a}, []types.Resource{&clusterv3.Cluster{Name: "a"}}) != nil {
		t.Fatal("equal resources reported as a change")
	}
}

func TestPreviewsBounded(t *testing.T) {
	s := &Service{Instance: "t", Rec: noStreams{}, Insights: noStreams{},
		Verify: func(context.Context, string) (*token.Claims, error) {
			return &token.Claims{Kind: token.KindUser, Groups: []string{token.AdminGroup}}, nil
		},
		Views: func(string) *meshview.Mesh { return benchView(10) }}
	p := resource.New(resource.TimeoutType, "bench", "t")
	p.Spec = &meshv1.Timeout{Sources: []*meshv1.Selector{{Match: map[string]string{resource.ServiceTag: "*"}}},
		Destinations: []*meshv1.Selector{{Match: map[string]string{resource.ServiceTag: "svc-0"}}}, Conf: &meshv1.Timeout_Conf{ConnectTimeout: "1s"}}
	a, _ := resource.ToAPI(p)
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer x"))
	for i := 0; i < MaxConcurrentPreviews; i++ {
		previews <- struct{}{}
	}
	_, err := s.PreviewPolicy(ctx, &inspectv1.PreviewPolicyRequest{Policy: a})
	for i := 0; i < MaxConcurrentPreviews; i++ {
		<-previews
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("with %d previews running: %v", MaxConcurrentPreviews, err)
	}
	if _, err := s.PreviewPolicy(ctx, &inspectv1.PreviewPolicyRequest{Policy: a}); err != nil {
		t.Fatal(err)
	}
}
