package gui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weftmesh/weft/api-server/internal/gui"
	"github.com/weftmesh/weft/api-server/internal/server"
	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/grpcx"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/token"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

type fakes struct {
	meshes, dps, insights, zones, zoneInsights, ingresses, vips *store.FakeInformer
}

func (f fakes) readers() gui.Readers {
	return gui.Readers{Meshes: f.meshes, Dataplanes: f.dps, DataplaneInsights: f.insights, Zones: f.zones,
		ZoneInsights: f.zoneInsights, ZoneIngresses: f.ingresses, VIPs: f.vips}
}

func newFakes() fakes {
	f := fakes{store.NewFakeInformer(resource.MeshType), store.NewFakeInformer(resource.DataplaneType),
		store.NewFakeInformer(resource.DataplaneInsightType), store.NewFakeInformer(resource.ZoneType),
		store.NewFakeInformer(resource.ZoneInsightType), store.NewFakeInformer(resource.ZoneIngressType),
		store.NewFakeInformer(resource.VirtualIPType)}
	for _, fi := range []*store.FakeInformer{f.meshes, f.dps, f.insights, f.zones, f.zoneInsights, f.ingresses, f.vips} {
		fi.Sync()
	}
	return f
}

func dataplane(mesh, name, zone string, tags map[string]string) *resource.Resource {
	dp := resource.New(resource.DataplaneType, mesh, name)
	dp.Meta.Origin = zone
	dp.Spec = &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: "10.0.0.1",
		Inbound: []*meshv1.Dataplane_Networking_Inbound{{Port: 10001, Tags: tags}}}}
	return dp
}

func online(mesh, name, replica string, certExpiry time.Time) *resource.Resource {
	ins := resource.New(resource.DataplaneInsightType, mesh, name)
	ins.Spec = &meshv1.DataplaneInsight{
		Subscriptions: []*meshv1.DiscoverySubscription{
			{Id: "old", ControlPlaneInstanceId: "xds-old", ConnectTime: timestamppb.New(time.Unix(100, 0)), DisconnectTime: timestamppb.New(time.Unix(200, 0))},
			{Id: "now", ControlPlaneInstanceId: replica, ConnectTime: timestamppb.New(time.Unix(300, 0)), ProxyKind: "envoy"},
		},
		Mtls: &meshv1.DataplaneInsight_MTLS{CertificateExpirationTime: timestamppb.New(certExpiry)},
	}
	return ins
}

// world is mesh "default" with 30 dataplanes web-00..web-29 in zone-1
// (even ones online, web-03 nacking) and backend-0 in zone-2; zone-1 is
// connected, zone-2 disconnected.
func world(t *testing.T) fakes {
	t.Helper()
	f := newFakes()
	f.meshes.Put(resource.New(resource.MeshType, "", "default"))
	for i := 0; i < 30; i++ {
		name := fmt.Sprintf("web-%02d", i)
		f.dps.Put(dataplane("default", name, "zone-1", map[string]string{resource.ServiceTag: "web", "version": fmt.Sprint("v", i%3)}))
		if i%2 == 0 {
			f.insights.Put(online("default", name, "xds-1", time.Now().Add(720*time.Hour)))
		}
	}
	nack := online("default", "web-03", "xds-2", time.Now().Add(time.Hour))
	nack.Spec.(*meshv1.DataplaneInsight).Subscriptions[1].Types = map[string]*meshv1.SyncTypeStatus{"listeners": {Nacks: 2, LastError: "bad listener"}}
	f.insights.Put(nack)
	f.dps.Put(dataplane("default", "backend-0", "zone-2", map[string]string{resource.ServiceTag: "backend"}))
	vip := resource.New(resource.VirtualIPType, "default", "web")
	vip.Spec = &meshv1.VirtualIP{Service: "web", Ip: "240.0.0.1"}
	f.vips.Put(vip)
	f.zones.Put(resource.New(resource.ZoneType, "", "zone-1"))
	f.zones.Put(resource.New(resource.ZoneType, "", "zone-2"))
	zi := resource.New(resource.ZoneInsightType, "", "zone-1")
	zi.Spec = &meshv1.ZoneInsight{Subscriptions: []*meshv1.ZoneInsight_Subscription{{GlobalInstanceId: "global-1", ConnectTime: timestamppb.New(time.Unix(50, 0)),
		Types: map[string]*meshv1.SyncTypeStatus{"meshes": {LastUpdateTime: timestamppb.New(time.Unix(60, 0))}}}}}
	f.zoneInsights.Put(zi)
	zi2 := resource.New(resource.ZoneInsightType, "", "zone-2")
	zi2.Spec = &meshv1.ZoneInsight{Subscriptions: []*meshv1.ZoneInsight_Subscription{{ConnectTime: timestamppb.New(time.Unix(50, 0)), DisconnectTime: timestamppb.New(time.Unix(70, 0))}}}
	f.zoneInsights.Put(zi2)
	ing := resource.New(resource.ZoneIngressType, "", "zone-1.ingress")
	ing.Spec = &meshv1.ZoneIngress{Zone: "zone-1", Networking: &meshv1.ZoneIngress_Networking{Address: "10.0.0.9", Port: 10000, AdvertisedAddress: "1.2.3.4", AdvertisedPort: 443},
		AvailableServices: []*meshv1.ZoneIngress_AvailableService{{Mesh: "default", Tags: map[string]string{resource.ServiceTag: "web"}, Instances: 15}}}
	f.ingresses.Put(ing)
	return f
}

