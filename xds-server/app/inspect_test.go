package app

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/token"
	apiv1 "github.com/weftmesh/weft/proto/gen/go/weft/api/v1"
	inspectv1 "github.com/weftmesh/weft/proto/gen/go/weft/inspect/v1"
	"github.com/weftmesh/weft/xds-server/internal/inspect"
)

func (e *testEnv) userToken(groups ...string) string {
	e.t.Helper()
	c := token.Claims{Kind: token.KindUser, Groups: groups}
	c.Subject = "tester"
	tok, _, err := e.keys.Issue(e.ctx, c, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func bearer(ctx context.Context, tok string) context.Context {
	if tok == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// forged is a well-formed admin token signed by another control plane's
// key (a store under another prefix): a key this one never made.
func (e *testEnv) forged() string {
	e.t.Helper()
	ring, err := seal.Parse("k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
	if err != nil {
		e.t.Fatal(err)
	}
	other := token.New(store.New(e.st.Client(), store.WithKeyring(ring), store.WithPrefix("/other-control-plane/")))
	c := token.Claims{Kind: token.KindUser, Groups: []string{token.AdminGroup}}
	c.Subject = "mallory"
	tok, _, err := other.Issue(e.ctx, c, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// TestInspectConfigDump: an Envoy-shaped and a grpc-shaped xDS client
// connect; the config dump of each holds exactly the resources their
// streams received, with versions and ACK state, private keys redacted.
func TestInspectConfigDump(t *testing.T) {
	e := newTestEnv(t)
	ic := inspectv1.NewInspectServiceClient(e.conn)
	reader := e.userToken() // read-only user

	// web-1 as Envoy: subscribe to every type, ACK each response.
	s := e.stream(e.token("default", "web-1", e.keys, time.Hour))
	received := map[string]*discoveryv3.DiscoveryResponse{}
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType, resourcev3.SecretType} {
		if err := s.Send(&discoveryv3.DiscoveryRequest{Node: node("default.web-1", "envoy"), TypeUrl: typ}); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until the secret (the workload key, signed by the CA) arrived.
	for received[resourcev3.SecretType] == nil || len(received[resourcev3.SecretType].GetResources()) == 0 {
		resp, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		received[resp.GetTypeUrl()] = resp
		if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(received[resourcev3.SecretType].String(), "PRIVATE KEY") {
		t.Fatal("the stream's secret carries no private key: the redaction test would prove nothing")
	}

	var dump *inspectv1.ConfigDumpResponse
	waitFor(t, 20*time.Second, "the listener and secret ACKs in the config dump", func() bool {
		var err error
		dump, err = ic.ConfigDump(bearer(e.ctx, reader), &inspectv1.ConfigDumpRequest{Mesh: "default", Name: "web-1"})
		if err != nil {
			t.Fatal(err)
		}
		acked := 0
		for _, td := range dump.GetTypes() {
			if r := received[td.GetTypeUrl()]; r != nil && td.GetVersion() == r.GetVersionInfo() && td.GetState() == "ACK" {
				acked++
			}
		}
		return acked == len(received)
	})
	if dump.GetSource() != inspect.SourceStream || dump.GetInstanceId() != "test" || dump.GetProxyKind() != "envoy" || dump.GetTruncated() {
		t.Fatalf("dump header: %+v", dump)
	}
	js, err := protojson.Marshal(dump)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(js), "PRIVATE KEY") || !strings.Contains(string(js), inspect.Redacted) {
		t.Fatalf("secrets are not redacted in the dump:\n%s", js)
	}
	for _, td := range dump.GetTypes() {
		resp := received[td.GetTypeUrl()]
		if resp == nil {
			continue
		}
		if int(td.GetTotal()) != len(resp.GetResources()) || len(td.GetResources()) != len(resp.GetResources()) {
			t.Fatalf("%s: dump has %d (total %d), stream received %d", td.GetTypeUrl(), len(td.GetResources()), td.GetTotal(), len(resp.GetResources()))
		}
		sentByName := map[string]proto.Message{}
		for _, a := range resp.GetResources() {
			m, err := a.UnmarshalNew()
			if err != nil {
				t.Fatal(err)
			}
			sentByName[cache.GetResourceName(m)] = m
		}
		for i, got := range td.GetResources() {
			b, err := protojson.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			var a anypb.Any
			if err := protojson.Unmarshal(b, &a); err != nil {
				t.Fatalf("%s resource %d is not an Envoy message with @type: %v", td.GetTypeUrl(), i, err)
			}
			dumped, err := a.UnmarshalNew()
			if err != nil {
				t.Fatal(err)
			}
			sent := sentByName[cache.GetResourceName(dumped)]
			if td.GetTypeUrl() == resourcev3.SecretType {
				sent = inspect.Redact(sent)
			}
			if !proto.Equal(dumped, sent) {
				t.Fatalf("%s resource %d differs:\ndump: %v\nsent: %v", td.GetTypeUrl(), i, dumped, sent)
			}
		}
	}

	// A NACK shows as the type's state, with the proxy's detail.
	e.apply(`
type: TrafficPermission
mesh: default
name: backend-to-web
sources:
- match:
    weft.io/service: backend
destinations:
- match:
    weft.io/service: web
`)
	for {
		resp, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetTypeUrl() == resourcev3.ListenerType {
			_ = s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: received[resourcev3.ListenerType].GetVersionInfo(), ResponseNonce: resp.GetNonce(),
				ErrorDetail: &statuspb.Status{Code: int32(codes.InvalidArgument), Message: "rejected by the test"}})
			break
		}
	}
	waitFor(t, 20*time.Second, "the NACK in the config dump", func() bool {
		d, err := ic.ConfigDump(bearer(e.ctx, reader), &inspectv1.ConfigDumpRequest{Mesh: "default", Name: "web-1"})
		if err != nil {
			t.Fatal(err)
		}
		for _, td := range d.GetTypes() {
			if td.GetTypeUrl() == resourcev3.ListenerType {
				return td.GetState() == "NACK" && td.GetLastError() == "rejected by the test" && td.GetNacks() == 1
			}
		}
		return false
	})

	// backend-1 has no stream: computed by the generator, no secrets.
	d, err := ic.ConfigDump(bearer(e.ctx, reader), &inspectv1.ConfigDumpRequest{Mesh: "default", Name: "backend-1"})
	if err != nil {
		t.Fatal(err)
	}
	if d.GetSource() != inspect.SourceComputed || len(d.GetTypes()) == 0 {
		t.Fatalf("backend-1: %+v", d)
	}
	for _, td := range d.GetTypes() {
		if td.GetTypeUrl() == resourcev3.SecretType || td.GetState() != "" {
			t.Fatalf("computed dump has %s in state %q", td.GetTypeUrl(), td.GetState())
		}
	}
}

// TestInspectAuth: who may dump whose configuration.
func TestInspectAuth(t *testing.T) {
	e := newTestEnv(t)
	waitFor(t, 20*time.Second, "the model to hold both dataplanes", func() bool {
		v := e.app.model.View("default")
		return v != nil && v.Spec != nil && len(v.Dataplanes) == 2
	})
	ic := inspectv1.NewInspectServiceClient(e.conn)
	zc := token.Claims{Kind: token.KindZone, Zone: "zone-1"}
	zc.Subject = "zone-1"
	zoneTok, _, err := e.keys.Issue(e.ctx, zc, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		tok, mesh, dp string
		want          codes.Code
	}{
		"no token":                     {"", "default", "web-1", codes.Unauthenticated},
		"garbage":                      {"not-a-jwt", "default", "web-1", codes.Unauthenticated},
		"forged admin":                 {e.forged(), "default", "web-1", codes.Unauthenticated},
		"zone token":                   {zoneTok, "default", "web-1", codes.PermissionDenied},
		"another dataplane's token":    {e.token("default", "backend-1", e.keys, time.Hour), "default", "web-1", codes.PermissionDenied},
		"same name in another mesh":    {e.token("other", "web-1", e.keys, time.Hour), "default", "web-1", codes.PermissionDenied},
		"its own dataplane token":      {e.token("default", "web-1", e.keys, time.Hour), "default", "web-1", codes.OK},
		"reader":                       {e.userToken(), "default", "web-1", codes.OK},
		"admin":                        {e.userToken(token.AdminGroup), "default", "web-1", codes.OK},
		"unknown dataplane":            {e.userToken(), "default", "nope", codes.NotFound},
		"unknown mesh":                 {e.userToken(), "nope", "web-1", codes.NotFound},
		"no name":                      {e.userToken(), "default", "", codes.InvalidArgument},
		"oversized name":               {e.userToken(), "default", strings.Repeat("a", 300), codes.InvalidArgument},
		"dataplane token, unknown one": {e.token("default", "nope", e.keys, time.Hour), "default", "nope", codes.NotFound},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ic.ConfigDump(bearer(e.ctx, tc.tok), &inspectv1.ConfigDumpRequest{Mesh: tc.mesh, Name: tc.dp})
			if status.Code(err) != tc.want {
				t.Fatalf("err = %v, want %s", err, tc.want)
			}
		})
	}
	// A read-only user cannot preview (a dry-run write), nor a dataplane.
	_, err = ic.PreviewPolicy(bearer(e.ctx, e.userToken()), &inspectv1.PreviewPolicyRequest{})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("preview with a read-only token: %v", err)
	}
	_, err = ic.PreviewPolicy(bearer(e.ctx, e.token("default", "web-1", e.keys, time.Hour)), &inspectv1.PreviewPolicyRequest{})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("preview with a dataplane token: %v", err)
	}
}

