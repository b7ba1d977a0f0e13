package app

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// badTemplate patches web's cluster for backend with a negative connect
// timeout: it decodes, but the result fails Envoy validation, which only
// the generation can tell.
const badTemplate = `
type: ProxyTemplate
mesh: default
name: backend-timeout
selectors:
- match:
    weft.io/service: web
conf:
  modifications:
  - type: cluster
    operation: patch
    match:
      name: backend
    value: 'connectTimeout: %s'
`

// TestBrokenProxyTemplateKeepsConfig runs a real xds-server on a real etcd
// with a raw ADS client: a ProxyTemplate that breaks validation leaves the
// proxy on the version it has (nothing new is sent) and puts the error in
// its DataplaneInsight; fixing the template serves the patched config and
// clears the error.
func TestBrokenProxyTemplateKeepsConfig(t *testing.T) {
	e := newTestEnv(t)
	tok := e.token("default", "web-1", e.keys, time.Hour)
	s := e.stream("")
	n := node("default.web-1", "envoy")
	n.Metadata.Fields["dataplane.token"] = structpb.NewStringValue(tok)
	if err := s.Send(&discoveryv3.DiscoveryRequest{Node: n, TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if backendCluster(t, resp) == nil {
		t.Fatalf("no cluster backend in %v", resp.GetResources())
	}
	v1 := resp.GetVersionInfo()
	if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: v1, ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}

	insightSub := func() *meshv1.DiscoverySubscription {
		r, err := e.st.Get(e.ctx, resource.DataplaneInsightType, "default", "web-1")
		if err != nil {
			return nil
		}
		subs := r.Spec.(*meshv1.DataplaneInsight).GetSubscriptions()
		if len(subs) != 1 {
			return nil
		}
		return subs[0]
	}

	e.apply(strings.Replace(badTemplate, "%s", "-1s", 1))
	var sub *meshv1.DiscoverySubscription
	waitFor(t, 30*time.Second, "the generation error in the insight", func() bool {
		sub = insightSub()
		return sub != nil && sub.GetGenerationError() != ""
	})
	if msg := sub.GetGenerationError(); !strings.Contains(msg, "ProxyTemplate backend-timeout") || !strings.Contains(msg, "invalid") {
		t.Fatalf("generation error %q does not name the template and the validation failure", msg)
	}
	if sub.GetGenerationErrorTime() == nil {
		t.Error("generation error without a time")
	}
	// The generation that failed is over (its error is stored): the
	// snapshot the proxy is served is still the first one.
	if st, ok := e.app.rec.ProxyStatus("default.web-1"); !ok || st.Versions[resourcev3.ClusterType] != v1 || st.LastErr == "" {
		t.Fatalf("after the bad template: status %+v, want clusters still at %s with the error", st, v1)
	}
	snap, err := e.app.cache.GetSnapshot("default.web-1")
	if err != nil || snap.GetVersion(resourcev3.ClusterType) != v1 {
		t.Fatalf("cache snapshot version %v (%v), want %s kept", snap, err, v1)
	}

	// Fixed: the patched cluster is served and the error cleared.
	e.apply(strings.Replace(badTemplate, "%s", "0.25s", 1))
	resp, err = s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetVersionInfo() == v1 {
		t.Fatal("no new version after the template was fixed")
	}
	if c := backendCluster(t, resp); c.GetConnectTimeout().AsDuration() != 250*time.Millisecond {
		t.Fatalf("backend connect timeout %v, want the template's 250ms", c.GetConnectTimeout().AsDuration())
	}
	if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the generation error cleared", func() bool {
		sub = insightSub()
		return sub != nil && sub.GetGenerationError() == "" && sub.GetGenerationErrorTime() == nil &&
			sub.GetTypes()[resourcev3.ClusterType].GetLastVersion() == resp.GetVersionInfo()
	})
}

func backendCluster(t *testing.T, resp *discoveryv3.DiscoveryResponse) *clusterv3.Cluster {
	t.Helper()
	for _, a := range resp.GetResources() {
		c := &clusterv3.Cluster{}
		if err := a.UnmarshalTo(c); err != nil {
			t.Fatal(err)
		}
		if c.GetName() == "backend" {
			return c
		}
	}
	return nil
}
