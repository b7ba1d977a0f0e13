package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	"github.com/weftmesh/weft/weftctl/internal/apitest"
	"github.com/weftmesh/weft/weftctl/internal/client"
)

const token = "admin-token"

func mustDecode(t *testing.T, doc string) *resource.Resource {
	t.Helper()
	r, err := resource.Unmarshal([]byte(doc), nil)
	if err != nil {
		t.Fatalf("decode %q: %v", doc, err)
	}
	return r
}

func dataplane(t *testing.T, mesh, name, service string, port int) *resource.Resource {
	return mustDecode(t, fmt.Sprintf(`{"type":"Dataplane","mesh":%q,"name":%q,"networking":{"address":"10.0.0.1","inbound":[{"port":%d,"tags":{"weft.io/service":%q}}]}}`, mesh, name, port, service))
}

func mesh(t *testing.T, name string) *resource.Resource {
	return mustDecode(t, fmt.Sprintf(`{"type":"Mesh","name":%q}`, name))
}

func newClient(t *testing.T, srv *apitest.Server, tok string) *client.Client {
	t.Helper()
	c, err := client.New(srv.URL, tok)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewRejectsBadAddresses(t *testing.T) {
	for _, addr := range []string{"", "127.0.0.1:5681", "ftp://x", "http://", "::"} {
		if _, err := client.New(addr, ""); err == nil {
			t.Errorf("New(%q) succeeded", addr)
		}
	}
}

func TestIndexAndAuth(t *testing.T) {
	srv := apitest.Start(t, token)
	ctx := context.Background()
	tests := []struct {
		name    string
		token   string
		wantErr func(error) bool
	}{
		{"with token", token, nil},
		{"without token", "", client.IsUnauthorized},
		{"wrong token", "nope", client.IsUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			idx, err := newClient(t, srv, tc.token).Index(ctx)
			if tc.wantErr != nil {
				if !tc.wantErr(err) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if idx.Product != "Weft" || idx.Mode != "standalone" || idx.InstanceID != "cp-1" {
				t.Fatalf("index = %+v", idx)
			}
		})
	}
	last := srv.Requests()[0]
	if last.Auth != "Bearer "+token || last.Path != "/" {
		t.Fatalf("first request = %+v", last)
	}
}

func TestPutGetDelete(t *testing.T) {
	srv := apitest.Start(t, token)
	c := newClient(t, srv, token)
	ctx := context.Background()

	res, err := c.Put(ctx, mesh(t, "default"))
	if err != nil || res != client.Created {
		t.Fatalf("put mesh: %v %v", res, err)
	}
	dp := dataplane(t, "default", "web-1", "web", 8080)
	if res, err := c.Put(ctx, dp); err != nil || res != client.Created {
		t.Fatalf("put dp: %v %v", res, err)
	}
	if res, err := c.Put(ctx, dp); err != nil || res != client.Updated {
		t.Fatalf("put dp again: %v %v", res, err)
	}
	got, err := c.Get(ctx, resource.DataplaneType, "default", "web-1")
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got.Spec, dp.Spec) {
		t.Fatalf("spec = %v, want %v", got.Spec, dp.Spec)
	}
	if got.Meta.GetVersion() == 0 || got.Meta.GetCreationTime() == nil || got.Meta.GetModificationTime() == nil {
		t.Fatalf("metadata missing: %v", got.Meta)
	}
	if !strings.Contains(string(got.Raw), `"creationTime"`) {
		t.Fatalf("raw = %s", got.Raw)
	}
	if err := c.Delete(ctx, resource.DataplaneType, "default", "web-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, resource.DataplaneType, "default", "web-1"); !client.IsNotFound(err) {
		t.Fatalf("get after delete: %v", err)
	}
	if err := c.Delete(ctx, resource.DataplaneType, "default", "web-1"); !client.IsNotFound(err) {
		t.Fatalf("delete twice: %v", err)
	}
	wantPaths := map[string]bool{"/meshes/default": true, "/meshes/default/dataplanes/web-1": true}
	for _, r := range srv.Requests() {
		if !wantPaths[r.Path] {
			t.Errorf("unexpected path %s %s", r.Method, r.Path)
		}
	}
}