func TestDataplanesPageFiltersAndPages(t *testing.T) {
	r := world(t).readers()
	for _, tc := range []struct {
		query          string
		matched, items int
		first          string
	}{
		{"", 31, 31, "backend-0"},
		{"size=10&offset=25", 31, 6, "web-24"},
		{"name=web-1", 10, 10, "web-10"},
		{"status=online", 16, 16, "web-00"},
		{"status=offline", 15, 15, "backend-0"},
		{"tag=version:v1&status=online", 5, 5, "web-04"},
		{"tag=weft.io/service:backend", 1, 1, "backend-0"},
		{"tag=version:*&zone=zone-2", 0, 0, ""},
		{"zone=zone-2", 1, 1, "backend-0"},
		{"mesh=other", 0, 0, ""},
	} {
		q, err := gui.ParseDataplaneQuery(tc.query)
		if err != nil {
			t.Fatalf("%q: %v", tc.query, err)
		}
		if q.Size == gui.DefaultPageSize {
			q.Size = gui.MaxPageSize
		}
		p := r.DataplanesPage(q)
		if p.Matched != tc.matched || len(p.Items) != tc.items {
			t.Errorf("%q: matched %d, %d items; want %d, %d", tc.query, p.Matched, len(p.Items), tc.matched, tc.items)
			continue
		}
		if tc.items > 0 && p.Items[0].Name != tc.first {
			t.Errorf("%q: first %s, want %s", tc.query, p.Items[0].Name, tc.first)
		}
		if p.Total != 31 && q.Mesh == "" {
			t.Errorf("%q: total %d, want 31", tc.query, p.Total)
		}
	}
	d, ok := r.Dataplane("default", "web-02")
	if !ok || d.Status != gui.StatusOnline || d.Replica != "xds-1" || d.Zone != "zone-1" || d.Tags["version"] != "v2" || d.ConnectedSince == nil || d.CertExpiry == nil {
		t.Errorf("web-02: %+v", d)
	}
	if d, _ := r.Dataplane("default", "web-01"); d.Status != gui.StatusOffline || d.Replica != "" {
		t.Errorf("web-01 has no insight, want offline: %+v", d)
	}
}

func TestParseDataplaneQueryRefusesBadInput(t *testing.T) {
	for q, want := range map[string]string{
		"status=maybe":                     "status:",
		"size=201":                         "size:",
		"size=-1":                          "size:",
		"offset=x":                         "offset:",
		"mesh=Bad_Mesh":                    "mesh:",
		"tag=novalue":                      "tag[0]",
		"tag=:v":                           "tag[0]",
		"name=a&name=b":                    "given 2 times",
		"colour=red":                       "unknown parameter",
		"name=" + strings.Repeat("a", 300): "name: at most",
		strings.Repeat("tag=a:b&", 9):      "at most 8 tag filters",
		"q=" + strings.Repeat("x", 3000):   "at most 2048 bytes",
		"name=%zz":                         "query:",
	} {
		_, err := gui.ParseDataplaneQuery(q)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%.40q: error %v, want one containing %q", q, err, want)
		}
	}
}

