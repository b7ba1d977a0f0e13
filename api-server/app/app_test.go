package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/weftmesh/weft/api-server/app"
	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/token"
	apiv1 "github.com/weftmesh/weft/proto/gen/go/weft/api/v1"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

type cp struct {
	t     *testing.T
	st    *store.Store
	app   *app.App
	base  string
	admin string
}

func start(t *testing.T, mode, zone string) *cp { return startCfg(t, mode, zone, nil) }

// startCfg is start with a change to the configuration.
func startCfg(t *testing.T, mode, zone string, change func(*app.Config)) *cp {
	t.Helper()
	cli := etcdtest.Client(t, nil)
	keys, _ := seal.New(seal.Key{ID: "k", Bytes: bytes.Repeat([]byte{3}, 32)})
	cfg := app.Default()
	cfg.GRPCAddress, cfg.HTTPAddress, cfg.AdminAddress = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Mode, cfg.Zone = mode, zone
	cfg.Etcd.Client = cli
	cfg.Encryption.Keyring = keys
	cfg.Logging.Level = "warn"
	if change != nil {
		change(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	tok, err := a.IssueAdminToken(ctx, "admin", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &cp{t: t, st: store.New(cli, store.WithKeyring(keys)), app: a, base: "http://" + a.HTTPAddr(), admin: tok}
}

type resp struct {
	code     int
	body     map[string]any
	raw      string
	warnings []string
}

func (c *cp) do(method, path, tok, body string) resp {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer r.Body.Close()
	raw, _ := io.ReadAll(r.Body)
	out := resp{code: r.StatusCode, raw: string(raw), warnings: r.Header.Values("Warning")}
	_ = json.Unmarshal(raw, &out.body)
	return out
}

func (c *cp) must(method, path, body string, want int) resp {
	c.t.Helper()
	r := c.do(method, path, c.admin, body)
	if r.code != want {
		c.t.Fatalf("%s %s: got %d, want %d: %s", method, path, r.code, want, r.raw)
	}
	return r
}

const dp = `{"type":"Dataplane","mesh":"default","name":"web-1","networking":{"address":"10.0.0.1","inbound":[{"port":8080,"tags":{"weft.io/service":"web","weft.io/protocol":"http"}}]}}`

func causes(r resp) map[string]string {
	out := map[string]string{}
	list, _ := r.body["causes"].([]any)
	for _, c := range list {
		m := c.(map[string]any)
		out[m["field"].(string)] = m["message"].(string)
	}
	return out
}

func TestAuthRequired(t *testing.T) {
	c := start(t, "standalone", "")
	for _, path := range []string{"/", "/meshes", "/meshes/default/dataplanes", "/zones+insights"} {
		if r := c.do("GET", path, "", ""); r.code != http.StatusUnauthorized || r.body["title"] != "Unauthorized" {
			t.Errorf("GET %s without token: %d %s", path, r.code, r.raw)
		}
		if r := c.do("GET", path, "garbage", ""); r.code != http.StatusUnauthorized {
			t.Errorf("GET %s with bad token: %d", path, r.code)
		}
	}
	r := c.must("GET", "/", "", 200)
	if r.body["product"] != "Weft" || r.body["mode"] != "standalone" {
		t.Fatalf("index: %s", r.raw)
	}
}

func TestResourceLifecycle(t *testing.T) {
	c := start(t, "standalone", "")
	c.must("PUT", "/meshes/default", `{"type":"Mesh","name":"default"}`, 201)
	c.must("PUT", "/meshes/default", `{"type":"Mesh","name":"default"}`, 200)
	created := c.must("PUT", "/meshes/default/dataplanes/web-1", dp, 201)
	if created.body["version"] == nil || created.body["creationTime"] == nil {
		t.Fatalf("no metadata: %s", created.raw)
	}
	c.must("PUT", "/meshes/default/traffic-permissions/allow-all",
		`{"type":"TrafficPermission","sources":[{"match":{"weft.io/service":"*"}}],"destinations":[{"match":{"weft.io/service":"*"}}]}`, 201)

	got := c.must("GET", "/meshes/default/dataplanes/web-1", "", 200)
	t.Logf("GET body: %s", got.raw)
	if got.body["networking"].(map[string]any)["address"] != "10.0.0.1" || got.body["mesh"] != "default" {
		t.Fatalf("get: %s", got.raw)
	}
	// A stale version is refused with 409 and changes nothing.
	stale := strings.Replace(dp, `"name":"web-1"`, `"name":"web-1","version":"1"`, 1)
	stale = strings.Replace(stale, "10.0.0.1", "10.0.0.9", 1)
	if r := c.must("PUT", "/meshes/default/dataplanes/web-1", stale, 409); r.body["title"] != "Conflict" {
		t.Fatalf("409 body: %s", r.raw)
	}
	// The current version is accepted.
	cur := strings.Replace(dp, `"name":"web-1"`, fmt.Sprintf(`"name":"web-1","version":%q`, got.body["version"]), 1)
	c.must("PUT", "/meshes/default/dataplanes/web-1", cur, 200)

	list := c.must("GET", "/meshes/default/dataplanes", "", 200)
	if list.body["total"].(float64) != 1 || len(list.body["items"].([]any)) != 1 {
		t.Fatalf("list: %s", list.raw)
	}
	all := c.must("GET", "/traffic-permissions", "", 200)
	if all.body["total"].(float64) != 1 {
		t.Fatalf("cross-mesh list: %s", all.raw)
	}
	// Deleting the mesh removes what is in it.
	c.must("DELETE", "/meshes/default", "", 200)
	c.must("GET", "/meshes/default/dataplanes/web-1", "", 404)
	c.must("GET", "/meshes/default/traffic-permissions/allow-all", "", 404)
}

func TestInvalidDataplaneListsEveryCauseAndStoresNothing(t *testing.T) {
	c := start(t, "standalone", "")
	c.must("PUT", "/meshes/default", `{"type":"Mesh","name":"default"}`, 201)
	bad := `{"type":"Dataplane","mesh":"default","name":"bad","networking":{"address":"10.0.0.1","inbound":[{"port":0,"tags":{"app":"x"}}]}}`
	r := c.must("PUT", "/meshes/default/dataplanes/bad", bad, 400)
	t.Logf("400 body: %s", r.raw)
	cs := causes(r)
	if cs["networking.inbound[0].port"] == "" || cs[`networking.inbound[0].tags["weft.io/service"]`] == "" || len(cs) != 2 {
		t.Fatalf("causes: %v (%s)", cs, r.raw)
	}
	c.must("GET", "/meshes/default/dataplanes/bad", "", 404)

	for name, tc := range map[string]struct{ path, body, field string }{
		"unknown field": {"/meshes/default/dataplanes/x", `{"type":"Dataplane","networkin":{}}`, ""},
		"type mismatch": {"/meshes/default/dataplanes/x", `{"type":"Mesh"}`, "type"},
		"name mismatch": {"/meshes/default/dataplanes/x", strings.Replace(dp, "web-1", "other", 1), "name"},
		"unknown mesh":  {"/meshes/nope/dataplanes/web-1", strings.Replace(dp, `"default"`, `"nope"`, 1), "mesh"},
		"not json":      {"/meshes/default/dataplanes/x", `{{{`, ""},
		"bad mesh name": {"/meshes/Bad_Mesh", `{"type":"Mesh"}`, "name"},
		"bad validFor":  {"/tokens/dataplane", `{"mesh":"default","name":"x","validFor":"forever"}`, "validFor"},
		"bad offset":    {"/meshes/default/dataplanes?offset=%25%25", "", "offset"},
		"page size":     {"/meshes/default/dataplanes?size=5000", "", "size"},
	} {
		method := "PUT"
		if strings.HasPrefix(tc.path, "/tokens") {
			method = "POST"
		}
		if tc.body == "" {
			method = "GET"
		}
		r := c.do(method, tc.path, c.admin, tc.body)
		if r.code != 400 {
			t.Errorf("%s: got %d, want 400: %s", name, r.code, r.raw)
			continue
		}
		if tc.field != "" && causes(r)[tc.field] == "" {
			t.Errorf("%s: no cause for %q: %s", name, tc.field, r.raw)
		}
	}
}

func TestPagination(t *testing.T) {
	c := start(t, "standalone", "")
	c.must("PUT", "/meshes/default", `{"type":"Mesh"}`, 201)
	for i := 0; i < 7; i++ {
		c.must("PUT", fmt.Sprintf("/meshes/default/dataplanes/dp-%d", i), strings.Replace(dp, `"name":"web-1",`, "", 1), 201)
	}
	seen := 0
	path := "/meshes/default/dataplanes?size=3"
	for pages := 0; path != ""; pages++ {
		r := c.must("GET", path, "", 200)
		if r.body["total"].(float64) != 7 {
			t.Fatalf("total: %s", r.raw)
		}
		seen += len(r.body["items"].([]any))
		// Like Kuma: the next page's full URL, or null on the last page.
		next, ok := r.body["next"].(string)
		if !ok {
			if r.body["next"] != nil {
				t.Fatalf("next is neither a URL nor null: %s", r.raw)
			}
			break
		}
		if !strings.HasPrefix(next, c.base+"/meshes/default/dataplanes?") {
			t.Fatalf("next %q is not a full URL on %s", next, c.base)
		}
		path = strings.TrimPrefix(next, c.base)
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
	}
	if seen != 7 {
		t.Fatalf("saw %d of 7", seen)
	}
}

// A REST body in Kuma's shapes is stored in Weft's canonical form; one
// that does not decode gets every problem with its field path and line.
func TestKumaShapesAndDecodeCauses(t *testing.T) {
	c := start(t, "standalone", "")
	c.must("PUT", "/meshes/default", `{"type":"Mesh","mtls":{"enabledBackend":"ca-1","backends":[{"name":"ca-1","type":"builtin","conf":{"caCert":{"RSAbits":2048}}}]}}`, 201)
	mesh := c.must("GET", "/meshes/default", "", 200)
	// protojson spaces its output at random: compare without spaces.
	if raw := strings.ReplaceAll(mesh.raw, " ", ""); !strings.Contains(raw, `"builtin":{"caCert":{"keyType":"rsa","rsaBits":2048}}`) || strings.Contains(raw, "conf") {
		t.Fatalf("mesh not canonical: %s", mesh.raw)
	}
	route := `{"type":"TrafficRoute","sources":[{"match":{"weft.io/service":"web"}}],"destinations":[{"match":{"weft.io/service":"api"}}],` +
		`"conf":[{"weight":100,"destination":{"weft.io/service":"api"}}]}`
	c.must("PUT", "/meshes/default/traffic-routes/r", route, 201)
	got := c.must("GET", "/meshes/default/traffic-routes/r", "", 200)
	if !strings.Contains(strings.ReplaceAll(got.raw, " ", ""), `"conf":{"split":[{"weight":100`) {
		t.Fatalf("route not canonical: %s", got.raw)
	}

	bad := "{\n  \"type\": \"Dataplane\",\n  \"networking\": {\n    \"address\": 10,\n    \"bogus\": 1\n  }\n}"
	r := c.do("PUT", "/meshes/default/dataplanes/d", c.admin, bad)
	if r.code != 400 {
		t.Fatalf("got %d: %s", r.code, r.raw)
	}
	want := map[string]float64{"networking.address": 4, "networking.bogus": 5}
	list, _ := r.body["causes"].([]any)
	if len(list) != len(want) {
		t.Fatalf("causes: %s", r.raw)
	}
	for _, it := range list {
		m := it.(map[string]any)
		if line, _ := m["line"].(float64); line != want[m["field"].(string)] || strings.HasPrefix(m["message"].(string), "line ") {
			t.Errorf("cause %v: want line %v", m, want[m["field"].(string)])
		}
	}
}

// Kuma's path for zone ingresses, /zone-ingresses, is an alias of
// /zoneingresses.
func TestZoneIngressesAlias(t *testing.T) {
	c := start(t, "standalone", "")
	zi := `{"type":"ZoneIngress","networking":{"address":"10.0.0.9","port":10001}}`
	c.must("PUT", "/zone-ingresses/zi-1", zi, 201)
	got := c.must("GET", "/zoneingresses/zi-1", "", 200)
	if got.body["name"] != "zi-1" {
		t.Fatalf("get: %s", got.raw)
	}
	list := c.must("GET", "/zone-ingresses", "", 200)
	if list.body["total"].(float64) != 1 || list.body["next"] != nil {
		t.Fatalf("list: %s", list.raw)
	}
	c.must("DELETE", "/zone-ingresses/zi-1", "", 200)
	if r := c.do("GET", "/zoneingresses/zi-1", c.admin, ""); r.code != 404 {
		t.Fatalf("after delete: %d %s", r.code, r.raw)
	}
}

func TestRoles(t *testing.T) {
	c := start(t, "standalone", "")
	c.must("PUT", "/meshes/default", `{"type":"Mesh"}`, 201)
	user := c.must("POST", "/tokens/user", `{"name":"viewer","validFor":"1h"}`, 200).body["token"].(string)
	if r := c.do("GET", "/meshes", user, ""); r.code != 200 {
		t.Fatalf("viewer read: %d", r.code)
	}
	if r := c.do("PUT", "/meshes/other", user, `{"type":"Mesh"}`); r.code != 403 {
		t.Fatalf("viewer write: %d %s", r.code, r.raw)
	}
	if r := c.do("GET", "/meshes/default/secrets", user, ""); r.code != 403 {
		t.Fatalf("viewer secrets: %d", r.code)
	}
	if r := c.do("POST", "/tokens/user", user, `{"name":"x"}`); r.code != 403 {
		t.Fatalf("viewer token: %d", r.code)
	}
	dpTok := c.must("POST", "/tokens/dataplane", `{"mesh":"default","name":"web-1","services":["web"]}`, 200).body["token"].(string)
	if r := c.do("PUT", "/meshes/default/dataplanes/web-1", dpTok, dp); r.code != 201 {
		t.Fatalf("dataplane registers itself: %d %s", r.code, r.raw)
	}
	if r := c.do("PUT", "/meshes/default/dataplanes/web-2", dpTok, strings.Replace(dp, "web-1", "web-2", 1)); r.code != 403 {
		t.Fatalf("dataplane writes another: %d", r.code)
	}
	if r := c.do("GET", "/meshes", dpTok, ""); r.code != 403 {
		t.Fatalf("dataplane lists meshes: %d", r.code)
	}
	// The token signing key never leaves the control plane.
	if r := c.must("GET", "/global-secrets", "", 200); strings.Contains(r.raw, token.SigningKeySecret) {
		t.Fatalf("signing key listed: %s", r.raw)
	}
	c.must("GET", "/global-secrets/"+token.SigningKeySecret, "", 404)
	c.must("PUT", "/global-secrets/"+token.SigningKeySecret, `{"type":"GlobalSecret","data":"eA=="}`, 403)
	// Secrets are readable by admins, in the clear only through the API.
	c.must("PUT", "/meshes/default/secrets/s1", `{"type":"Secret","data":"aGVsbG8="}`, 201)
	if r := c.must("GET", "/meshes/default/secrets/s1", "", 200); r.body["data"] != "aGVsbG8=" {
		t.Fatalf("secret: %s", r.raw)
	}
	// System types are read-only.
	c.must("PUT", "/meshes/default/vips/web", `{"type":"VirtualIP","service":"web","ip":"240.0.0.1"}`, 405)
}

func TestOwnershipByMode(t *testing.T) {
	zone := start(t, "zone", "zone-1")
	r := zone.must("PUT", "/meshes/default", `{"type":"Mesh"}`, 405)
	if !strings.Contains(r.body["details"].(string), "global") {
		t.Fatalf("405 should name the global control plane: %s", r.raw)
	}
	zone.must("PUT", "/meshes/default/traffic-permissions/x", `{"type":"TrafficPermission"}`, 405)
	zone.must("POST", "/tokens/zone", `{"zone":"zone-2"}`, 405)
	// Ingress tokens: the zone's own control plane, for its own zone.
	if r := zone.must("POST", "/tokens/ingress", `{"zone":"zone-1","name":"ingress"}`, 200); r.body["token"] == "" {
		t.Fatalf("ingress token: %s", r.raw)
	}
	zone.must("POST", "/tokens/ingress", `{"zone":"zone-1"}`, 200) // name defaults to "ingress"
	zone.must("POST", "/tokens/ingress", `{"zone":"zone-2","name":"ingress"}`, 400)
	zone.must("POST", "/tokens/ingress", `{"zone":"Zone_1"}`, 400)
	if r := zone.do("POST", "/tokens/ingress", "", `{"zone":"zone-1"}`); r.code != 401 {
		t.Fatalf("ingress token without credentials: %d %s", r.code, r.raw)
	}
	if r := zone.must("GET", "/", "", 200); r.body["zone"] != "zone-1" || r.body["mode"] != "zone" {
		t.Fatalf("index: %s", r.raw)
	}
	global := start(t, "global", "")
	global.must("PUT", "/meshes/default", `{"type":"Mesh"}`, 201)
	global.must("PUT", "/meshes/default/dataplanes/web-1", dp, 405)
	global.must("PUT", "/zones/zone-1", `{"type":"Zone"}`, 201)
	if r := global.must("GET", "/meshes/default", "", 200); r.body["origin"] != "global" {
		t.Fatalf("origin: %s", r.raw)
	}
	global.must("POST", "/tokens/zone", `{"zone":"zone-1","validFor":"1h"}`, 200)
	global.must("POST", "/tokens/ingress", `{"zone":"zone-1"}`, 405)
	ins := global.must("GET", "/zones+insights", "", 200)
	if ins.body["total"].(float64) != 1 {
		t.Fatalf("zones+insights: %s", ins.raw)
	}
}

func TestOpenAPIAndUnknownRoutes(t *testing.T) {
	c := start(t, "standalone", "")
	r := c.do("GET", "/openapi.json", "", "")
	if r.code != 200 || r.body["openapi"] != "3.1.0" || r.body["info"].(map[string]any)["title"] != "Weft API" || r.body["info"].(map[string]any)["version"] != app.Version {
		t.Fatalf("openapi: %d %.300s", r.code, r.raw)
	}
	c.must("GET", "/no-such-things", "", 404)
	c.must("GET", "/a/b/c/d/e", "", 404)
	big := `{"type":"Mesh","pad":"` + strings.Repeat("x", 2<<20) + `"}`
	if r := c.do("PUT", "/meshes/big", c.admin, big); r.code != 413 && r.code != 400 {
		t.Fatalf("oversized body: %d", r.code)
	}
}

func TestGRPCWatch(t *testing.T) {
	c := start(t, "standalone", "")
	conn, err := grpc.NewClient(c.app.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+c.admin), 20*time.Second)
	defer cancel()
	w, err := apiv1.NewResourceServiceClient(conn).Watch(ctx, &apiv1.WatchRequest{Collection: "meshes"})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := w.Recv()
	if err != nil || ev.Kind != apiv1.WatchEvent_SYNC {
		t.Fatalf("first event: %v %v", ev, err)
	}
	c.must("PUT", "/meshes/watched", `{"type":"Mesh"}`, 201)
	ev, err = w.Recv()
	if err != nil || ev.Kind != apiv1.WatchEvent_PUT || ev.Resource.Meta.Name != "watched" {
		t.Fatalf("put event: %v %v", ev, err)
	}
}

func TestProvidedCAIsCheckedDeeply(t *testing.T) {
	c := start(t, "standalone", "")
	c.must("PUT", "/meshes/default", `{"type":"Mesh"}`, 201)
	c.must("PUT", "/meshes/default/secrets/garbage", `{"type":"Secret","data":"bm90IGEgY2VydA=="}`, 201)
	mesh := `{"type":"Mesh","mtls":{"enabledBackend":"ca-1","backends":[{"name":"ca-1","type":"provided","provided":{"cert":{"secret":"garbage"},"key":{"secret":"garbage"}}}]}}`
	r := c.must("PUT", "/meshes/default", mesh, 400)
	cs := causes(r)
	if cs["mtls.backends[0].provided.cert"] == "" {
		t.Fatalf("no cause at mtls.backends[0].provided.cert: %s", r.raw)
	}
	if got := c.must("GET", "/meshes/default", "", 200); strings.Contains(got.raw, "ca-1") {
		t.Fatalf("bad mesh was stored: %s", got.raw)
	}
}

func TestDataplanesWithInsights(t *testing.T) {
	c := start(t, "standalone", "")
	c.must("PUT", "/meshes/default", `{"type":"Mesh"}`, 201)
	c.must("PUT", "/meshes/default/dataplanes/web-1", dp, 201)
	c.must("PUT", "/meshes/default/dataplanes/web-2", strings.Replace(dp, "web-1", "web-2", 1), 201)
	ins := resource.New(resource.DataplaneInsightType, "default", "web-2")
	ins.Spec = &meshv1.DataplaneInsight{Subscriptions: []*meshv1.DiscoverySubscription{{ControlPlaneInstanceId: "xds-7", ProxyKind: "grpc"}}}
	if _, err := c.st.Create(context.Background(), ins); err != nil {
		t.Fatal(err)
	}
	r := c.must("GET", "/meshes/default/dataplanes+insights", "", 200)
	items := r.body["items"].([]any)
	if len(items) != 2 {
		t.Fatalf("items: %s", r.raw)
	}
	if _, has := items[0].(map[string]any)["insight"]; has {
		t.Fatalf("web-1 has no insight but got one: %s", r.raw)
	}
	got, _ := items[1].(map[string]any)["insight"].(map[string]any)
	if got == nil || !strings.Contains(r.raw, `"controlPlaneInstanceId":"xds-7"`) {
		t.Fatalf("web-2's insight missing: %s", r.raw)
	}
	// One item with its insight, in both URL forms.
	for _, path := range []string{"/meshes/default/dataplanes+insights/web-2", "/meshes/default/dataplanes/web-2+insights"} {
		one := c.must("GET", path, "", 200)
		if one.body["name"] != "web-2" || !strings.Contains(one.raw, `"insight":{"type":"DataplaneInsight"`) {
			t.Fatalf("%s: %s", path, one.raw)
		}
	}
	if one := c.must("GET", "/meshes/default/dataplanes/web-1+insights", "", 200); strings.Contains(one.raw, "insight") {
		t.Fatalf("web-1 has no insight: %s", one.raw)
	}
	c.must("GET", "/meshes/default/dataplanes+insights/nope", "", 404)
	if r := c.do("GET", "/meshes/default/dataplanes+insights/web-2", "bad-token", ""); r.code != 401 {
		t.Fatalf("bad token: %d %s", r.code, r.raw)
	}
}

// Zones with insights carry their state, and when offline the reason.
func TestZonesWithInsightsState(t *testing.T) {
	c := start(t, "global", "")
	c.must("PUT", "/zones/east", `{"type":"Zone"}`, 201)
	c.must("PUT", "/zones/west", `{"type":"Zone","enabled":false}`, 201)
	c.must("PUT", "/zones/north", `{"type":"Zone"}`, 201)
	now := resource.Timestamp(time.Now())
	for name, sub := range map[string]*meshv1.ZoneInsight_Subscription{
		"east":  {Id: "1", ConnectTime: now},
		"north": {Id: "2", ConnectTime: now, DisconnectTime: resource.Timestamp(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))},
	} {
		zi := resource.New(resource.ZoneInsightType, "", name)
		zi.Spec = &meshv1.ZoneInsight{Subscriptions: []*meshv1.ZoneInsight_Subscription{sub}}
		if _, err := c.st.Create(context.Background(), zi); err != nil {
			t.Fatal(err)
		}
	}
	r := c.must("GET", "/zones+insights", "", 200)
	want := map[string][2]string{
		"east":  {"online", ""},
		"north": {"offline", "disconnected since 2026-01-02T03:04:05Z"},
		"west":  {"offline", "disabled on global"},
	}
	for _, it := range r.body["items"].([]any) {
		m := it.(map[string]any)
		w := want[m["name"].(string)]
		reason, _ := m["reason"].(string)
		if m["state"] != w[0] || !strings.Contains(reason, w[1]) || (w[1] == "") != (reason == "") {
			t.Errorf("%s: state %v reason %q, want %v %q", m["name"], m["state"], reason, w[0], w[1])
		}
	}
	one := c.must("GET", "/zones/north+insights", "", 200)
	if one.body["state"] != "offline" || !strings.Contains(one.raw, `"insight":{"type":"ZoneInsight"`) {
		t.Fatalf("zones/north+insights: %s", one.raw)
	}
	if one := c.must("GET", "/zones+insights/west", "", 200); one.body["state"] != "offline" {
		t.Fatalf("zones+insights/west: %s", one.raw)
	}
}

// A mesh with online dataplanes is deleted only with force.
func TestMeshDeleteNeedsForceWhileDataplanesOnline(t *testing.T) {
	c := start(t, "standalone", "")
	c.must("PUT", "/meshes/default", `{"type":"Mesh"}`, 201)
	c.must("PUT", "/meshes/default/dataplanes/web-1", dp, 201)
	ins := resource.New(resource.DataplaneInsightType, "default", "web-1")
	ins.Spec = &meshv1.DataplaneInsight{Subscriptions: []*meshv1.DiscoverySubscription{{Id: "s", ConnectTime: resource.Timestamp(time.Now())}}}
	if _, err := c.st.Create(context.Background(), ins); err != nil {
		t.Fatal(err)
	}
	r := c.must("DELETE", "/meshes/default", "", 409)
	if !strings.Contains(r.raw, `has 1 online dataplane(s) (web-1)`) || !strings.Contains(r.raw, "?force=true") {
		t.Fatalf("refusal: %s", r.raw)
	}
	c.must("GET", "/meshes/default/dataplanes/web-1", "", 200)
	c.must("DELETE", "/meshes/default?force=true", "", 200)
	c.must("GET", "/meshes/default", "", 404)
	// Offline dataplanes do not block.
	c.must("PUT", "/meshes/other", `{"type":"Mesh"}`, 201)
	c.must("PUT", "/meshes/other/dataplanes/web-1", strings.Replace(dp, `"default"`, `"other"`, 1), 201)
	c.must("DELETE", "/meshes/other", "", 200)
}

// A selector tag key that no Dataplane has and that looks like a typo of
// one is accepted with a warning (REST: a Warning header).
func TestSelectorTypoWarning(t *testing.T) {
	c := start(t, "standalone", "")
	c.must("PUT", "/meshes/default", `{"type":"Mesh"}`, 201)
	c.must("PUT", "/meshes/default/dataplanes/web-1", strings.Replace(dp, `"weft.io/protocol":"http"`, `"weft.io/protocol":"http","team":"a"`, 1), 201)
	tp := func(key string) string {
		return `{"type":"TrafficPermission","sources":[{"match":{"` + key + `":"web"}}],"destinations":[{"match":{"weft.io/service":"*"}}]}`
	}
	r := c.must("PUT", "/meshes/default/traffic-permissions/typo", tp("weft.io/servce"), 201)
	if len(r.warnings) != 1 || !strings.Contains(r.warnings[0], `sources[0].match[\"weft.io/servce\"]: no dataplane in mesh \"default\" has tag \"weft.io/servce\"`) ||
		!strings.Contains(r.warnings[0], `did you mean \"weft.io/service\"?`) || !strings.HasPrefix(r.warnings[0], `299 - "`) {
		t.Fatalf("warnings: %q", r.warnings)
	}
	c.must("GET", "/meshes/default/traffic-permissions/typo", "", 200) // accepted
	if r := c.must("PUT", "/meshes/default/traffic-permissions/teem", tp("teem"), 201); len(r.warnings) != 1 || !strings.Contains(r.warnings[0], `did you mean \"team\"?`) {
		t.Fatalf("teem: %q", r.warnings)
	}
	for _, key := range []string{"weft.io/service", "team", "datacenter"} {
		if r := c.do("PUT", "/meshes/default/traffic-permissions/ok", c.admin, tp(key)); r.code/100 != 2 || len(r.warnings) != 0 {
			t.Fatalf("%s: %d, unexpected warnings %q", key, r.code, r.warnings)
		}
	}
}

// GET .../dataplanes/{name}/policies lists the policies that apply to it
// and how (as destination, as source, or selected).
func TestDataplanePolicies(t *testing.T) {
	c := start(t, "standalone", "")
	c.must("PUT", "/meshes/default", `{"type":"Mesh"}`, 201)
	c.must("PUT", "/meshes/default/dataplanes/web-1", dp, 201)
	c.must("PUT", "/meshes/default/traffic-permissions/to-web", `{"type":"TrafficPermission","sources":[{"match":{"weft.io/service":"api"}}],"destinations":[{"match":{"weft.io/service":"web"}}]}`, 201)
	c.must("PUT", "/meshes/default/timeouts/from-any", `{"type":"Timeout","sources":[{"match":{"weft.io/service":"*"}}],"destinations":[{"match":{"weft.io/service":"db"}}],"conf":{"connectTimeout":"1s"}}`, 201)
	c.must("PUT", "/meshes/default/traffic-traces/web", `{"type":"TrafficTrace","selectors":[{"match":{"weft.io/service":"web"}}]}`, 201)
	c.must("PUT", "/meshes/default/traffic-traces/other", `{"type":"TrafficTrace","selectors":[{"match":{"weft.io/service":"other"}}]}`, 201)
	r := c.must("GET", "/meshes/default/dataplanes/web-1/policies", "", 200)
	var got struct {
		Total    int
		Policies []struct{ Type, Name, Role, Service string }
	}
	if err := json.Unmarshal([]byte(r.raw), &got); err != nil {
		t.Fatal(err)
	}
	want := []string{"Timeout/from-any/source/web", "TrafficPermission/to-web/destination/web", "TrafficTrace/web/selected/web"}
	var have []string
	for _, p := range got.Policies {
		have = append(have, p.Type+"/"+p.Name+"/"+p.Role+"/"+p.Service)
	}
	if got.Total != 3 || strings.Join(have, " ") != strings.Join(want, " ") {
		t.Fatalf("policies = %v (total %d), want %v\n%s", have, got.Total, want, r.raw)
	}
	c.must("GET", "/meshes/default/dataplanes/nope/policies", "", 404)
	if r := c.do("GET", "/meshes/default/dataplanes/web-1/policies", "", ""); r.code != 401 {
		t.Fatalf("no token: %d", r.code)
	}
}

// A zone control plane shows its own link to global.
func TestGlobalInsight(t *testing.T) {
	c := start(t, "zone", "zone-1")
	r := c.must("GET", "/global-insight", "", 200)
	if r.body["zone"] != "zone-1" || r.body["state"] != "offline" || !strings.Contains(r.body["reason"].(string), "never connected") {
		t.Fatalf("no link yet: %s", r.raw)
	}
	zi := resource.New(resource.ZoneInsightType, "", "zone-1")
	zi.Spec = &meshv1.ZoneInsight{Subscriptions: []*meshv1.ZoneInsight_Subscription{{Id: "s1", GlobalInstanceId: "g-1", ConnectTime: resource.Timestamp(time.Now())}}}
	if _, err := c.st.Create(context.Background(), zi); err != nil {
		t.Fatal(err)
	}
	r = c.must("GET", "/global-insight", "", 200)
	if r.body["state"] != "online" || r.body["reason"] != nil || !strings.Contains(r.raw, `"globalInstanceId":"g-1"`) {
		t.Fatalf("linked: %s", r.raw)
	}
	if r := c.do("GET", "/global-insight", "", ""); r.code != 401 {
		t.Fatalf("no token: %d", r.code)
	}
	s := start(t, "standalone", "")
	if r := s.must("GET", "/global-insight", "", 404); !strings.Contains(r.raw, "only a zone control plane") {
		t.Fatalf("standalone: %s", r.raw)
	}
}