func TestErrors(t *testing.T) {
	srv := apitest.Start(t, token)
	c := newClient(t, srv, token)
	ctx := context.Background()
	if _, err := c.Put(ctx, mesh(t, "default")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, dataplane(t, "default", "web-1", "web", 8080)); err != nil {
		t.Fatal(err)
	}
	stale := dataplane(t, "default", "web-1", "web", 8081)
	stale.Meta.Version = 1 // the mesh's revision, not the dataplane's

	tests := []struct {
		name       string
		call       func() error
		status     int
		is         func(error) bool
		wantCauses []string
	}{
		{
			name: "validation lists every cause",
			call: func() error {
				_, err := c.Put(ctx, mustDecode(t, `{"type":"Dataplane","mesh":"default","name":"bad","networking":{"address":"10.0.0.1","inbound":[{"port":0}]}}`))
				return err
			},
			status:     400,
			is:         client.IsBadRequest,
			wantCauses: []string{"networking.inbound[0].port", `networking.inbound[0].tags["weft.io/service"]`},
		},
		{
			name: "unknown mesh",
			call: func() error {
				_, err := c.Put(ctx, dataplane(t, "nope", "web-1", "web", 8080))
				return err
			},
			status: 400, is: client.IsBadRequest, wantCauses: []string{"mesh"},
		},
		{
			name:   "stale version",
			call:   func() error { _, err := c.Put(ctx, stale); return err },
			status: 409, is: client.IsConflict,
		},
		{
			name:   "not found",
			call:   func() error { _, err := c.Get(ctx, resource.MeshType, "", "nope"); return err },
			status: 404, is: client.IsNotFound,
		},
		{
			name: "unauthorized",
			call: func() error {
				_, err := newClient(t, srv, "").List(ctx, resource.MeshType, "", client.ListOptions{})
				return err
			},
			status: 401, is: client.IsUnauthorized,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var ae *client.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v (%T), want *APIError", err, err)
			}
			if ae.StatusCode != tc.status || !tc.is(err) {
				t.Fatalf("status = %d, want %d (%v)", ae.StatusCode, tc.status, err)
			}
			if ae.Title == "" {
				t.Fatalf("no title: %+v", ae)
			}
			var fields []string
			for _, c := range ae.Causes {
				fields = append(fields, c.Field)
			}
			for _, want := range tc.wantCauses {
				found := false
				for _, f := range fields {
					found = found || f == want
				}
				if !found {
					t.Errorf("causes %v lack %q", fields, want)
				}
			}
		})
	}
	// Nothing invalid was stored.
	if srv.Lookup(resource.DataplaneType, "default", "bad") != nil || srv.Len() != 2 {
		t.Fatalf("store changed: %d objects", srv.Len())
	}
}

func TestIdentityChecksBeforeSending(t *testing.T) {
	srv := apitest.Start(t, token)
	c := newClient(t, srv, token)
	ctx := context.Background()
	if _, err := c.Get(ctx, resource.DataplaneType, "", "x"); err == nil {
		t.Error("mesh-scoped get without mesh succeeded")
	}
	if _, err := c.Get(ctx, resource.ZoneType, "m", "x"); err == nil {
		t.Error("global get with mesh succeeded")
	}
	if err := c.Delete(ctx, resource.MeshType, "", ""); err == nil {
		t.Error("delete without name succeeded")
	}
	if _, err := c.List(ctx, resource.ZoneType, "m", client.ListOptions{}); err == nil {
		t.Error("list of a global type in a mesh succeeded")
	}
	if n := len(srv.Requests()); n != 0 {
		t.Fatalf("%d requests sent", n)
	}
}

func TestListPaging(t *testing.T) {
	srv := apitest.Start(t, token)
	c := newClient(t, srv, token)
	ctx := context.Background()
	for _, m := range []string{"a", "b"} {
		srv.Put(mesh(t, m))
		for i := range 5 {
			srv.Put(dataplane(t, m, fmt.Sprintf("dp-%d", i), "web", 8080+i))
		}
	}
	tests := []struct {
		name      string
		mesh      string
		size      int
		want      int
		wantPages int
	}{
		{"one mesh, pages of 2", "a", 2, 5, 3},
		{"one mesh, one page", "a", 1000, 5, 1},
		{"across meshes, pages of 3", "", 3, 10, 4},
		{"exact multiple", "b", 5, 5, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(srv.Requests())
			objs, err := c.ListAll(ctx, resource.DataplaneType, tc.mesh, tc.size)
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) != tc.want {
				t.Fatalf("got %d objects, want %d", len(objs), tc.want)
			}
			seen := map[string]bool{}
			for _, o := range objs {
				if seen[o.Key()] {
					t.Fatalf("duplicate %s", o.Key())
				}
				seen[o.Key()] = true
				if tc.mesh != "" && o.Meta.GetMesh() != tc.mesh {
					t.Fatalf("object from mesh %s", o.Meta.GetMesh())
				}
			}
			reqs := srv.Requests()[before:]
			if len(reqs) != tc.wantPages {
				t.Fatalf("%d requests, want %d", len(reqs), tc.wantPages)
			}
			for _, r := range reqs {
				if r.Query.Get("size") != fmt.Sprint(tc.size) {
					t.Fatalf("size = %q", r.Query.Get("size"))
				}
			}
		})
	}
	page, err := c.List(ctx, resource.DataplaneType, "a", client.ListOptions{Size: 2})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != 5 || len(page.Items) != 2 || page.NextOffset == "" {
		t.Fatalf("page = total %d, %d items, next %q", page.Total, len(page.Items), page.NextOffset)
	}
}