func policyAPI(t *testing.T, y string) *apiv1.Resource {
	t.Helper()
	r, err := resource.Unmarshal([]byte(y), nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := resource.ToAPI(r)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestInspectPreview: the impact of a policy, computed without storing it.
func TestInspectPreview(t *testing.T) {
	e := newTestEnv(t)
	ic := inspectv1.NewInspectServiceClient(e.conn)
	ctx := bearer(e.ctx, e.userToken(token.AdminGroup))
	e.apply(`
type: Timeout
mesh: default
name: timeout-all
sources:
- match:
    weft.io/service: '*'
destinations:
- match:
    weft.io/service: '*'
conf:
  connectTimeout: 3s
`)
	waitFor(t, 20*time.Second, "the model to hold timeout-all", func() bool {
		v := e.app.model.View("default")
		// The Mesh too: each type has its own informer, so a policy can
		// arrive before its Mesh.
		return v != nil && v.Spec != nil && len(v.Policies) == 1 && len(v.Dataplanes) == 2
	})
	rev, err := e.st.Revision(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ic.PreviewPolicy(ctx, &inspectv1.PreviewPolicyRequest{Policy: policyAPI(t, `
type: Timeout
mesh: default
name: web-to-backend
sources:
- match:
    weft.io/service: web
destinations:
- match:
    weft.io/service: backend
conf:
  connectTimeout: 1s
`)})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetReplacesExisting() || resp.GetMatchedDataplanes() != 1 || len(resp.GetImpacts()) != 1 {
		t.Fatalf("preview: %v", resp)
	}
	im := resp.GetImpacts()[0]
	if im.GetDataplane() != "web-1" || im.GetDestination() != "backend" || !im.GetApplies() || im.GetReplaces() != "timeout-all" {
		t.Fatalf("impact: %v", im)
	}
	if resp.GetChangedProxies() != 1 || len(resp.GetDiffs()) != 1 || resp.GetComparedProxies() != 2 || resp.GetTotalDataplanes() != 2 {
		t.Fatalf("diffs: %v", resp)
	}
	d := resp.GetDiffs()[0]
	if d.GetDataplane() != "web-1" || len(d.GetTypes()) != 1 || d.GetTypes()[0].GetTypeUrl() != resourcev3.ClusterType ||
		strings.Join(d.GetTypes()[0].GetChanged(), ",") != "backend" {
		t.Fatalf("web-1 diff: %v", d)
	}
	// Nothing was stored.
	if now, err := e.st.Revision(e.ctx); err != nil || now != rev {
		t.Fatalf("store revision %d → %d (%v): the preview wrote", rev, now, err)
	}

	// Bad input: field paths, nothing stored.
	_, err = ic.PreviewPolicy(ctx, &inspectv1.PreviewPolicyRequest{Policy: policyAPI(t, `
type: Timeout
mesh: default
name: bad
sources:
- match:
    weft.io/service: web
destinations:
- match:
    weft.io/service: backend
conf:
  connectTimeout: -1s
`)})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(fmt.Sprint(status.Convert(err).Details()), "conf.connectTimeout") {
		t.Fatalf("bad policy: %v", err)
	}
	_, err = ic.PreviewPolicy(ctx, &inspectv1.PreviewPolicyRequest{Policy: policyAPI(t, "type: Mesh\nname: x\n")})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("not a policy: %v", err)
	}
	if now, err := e.st.Revision(e.ctx); err != nil || now != rev {
		t.Fatalf("store revision %d → %d (%v): a refused preview wrote", rev, now, err)
	}
}