func TestOverviewCountsAndProblemsFirst(t *testing.T) {
	r := world(t).readers()
	o := r.Overview(time.Now())
	if o.Dataplanes != (gui.Counts{Total: 31, Online: 16, Offline: 15}) {
		t.Errorf("dataplanes %+v", o.Dataplanes)
	}
	if o.Zones != (gui.Counts{Total: 2, Online: 1, Offline: 1}) || o.Ingresses != 1 {
		t.Errorf("zones %+v, ingresses %d", o.Zones, o.Ingresses)
	}
	if len(o.Meshes) != 1 || o.Meshes[0].Services != 2 {
		t.Errorf("meshes %+v", o.Meshes)
	}
	var kinds []string
	for _, p := range o.Problems {
		kinds = append(kinds, p.Kind+": "+p.Message)
	}
	want := []string{"zone offline: zone zone-2 is offline: disconnected at 1970-01-01T00:01:10Z",
		"NACK: dataplane default/web-03 rejected its configuration: bad listener", "certificate expiry"}
	if len(kinds) != 3 || kinds[0] != want[0] || kinds[1] != want[1] || !strings.HasPrefix(kinds[2], want[2]) {
		t.Errorf("problems:\n%s\nwant (in order):\n%s", strings.Join(kinds, "\n"), strings.Join(want, "\n"))
	}
	zones := r.ZoneList()
	if len(zones) != 2 || !zones[0].Online || zones[0].Dataplanes != 30 || zones[0].Ingresses != 1 || zones[0].LastSync == nil || zones[0].GlobalReplica != "global-1" || zones[1].Online {
		t.Errorf("zones: %+v", zones)
	}
	svc := r.Services("default")
	if len(svc) != 2 || svc[1].Name != "web" || svc[1].VIP != "240.0.0.1" || svc[1].Total != 30 || svc[1].Healthy != 16 || svc[1].Zones["zone-1"].Online != 16 {
		t.Errorf("services: %+v", svc)
	}
	ing := r.IngressList()
	if len(ing) != 1 || ing[0].Address != "1.2.3.4:443" || ing[0].Services[0].Instances != 15 {
		t.Errorf("ingresses: %+v", ing)
	}
}