// A server sending only "next" URLs (no nextOffset) still pages; one that
// repeats an offset is caught instead of looping forever.
func TestPagingEdgeCases(t *testing.T) {
	item := func(i int) string { return fmt.Sprintf(`{"type":"Mesh","name":"m%d"}`, i) }
	tests := []struct {
		name    string
		pages   map[string]string // offset -> body
		want    int
		wantErr string
	}{
		{
			name: "next URL only",
			pages: map[string]string{
				"":   `{"total":3,"items":[` + item(1) + `,` + item(2) + `],"next":"http://elsewhere:1/meshes?offset=t2&size=2"}`,
				"t2": `{"total":3,"items":[` + item(3) + `],"next":null}`,
			},
			want: 3,
		},
		{
			name: "repeated offset",
			pages: map[string]string{
				"":  `{"total":3,"items":[` + item(1) + `],"nextOffset":"x"}`,
				"x": `{"total":3,"items":[` + item(2) + `],"nextOffset":"x"}`,
			},
			wantErr: "repeated page offset",
		},
		{
			name:    "bad item",
			pages:   map[string]string{"": `{"total":1,"items":[{"type":"Mesh"}]}`},
			wantErr: "no name",
		},
		{
			name:    "not JSON",
			pages:   map[string]string{"": `<html>`},
			wantErr: "not the expected JSON",
		},
		{
			name: "unknown type and unknown fields still list",
			pages: map[string]string{"": `{"total":2,"items":[{"type":"Gizmo","name":"g"},` +
				`{"type":"Mesh","name":"m","futureField":{"x":1},"mtls":{"enabledBackend":"ca-1"}}]}`},
			want: 2,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, ok := tc.pages[r.URL.Query().Get("offset")]
				if !ok {
					w.WriteHeader(404)
					return
				}
				w.Write([]byte(body))
			}))
			defer srv.Close()
			c, _ := client.New(srv.URL, "")
			objs, err := c.ListAll(context.Background(), resource.MeshType, "", 2)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) != tc.want {
				t.Fatalf("got %d objects, want %d", len(objs), tc.want)
			}
		})
	}
}

func TestNonJSONErrorBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		w.Write([]byte("<html>\n<body>upstream\tdown</body></html>"))
	}))
	defer srv.Close()
	c, _ := client.New(srv.URL, "")
	_, err := c.Index(context.Background())
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.StatusCode != 502 || ae.Title != "Bad Gateway" || !strings.Contains(ae.Details, "upstream down") {
		t.Fatalf("err = %#v", err)
	}
}

func TestTransportError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close()
	c, _ := client.New(addr, "")
	_, err := c.Index(context.Background())
	var te *client.TransportError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v (%T)", err, err)
	}
	if strings.Count(err.Error(), addr) != 1 {
		t.Fatalf("URL repeated or missing: %v", err)
	}
}

func TestResponseSizeLimit(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 1<<20)
		for i := range chunk {
			chunk[i] = ' '
		}
		for range client.MaxResponseSize>>20 + 2 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	c, _ := client.New(srv.URL, "")
	_, err := c.Index(context.Background())
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v", err)
	}
}

func TestBaseURLWithPathPrefix(t *testing.T) {
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.EscapedPath())
		w.Write([]byte(`{"type":"Dataplane","mesh":"default","name":"a b"}`))
	}))
	defer srv.Close()
	c, _ := client.New(srv.URL+"/weft/", "")
	if _, err := c.Get(context.Background(), resource.DataplaneType, "default", "a b"); err != nil {
		t.Fatal(err)
	}
	if len(paths) != 1 || paths[0] != "/weft/meshes/default/dataplanes/a%20b" {
		t.Fatalf("paths = %v", paths)
	}
}

