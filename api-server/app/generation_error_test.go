package app_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// TestDataplaneInsightGenerationError: the reason the xds-server keeps a
// proxy on its previous configuration (a ProxyTemplate that breaks
// validation) is in the REST answer of the dataplane with its insight.
func TestDataplaneInsightGenerationError(t *testing.T) {
	c := start(t, "standalone", "")
	c.must("PUT", "/meshes/default", `{"type":"Mesh"}`, 201)
	c.must("PUT", "/meshes/default/dataplanes/web-1", dp, 201)
	const msg = "dataplane default/web-1: ProxyTemplate tpl leaves the configuration invalid: invalid Cluster.ConnectTimeout"
	ins := resource.New(resource.DataplaneInsightType, "default", "web-1")
	ins.Spec = &meshv1.DataplaneInsight{Subscriptions: []*meshv1.DiscoverySubscription{{ControlPlaneInstanceId: "xds-1", ProxyKind: "envoy",
		GenerationError: msg, GenerationErrorTime: timestamppb.Now()}}}
	if _, err := c.st.Create(context.Background(), ins); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/meshes/default/dataplanes/web-1+insights", "/meshes/default/dataplanes+insights"} {
		r := c.must("GET", path, "", 200)
		if !strings.Contains(r.raw, `"generationError":"`+msg+`"`) || !strings.Contains(r.raw, `"generationErrorTime":"`) {
			t.Fatalf("%s lacks the generation error: %s", path, r.raw)
		}
	}
}