// server is the GUI behind the API's real token authentication.
func server_(t *testing.T, f fakes) (*httptest.Server, *token.Keys) {
	t.Helper()
	kr, err := seal.New(seal.Key{ID: "k", Bytes: bytes.Repeat([]byte{3}, seal.KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(etcdtest.Client(t, etcdtest.Start(t)), store.WithKeyring(kr))
	keys := token.New(st)
	g := gui.NewWithReaders(f.readers(), gui.Config{Auth: grpcx.TokenAuth(keys, server.Authorize), Mode: "global", Log: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- g.Run(ctx) }()
	srv := httptest.NewServer(gui.StripToken(g))
	t.Cleanup(func() { srv.Close(); cancel(); <-done })
	return srv, keys
}

func get(t *testing.T, url, tok string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func issue(t *testing.T, keys *token.Keys, c token.Claims) string {
	t.Helper()
	tok, _, err := keys.Issue(context.Background(), c, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestAPIAuthenticatesLikeTheAPI(t *testing.T) {
	srv, keys := server_(t, world(t))
	admin := token.Claims{Kind: token.KindUser, Groups: []string{token.AdminGroup}}
	admin.Subject = "admin"
	viewer := token.Claims{Kind: token.KindUser}
	viewer.Subject = "viewer"
	dp := token.Claims{Kind: token.KindDataplane, Mesh: "default", Services: []string{"web"}}
	dp.Subject = "web-00"
	for _, tc := range []struct {
		name, tok, path string
		code            int
		body            string
	}{
		{"no token", "", "/gui/api/overview", 401, "missing bearer token"},
		{"garbage", "not-a-token", "/gui/api/overview", 401, "invalid token"},
		{"dataplane token", issue(t, keys, dp), "/gui/api/overview", 403, "cannot call"},
		{"read-only user", issue(t, keys, viewer), "/gui/api/overview", 200, `"dataplanes":{"total":31,"online":16,"offline":15}`},
		{"admin", issue(t, keys, admin), "/gui/api/dataplanes?status=offline&size=2", 200, `"matched":15`},
		{"bad filter", issue(t, keys, admin), "/gui/api/dataplanes?status=maybe", 400, "status:"},
		{"unknown mesh", issue(t, keys, admin), "/gui/api/meshes/nope/services", 404, "mesh nope not found"},
		{"unknown dataplane", issue(t, keys, admin), "/gui/api/meshes/default/dataplanes/nope", 404, "not found"},
		{"dataplane", issue(t, keys, admin), "/gui/api/meshes/default/dataplanes/web-03", 200, `"lastError":"bad listener"`},
		{"services", issue(t, keys, admin), "/gui/api/meshes/default/services", 200, `"vip":"240.0.0.1"`},
		{"zones", issue(t, keys, admin), "/gui/api/zones", 200, `"address":"1.2.3.4:443"`},
		{"unknown endpoint", issue(t, keys, admin), "/gui/api/secrets", 404, "no such GUI endpoint"},
	} {
		code, _, body := get(t, srv.URL+tc.path, tc.tok)
		if code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("%s: %d %s; want %d with %q", tc.name, code, body, tc.code, tc.body)
		}
	}
	resp, err := http.Post(srv.URL+"/gui/api/overview", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", resp.StatusCode)
	}
}

func TestAssetsAreEmbeddedWithAStrictPolicy(t *testing.T) {
	srv, _ := server_(t, newFakes())
	for path, want := range map[string]string{"/gui/": `<script type="module" src="app.js">`, "/gui/app.js": "takeTokenFromURL", "/gui/yaml.js": "export function toYAML", "/gui/style.css": ":root"} {
		code, h, body := get(t, srv.URL+path, "")
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("%s: %d, want 200 containing %q", path, code, want)
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: CSP %q, referrer policy %q", path, csp, h.Get("Referrer-Policy"))
		}
	}
}

func TestStripTokenHidesTheSignInLinkToken(t *testing.T) {
	var seen []string
	h := gui.StripToken(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { seen = append(seen, r.URL.String()+" "+r.RequestURI) }))
	for _, u := range []string{"/gui/?token=secret-1", "/gui?token=secret-2&x=1", "/gui/app.js?token=secret-3", "/meshes?token=kept"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, u, nil))
	}
	all := strings.Join(seen, "\n")
	if strings.Contains(all, "secret-") || !strings.Contains(all, "x=1") || !strings.Contains(all, "token=kept") {
		t.Errorf("handlers saw:\n%s", all)
	}
}

func TestAPIWaitsForTheViewsAndLogsOnce(t *testing.T) {
	f := newFakes()
	unsynced := store.NewFakeInformer(resource.MeshType)
	r := f.readers()
	r.Meshes = unsynced
	g := gui.NewWithReaders(r, gui.Config{Auth: func(ctx context.Context, _ string) (context.Context, error) { return ctx, nil }, Log: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error)
	go func() { done <- g.Run(ctx) }()
	rctx, rcancel := context.WithCancel(context.Background())
	rec := httptest.NewRecorder()
	served := make(chan struct{})
	go func() {
		defer close(served)
		g.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/gui/api/overview", nil).WithContext(rctx))
	}()
	unsynced.Sync(resource.New(resource.MeshType, "", "late"))
	select {
	case <-served:
	case <-time.After(30 * time.Second):
		t.Fatal("the request did not finish once the views synced")
	}
	rcancel()
	var o gui.Overview
	if err := json.Unmarshal(rec.Body.Bytes(), &o); err != nil || rec.Code != 200 || len(o.Meshes) != 1 {
		t.Errorf("%d %s (%v)", rec.Code, rec.Body, err)
	}
	cancel()
	<-done
}

// Answers are reused while nothing changes and recomputed after a change.
func TestAnswersFollowChanges(t *testing.T) {
	f := world(t)
	srv, keys := server_(t, f)
	viewer := token.Claims{Kind: token.KindUser}
	viewer.Subject = "viewer"
	tok := issue(t, keys, viewer)
	total := func() int {
		t.Helper()
		code, _, body := get(t, srv.URL+"/gui/api/dataplanes?status=online", tok)
		var p gui.DataplanePage
		if err := json.Unmarshal([]byte(body), &p); code != 200 || err != nil {
			t.Fatalf("%d %s (%v)", code, body, err)
		}
		return p.Matched
	}
	if a, b := total(), total(); a != 16 || b != 16 {
		t.Fatalf("online %d then %d, want 16", a, b)
	}
	f.insights.Delete("default", "web-00")
	if n := total(); n != 15 {
		t.Errorf("after web-00 went offline: %d online, want 15", n)
	}
}

// Metric route labels are the patterns docs/gui.md lists, never raw paths.
func TestRouteLabelIsBounded(t *testing.T) {
	for path, want := range map[string]string{
		"/gui/":                                "/gui/",
		"/gui/app.js":                          "/gui/",
		"/gui/api/overview":                    "/gui/api/overview",
		"/gui/api/zones":                       "/gui/api/zones",
		"/gui/api/dataplanes":                  "/gui/api/dataplanes",
		"/gui/api/meshes/m1/services":          "/gui/api/meshes/{mesh}/services",
		"/gui/api/meshes/m1/dataplanes/web-1":  "/gui/api/meshes/{mesh}/dataplanes/{name}",
		"/gui/api/" + strings.Repeat("x", 100): "/gui/api/{unknown}",
	} {
		if got := gui.RouteLabel(path); got != want {
			t.Errorf("RouteLabel(%.40q) = %q, want %q", path, got, want)
		}
	}
}