func TestInsights(t *testing.T) {
	srv := apitest.Start(t, token)
	c := newClient(t, srv, token)
	ctx := context.Background()
	srv.Put(mesh(t, "default"))
	srv.Put(dataplane(t, "default", "online", "web", 8080))
	srv.Put(dataplane(t, "default", "offline", "web", 8081))
	srv.Put(mustDecode(t, `{"type":"Zone","name":"east"}`))
	// One insight as a bare spec, one as a flat resource with fields this
	// client does not know.
	srv.SetInsight(resource.DataplaneType, "default", "online",
		`{"subscriptions":[{"id":"s1","controlPlaneInstanceId":"xds-1","connectTime":"2026-01-01T00:00:00Z"}],"mtls":{"certificateExpirationTime":"2026-02-01T00:00:00Z"}}`)
	srv.SetInsight(resource.ZoneType, "", "east",
		`{"type":"ZoneInsight","name":"east","newThing":1,"subscriptions":[{"globalInstanceId":"g-1","connectTime":"2026-01-01T00:00:00Z"}]}`)

	dps, err := c.ListDataplaneInsights(ctx, "default", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(dps) != 2 {
		t.Fatalf("got %d", len(dps))
	}
	byName := map[string]*client.InsightObject{}
	for _, d := range dps {
		byName[d.Meta.GetName()] = d
		if strings.Contains(string(d.Raw), "insight") {
			t.Errorf("raw keeps the insight: %s", d.Raw)
		}
	}
	if byName["offline"].Insight != nil {
		t.Errorf("offline insight = %s", byName["offline"].Insight)
	}
	ins := &meshv1.DataplaneInsight{}
	if err := client.DecodeInsight(byName["online"].Insight, ins); err != nil {
		t.Fatal(err)
	}
	if ins.GetSubscriptions()[0].GetControlPlaneInstanceId() != "xds-1" ||
		!ins.GetMtls().GetCertificateExpirationTime().AsTime().Equal(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("insight = %v", ins)
	}
	zones, err := c.ListZoneInsights(ctx, 0)
	if err != nil || len(zones) != 1 {
		t.Fatalf("zones: %v %v", zones, err)
	}
	zi := &meshv1.ZoneInsight{}
	if err := client.DecodeInsight(zones[0].Insight, zi); err != nil {
		t.Fatal(err)
	}
	if zi.GetSubscriptions()[0].GetGlobalInstanceId() != "g-1" {
		t.Fatalf("zone insight = %v", zi)
	}
	if _, err := c.ListDataplaneInsights(ctx, "", 0); err == nil {
		t.Fatal("insights without mesh succeeded")
	}
}

func TestTokens(t *testing.T) {
	srv := apitest.Start(t, token)
	c := newClient(t, srv, token)
	ctx := context.Background()
	dp, err := c.GenerateDataplaneToken(ctx, client.DataplaneTokenRequest{Mesh: "default", Name: "web-1", Tags: map[string]string{"k": "v"}, ValidFor: "30d"})
	if err != nil {
		t.Fatal(err)
	}
	if dp.Token != "tok.dataplane.default/web-1" || dp.Expires.IsZero() {
		t.Fatalf("token = %+v", dp)
	}
	if _, err := c.GenerateZoneToken(ctx, client.ZoneTokenRequest{Zone: "east"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GenerateUserToken(ctx, client.UserTokenRequest{Name: "alice", Groups: []string{"admins"}, ValidFor: "1h"}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GenerateDataplaneToken(ctx, client.DataplaneTokenRequest{Mesh: "default"})
	if !client.IsBadRequest(err) {
		t.Fatalf("err = %v", err)
	}
	calls := srv.TokenCalls()
	if len(calls) != 4 {
		t.Fatalf("calls = %v", calls)
	}
	if calls[0].Body["validFor"] != "30d" || calls[0].Body["tags"].(map[string]any)["k"] != "v" {
		t.Fatalf("dataplane body = %v", calls[0].Body)
	}
	if _, ok := calls[1].Body["validFor"]; ok {
		t.Fatalf("empty validFor sent: %v", calls[1].Body)
	}
	if g := calls[2].Body["groups"].([]any); len(g) != 1 || g[0] != "admins" {
		t.Fatalf("user body = %v", calls[2].Body)
	}
}

func TestAPIErrorString(t *testing.T) {
	e := client.ParseError(400, []byte(`{"title":"Invalid resource","details":"bad","causes":[{"field":"a.b","message":"must be set"},{"field":"","message":"whole"}]}`))
	if got, want := e.Error(), "Invalid resource: bad; a.b: must be set; whole"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	g := client.ParseError(404, []byte(`{"code":5,"message":"not found"}`))
	if g.Title != "Not Found" || g.Details != "not found" {
		t.Fatalf("gateway shape = %+v", g)
	}
}

// Warning headers of a response reach the WithWarnings callback as text,
// control characters dropped.
func TestWarnings(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Warning", `299 - "sources[0].match[\"weft.io/servce\"]: did you mean \"weft.io/service\"?"`)
		w.Header().Add("Warning", "plain\tred")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"type":"Mesh","name":"default"}`))
	}))
	defer srv.Close()
	var got []string
	c, err := client.New(srv.URL, "t", client.WithWarnings(func(s string) { got = append(got, s) }))
	if err != nil {
		t.Fatal(err)
	}
	m := resource.New(resource.MeshType, "", "default")
	m.Spec = &meshv1.Mesh{}
	if _, err := c.Put(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	want := []string{`sources[0].match["weft.io/servce"]: did you mean "weft.io/service"?`, "plainred"}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("warnings = %q, want %q", got, want)
	}
}
