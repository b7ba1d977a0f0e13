package cmd_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	"github.com/weftmesh/weft/weftctl/internal/apitest"
	"github.com/weftmesh/weft/weftctl/internal/cmd"
	"github.com/weftmesh/weft/weftctl/internal/config"
)

const token = "admin-token"

// now is the CLI's clock; the fixture stamps resources one hour earlier.
var now = time.Date(2026, 1, 2, 4, 4, 5, 0, time.UTC)

type result struct {
	code           int
	stdout, stderr string
}

// harness runs weftctl in-process with its own environment and config file.
type harness struct {
	t    *testing.T
	srv  *apitest.Server
	env  map[string]string
	conf string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	srv := apitest.Start(t, token)
	conf := filepath.Join(t.TempDir(), "weftctl.yaml")
	return &harness{t: t, srv: srv, conf: conf, env: map[string]string{
		"WEFT_CP":        srv.URL,
		"WEFT_TOKEN":     token,
		"WEFTCTL_CONFIG": conf,
		"HOME":           "/nonexistent",
	}}
}

func (h *harness) run(stdin string, args ...string) result {
	h.t.Helper()
	var out, errb bytes.Buffer
	a := cmd.New(strings.NewReader(stdin), &out, &errb)
	a.Getenv = func(k string) string { return h.env[k] }
	a.Now = func() time.Time { return now }
	code := a.Run(context.Background(), args)
	return result{code, out.String(), errb.String()}
}

// ok runs and fails the test on a non-zero exit.
func (h *harness) ok(stdin string, args ...string) result {
	h.t.Helper()
	r := h.run(stdin, args...)
	if r.code != 0 {
		h.t.Fatalf("weftctl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

func (h *harness) writeFile(name, content string) string {
	h.t.Helper()
	p := filepath.Join(h.t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		h.t.Fatal(err)
	}
	return p
}

func lines(s string) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func fields(line string) []string { return strings.Fields(line) }

// Meshes come first whatever the file order, so the dataplane's mesh exists.
const manifest = `
type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    tags:
      weft.io/service: web
---
# a comment-only document is skipped
---
type: TrafficPermission
mesh: default
name: allow-all
sources:
- match:
    weft.io/service: '*'
destinations:
- match:
    weft.io/service: '*'
---
type: Mesh
name: default
`

func TestApplyCreatesUpdatesAndReportsUnchanged(t *testing.T) {
	h := newHarness(t)
	f := h.writeFile("m.yaml", manifest)

	r := h.ok("", "apply", "-f", f)
	want := []string{"created Mesh default", "created Dataplane default/web-1", "created TrafficPermission default/allow-all"}
	if got := lines(r.stdout); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("first apply:\n%s\nwant:\n%s", r.stdout, strings.Join(want, "\n"))
	}

	r = h.ok("", "apply", "-f", f)
	for _, l := range lines(r.stdout) {
		if !strings.HasPrefix(l, "unchanged ") {
			t.Fatalf("second apply: %q", r.stdout)
		}
	}

	changed := strings.Replace(manifest, "port: 8080", "port: 8081", 1)
	r = h.ok(changed, "apply", "-f", "-")
	if !strings.Contains(r.stdout, "updated Dataplane default/web-1") || !strings.Contains(r.stdout, "unchanged Mesh default") {
		t.Fatalf("third apply:\n%s", r.stdout)
	}
	dp := h.srv.Lookup(resource.DataplaneType, "default", "web-1")
	if dp == nil || !strings.Contains(fmt.Sprint(dp.Spec), "8081") {
		t.Fatalf("stored = %v", dp)
	}
}

func TestApplyJSONArrayAndDirectory(t *testing.T) {
	h := newHarness(t)
	r := h.ok(`[{"type":"Mesh","name":"m1"},{"type":"Zone","name":"east"}]`, "apply", "-f", "-")
	if lines(r.stdout)[1] != "created Zone east" {
		t.Fatalf("stdout = %q", r.stdout)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("type: Mesh\nname: m2\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "b.json"), []byte(`{"type":"Zone","name":"west"}`), 0o600)
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("not a resource"), 0o600)
	r = h.ok("", "apply", "-f", dir)
	if got := lines(r.stdout); len(got) != 2 || got[0] != "created Mesh m2" || got[1] != "created Zone west" {
		t.Fatalf("stdout = %q", r.stdout)
	}
}

func TestApplyInvalidChangesNothing(t *testing.T) {
	tests := []struct {
		name       string
		doc        string
		wantStderr []string
	}{
		{
			name: "port 0 and no service tag: both fields listed",
			doc:  "type: Mesh\nname: default\n---\ntype: Dataplane\nmesh: default\nname: bad\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 0\n",
			wantStderr: []string{"Dataplane default/bad", "networking.inbound[0].port:",
				`networking.inbound[0].tags["weft.io/service"]:`, "Nothing was applied."},
		},
		{
			name:       "undecodable document",
			doc:        "type: Mesh\nname: ok\n---\ntype: Dataplane\nmesh: default\nname: x\nnetworking: {adress: 1}\n",
			wantStderr: []string{"document 2", "adress"},
		},
		{
			name:       "duplicate identity",
			doc:        "type: Mesh\nname: a\n---\ntype: Mesh\nname: a\n",
			wantStderr: []string{"Mesh a appears twice"},
		},
		{
			name:       "system type",
			doc:        "type: VirtualIP\nmesh: default\nname: web\nservice: web\nip: 240.0.0.1\n",
			wantStderr: []string{"written by the control plane"},
		},
		{
			name:       "empty input",
			doc:        "# nothing\n",
			wantStderr: []string{"no resources"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			r := h.run(tc.doc, "apply", "-f", "-")
			if r.code != 1 {
				t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
			}
			for _, w := range tc.wantStderr {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
			if n := len(h.srv.Requests()); n != 0 {
				t.Fatalf("%d requests sent", n)
			}
		})
	}
}

func TestApplyServerErrorsShowCauses(t *testing.T) {
	h := newHarness(t)
	// No mesh "default" on the server: the dataplane is valid locally but
	// the server refuses it; the zone in the same file still goes through.
	r := h.run("type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    tags: {weft.io/service: web}\n---\ntype: Zone\nname: east\n",
		"apply", "-f", "-")
	if r.code != 1 {
		t.Fatalf("exit %d", r.code)
	}
	for _, w := range []string{"apply Dataplane default/web-1 (stdin)", "Invalid resource", `mesh "default" does not exist`, "(HTTP 400)", "  * mesh: ", "1 of 2 resource(s) failed"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
		}
	}
	if r.stdout != "created Zone east\n" {
		t.Fatalf("stdout = %q", r.stdout)
	}

	// A stale version is a conflict.
	h.ok("", "apply", "-f", h.writeFile("z.yaml", "type: Zone\nname: west\n"))
	r = h.run("type: Zone\nname: west\nversion: 1\nenabled: false\n", "apply", "-f", "-")
	if r.code != 1 || !strings.Contains(r.stderr, "Conflict") || !strings.Contains(r.stderr, "HTTP 409") {
		t.Fatalf("stale: exit %d\n%s", r.code, r.stderr)
	}
}

func TestApplyDryRunIsOffline(t *testing.T) {
	h := newHarness(t)
	delete(h.env, "WEFT_CP") // no control plane at all
	r := h.ok(manifest, "apply", "--dry-run", "-f", "-")
	docs := strings.Split(r.stdout, "---\n")
	if len(docs) != 3 || !strings.Contains(docs[0], "type: Mesh") || !strings.Contains(docs[1], "port: 8080") {
		t.Fatalf("stdout:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "3 resource(s) valid; nothing applied (dry run)") {
		t.Fatalf("stderr = %q", r.stderr)
	}
	// The printed YAML is valid input again.
	if _, err := resource.UnmarshalAll(strings.NewReader(r.stdout)); err != nil {
		t.Fatal(err)
	}
	r = h.run("type: Mesh\nname: Bad_Name\n", "apply", "--dry-run", "-f", "-")
	if r.code != 1 || !strings.Contains(r.stderr, "name:") {
		t.Fatalf("invalid dry run: %d %s", r.code, r.stderr)
	}
	if n := len(h.srv.Requests()); n != 0 {
		t.Fatalf("%d requests sent", n)
	}
}

func seed(t *testing.T, h *harness) {
	t.Helper()
	h.ok(manifest, "apply", "-f", "-")
	h.ok("type: Mesh\nname: demo\n---\ntype: Dataplane\nmesh: demo\nname: db-1\nnetworking:\n  address: 10.0.0.9\n  inbound:\n  - port: 5432\n    tags: {weft.io/service: db}\n  - port: 9000\n    tags: {weft.io/service: db-admin}\n",
		"apply", "-f", "-")
}

func TestGetTable(t *testing.T) {
	h := newHarness(t)
	seed(t, h)
	tests := []struct {
		args []string
		want [][]string // fields per line, header first
	}{
		{[]string{"get", "meshes"}, [][]string{
			{"NAME", "MTLS", "METRICS", "LOGGING", "TRACING", "AGE"},
			{"default", "off", "off", "off", "off", "1h"},
			{"demo", "off", "off", "off", "off", "1h"},
		}},
		{[]string{"get", "dataplanes"}, [][]string{
			{"MESH", "NAME", "ADDRESS", "SERVICES", "INBOUNDS", "OUTBOUNDS", "AGE"},
			{"default", "web-1", "10.0.0.1", "web", "1", "0", "1h"},
			{"demo", "db-1", "10.0.0.9", "db,db-admin", "2", "0", "1h"},
		}},
		{[]string{"get", "dp", "-m", "demo", "--page-size", "1"}, [][]string{
			{"MESH", "NAME", "ADDRESS", "SERVICES", "INBOUNDS", "OUTBOUNDS", "AGE"},
			{"demo", "db-1", "10.0.0.9", "db,db-admin", "2", "0", "1h"},
		}},
		{[]string{"get", "dp", "web-1"}, [][]string{
			{"MESH", "NAME", "ADDRESS", "SERVICES", "INBOUNDS", "OUTBOUNDS", "AGE"},
			{"default", "web-1", "10.0.0.1", "web", "1", "0", "1h"},
		}},
		{[]string{"get", "tp"}, [][]string{
			{"MESH", "NAME", "SOURCES", "DESTINATIONS", "AGE"},
			{"default", "allow-all", "*", "*", "1h"},
		}},
		{[]string{"get", "zones"}, [][]string{{"NAME", "ENABLED", "AGE"}}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := h.ok("", tc.args...)
			got := lines(r.stdout)
			if len(got) != len(tc.want) {
				t.Fatalf("got:\n%s", r.stdout)
			}
			for i, l := range got {
				if strings.Join(fields(l), " ") != strings.Join(tc.want[i], " ") {
					t.Fatalf("line %d = %q, want %q\n%s", i, l, tc.want[i], r.stdout)
				}
			}
		})
	}
}

func TestGetPagesThroughEverything(t *testing.T) {
	h := newHarness(t)
	var b strings.Builder
	b.WriteString("type: Mesh\nname: default\n")
	for i := range 25 {
		fmt.Fprintf(&b, "---\ntype: Dataplane\nmesh: default\nname: dp-%02d\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: %d\n    tags: {weft.io/service: s}\n", i, 1000+i)
	}
	h.ok(b.String(), "apply", "-f", "-")
	before := len(h.srv.Requests())
	r := h.ok("", "get", "dataplanes", "--page-size", "10", "-o", "json")
	var list struct {
		Total int               `json:"total"`
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatal(err)
	}
	if list.Total != 25 || len(list.Items) != 25 {
		t.Fatalf("total %d, items %d", list.Total, len(list.Items))
	}
	if n := len(h.srv.Requests()) - before; n != 3 {
		t.Fatalf("%d requests, want 3 pages", n)
	}
}

func TestGetYAMLRoundTripsThroughApply(t *testing.T) {
	h := newHarness(t)
	seed(t, h)
	r := h.ok("", "get", "dataplanes", "-o", "yaml")
	for _, w := range []string{"type: Dataplane", "creationTime:", "modificationTime:", "version:", "weft.io/service: web", "---"} {
		if !strings.Contains(r.stdout, w) {
			t.Fatalf("yaml lacks %q:\n%s", w, r.stdout)
		}
	}
	// Versions in the output make the re-apply conditional and current.
	back := h.ok(r.stdout, "apply", "-f", "-")
	if strings.Count(back.stdout, "unchanged Dataplane") != 2 {
		t.Fatalf("re-apply:\n%s", back.stdout)
	}
	one := h.ok("", "get", "dataplane", "db-1", "--mesh", "demo", "-o", "json")
	var obj map[string]any
	if err := json.Unmarshal([]byte(one.stdout), &obj); err != nil || obj["name"] != "db-1" || obj["creationTime"] == nil {
		t.Fatalf("json = %s (%v)", one.stdout, err)
	}
}

func TestGetErrors(t *testing.T) {
	h := newHarness(t)
	seed(t, h)
	tests := []struct {
		args   []string
		code   int
		stderr []string
	}{
		{[]string{"get", "dp", "nope"}, 1, []string{"get Dataplane default/nope", "Not Found", "HTTP 404"}},
		{[]string{"get", "gizmos"}, 2, []string{`unknown resource type "gizmos"`, "traffic-permissions"}},
		{[]string{"get", "zones", "-m", "default"}, 2, []string{"not mesh-scoped"}},
		{[]string{"get"}, 2, []string{"get needs TYPE"}},
		{[]string{"get", "dp", "a", "b"}, 2, []string{"at most one NAME"}},
		{[]string{"get", "dp", "-o", "xml"}, 2, []string{`unknown output format "xml"`}},
		{[]string{"get", "dp", "--bogus"}, 2, []string{"flag provided but not defined: -bogus"}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := h.run("", tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", r.code, tc.code, r.stderr)
			}
			for _, w := range tc.stderr {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
		})
	}
}

func TestFlagsAfterArgumentsAndDoubleDash(t *testing.T) {
	h := newHarness(t)
	seed(t, h)
	r := h.ok("", "get", "dp", "db-1", "-m", "demo", "-o", "yaml")
	if !strings.Contains(r.stdout, "name: db-1") {
		t.Fatalf("stdout = %s", r.stdout)
	}
	// After "--" a leading dash is a name, not a flag.
	r = h.run("", "get", "meshes", "--", "-odd")
	if r.code != 1 || !strings.Contains(r.stderr, "Not Found") {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	// Global flags before the command name.
	r = h.ok("", "--token", token, "get", "meshes", "-o", "json")
	if !strings.Contains(r.stdout, `"total": 2`) {
		t.Fatalf("stdout = %s", r.stdout)
	}
}

func TestDelete(t *testing.T) {
	h := newHarness(t)
	seed(t, h)
	r := h.ok("", "delete", "dp", "db-1", "-m", "demo")
	if r.stdout != "deleted Dataplane demo/db-1\n" {
		t.Fatalf("stdout = %q", r.stdout)
	}
	r = h.run("", "delete", "dp", "db-1", "-m", "demo")
	if r.code != 1 || !strings.Contains(r.stderr, "HTTP 404") {
		t.Fatalf("second delete: %d %s", r.code, r.stderr)
	}
	if r := h.run("", "delete", "dp", "web-1", "--force"); r.code != 2 || !strings.Contains(r.stderr, "--force applies to meshes only") {
		t.Fatalf("--force on a dataplane: %d %s", r.code, r.stderr)
	}
	// Deleting a mesh deletes what is in it; --force asks the server to do
	// so even while dataplanes are online.
	h.ok("", "delete", "mesh", "demo", "--force")
	if reqs := h.srv.Requests(); reqs[len(reqs)-1].Method != "DELETE" || reqs[len(reqs)-1].Query.Get("force") != "true" {
		t.Fatalf("delete --force sent %+v", reqs[len(reqs)-1])
	}
	h.ok("", "delete", "mesh", "default")
	if reqs := h.srv.Requests(); reqs[len(reqs)-1].Query.Has("force") {
		t.Fatalf("delete without --force sent %+v", reqs[len(reqs)-1])
	}
	if h.srv.Lookup(resource.DataplaneType, "default", "web-1") != nil {
		t.Fatal("dataplane survived its mesh")
	}
	if r := h.run("", "delete", "dp"); r.code != 2 {
		t.Fatalf("delete without name: exit %d", r.code)
	}
}

func TestInspectDataplanes(t *testing.T) {
	h := newHarness(t)
	seed(t, h)
	h.srv.SetInsight(resource.DataplaneType, "default", "web-1", `{
		"subscriptions": [
			{"id": "old", "controlPlaneInstanceId": "xds-0", "connectTime": "2026-01-01T00:00:00Z", "disconnectTime": "2026-01-01T01:00:00Z"},
			{"id": "new", "controlPlaneInstanceId": "xds-1", "connectTime": "2026-01-02T04:00:00Z",
			 "generationError": "ProxyTemplate tpl leaves the configuration invalid", "generationErrorTime": "2026-01-02T04:01:00Z"}
		],
		"mtls": {"certificateExpirationTime": "2026-01-03T04:04:05Z", "issuedBackend": "ca-1"},
		"someFutureField": true
	}`)
	r := h.ok("", "inspect", "dataplanes")
	got := lines(r.stdout)
	want := [][]string{
		{"MESH", "NAME", "STATUS", "SINCE", "XDS-SERVER", "SERVICES", "CERT-EXPIRY", "CERT-BACKEND"},
		{"default", "web-1", "online", "4m", "xds-1", "web", "in", "24h", "ca-1"},
		{"demo", "db-1", "offline", "-", "-", "db,db-admin", "-", "-"},
	}
	if len(got) != len(want) {
		t.Fatalf("stdout:\n%s", r.stdout)
	}
	for i := range got {
		if strings.Join(fields(got[i]), " ") != strings.Join(want[i], " ") {
			t.Fatalf("line %d = %q, want %q", i, got[i], want[i])
		}
	}
	wantTable(t, h.ok("", "inspect", "dp", "-m", "demo", "-o", "wide").stdout, [][]string{
		{"MESH", "NAME", "STATUS", "SINCE", "XDS-SERVER", "SERVICES", "CERT-EXPIRY", "CERT-BACKEND", "ADDRESS", "ZONE", "CONFIG-ERROR"},
		{"demo", "db-1", "offline", "-", "-", "db,db-admin", "-", "-", "10.0.0.9", "local", "-"},
	})
	// The xds-server's generation error (the proxy keeps its previous
	// configuration) is the last wide column.
	if w := h.ok("", "inspect", "dp", "-m", "default", "-o", "wide").stdout; !strings.HasSuffix(strings.TrimSpace(lines(w)[1]), "ProxyTemplate tpl leaves the configuration invalid") {
		t.Fatalf("wide output lacks the generation error:\n%s", w)
	}
	r = h.ok("", "inspect", "dataplanes", "-m", "demo", "-o", "json")
	if !strings.Contains(r.stdout, `"db-1"`) || strings.Contains(r.stdout, "web-1") {
		t.Fatalf("json:\n%s", r.stdout)
	}
	r = h.ok("", "inspect", "dataplanes", "-m", "default", "-o", "yaml")
	if !strings.Contains(r.stdout, "insight:") || !strings.Contains(r.stdout, "controlPlaneInstanceId: xds-1") {
		t.Fatalf("yaml:\n%s", r.stdout)
	}
}

func TestInspectZones(t *testing.T) {
	h := newHarness(t)
	h.ok("type: Zone\nname: east\n---\ntype: Zone\nname: west\nenabled: false\n", "apply", "-f", "-")
	h.srv.SetInsight(resource.ZoneType, "", "east", `{"subscriptions":[{"globalInstanceId":"g-1","zoneInstanceId":"z-1","connectTime":"2026-01-02T03:04:05Z"}]}`)
	h.srv.SetInsight(resource.ZoneType, "", "west", `{"subscriptions":[{"globalInstanceId":"g-1","zoneInstanceId":"z-2","connectTime":"2026-01-01T00:00:00Z","disconnectTime":"2026-01-02T04:00:05Z"}]}`)
	r := h.ok("", "inspect", "zones")
	want := [][]string{
		{"NAME", "ENABLED", "STATUS", "SINCE", "GLOBAL-INSTANCE", "ZONE-INSTANCE", "REASON"},
		{"east", "true", "online", "1h", "g-1", "z-1", "-"},
		{"west", "false", "offline", "4m", "g-1", "z-2", "disabled", "on", "global"},
	}
	got := lines(r.stdout)
	if len(got) != len(want) {
		t.Fatalf("stdout:\n%s", r.stdout)
	}
	for i := range got {
		if f := fields(got[i]); len(f) < len(want[i]) || strings.Join(f[:len(want[i])], " ") != strings.Join(want[i], " ") {
			t.Fatalf("line %d = %q, want %q", i, got[i], want[i])
		}
	}
	if r := h.run("", "inspect", "nothing"); r.code != 2 {
		t.Fatalf("inspect nothing: exit %d", r.code)
	}
	// Singular alias.
	if r := h.ok("", "inspect", "zone"); !strings.Contains(r.stdout, "east") {
		t.Fatalf("inspect zone:\n%s", r.stdout)
	}
}

func wantTable(t *testing.T, stdout string, want [][]string) {
	t.Helper()
	got := lines(stdout)
	if len(got) != len(want) {
		t.Fatalf("stdout:\n%s", stdout)
	}
	for i := range got {
		if strings.Join(fields(got[i]), " ") != strings.Join(want[i], " ") {
			t.Fatalf("line %d = %q, want %q", i, got[i], want[i])
		}
	}
}

func TestInspectMeshesAndServices(t *testing.T) {
	h := newHarness(t)
	seed(t, h)
	h.ok("type: Dataplane\nmesh: demo\nname: db-2\nnetworking:\n  address: 10.0.0.10\n  inbound:\n  - port: 5432\n    tags: {weft.io/service: db, weft.io/zone: east}\n", "apply", "-f", "-")
	h.srv.SetInsight(resource.DataplaneType, "demo", "db-1", `{"subscriptions":[{"id":"a","controlPlaneInstanceId":"xds-1","connectTime":"2026-01-02T04:00:00Z"}]}`)
	vip := resource.New(resource.VirtualIPType, "demo", "db")
	vip.Spec = &meshv1.VirtualIP{Service: "db", Ip: "240.0.0.7"}
	h.srv.Put(vip)

	wantTable(t, h.ok("", "inspect", "meshes").stdout, [][]string{
		{"NAME", "DATAPLANES", "POLICIES", "MTLS", "CA-EXPIRY"},
		{"default", "0/1", "1", "off", "-"},
		{"demo", "1/2", "0", "off", "-"},
	})
	wantTable(t, h.ok("", "inspect", "mesh", "-o", "wide").stdout, [][]string{
		{"NAME", "DATAPLANES", "POLICIES", "MTLS", "CA-EXPIRY", "POLICIES-BY-TYPE", "CAS"},
		{"default", "0/1", "1", "off", "-", "traffic-permissions:1", "-"},
		{"demo", "1/2", "0", "off", "-", "-", "-"},
	})
	wantTable(t, h.ok("", "inspect", "services", "-m", "demo", "-o", "wide").stdout, [][]string{
		{"MESH", "SERVICE", "INSTANCES", "ZONES", "VIP", "DATAPLANES"},
		{"demo", "db", "1/2", "east:1,local:1", "240.0.0.7", "db-1,db-2"},
		{"demo", "db-admin", "1/1", "local:1", "-", "db-1"},
	})
	wantTable(t, h.ok("", "inspect", "svc").stdout, [][]string{
		{"MESH", "SERVICE", "INSTANCES", "ZONES", "VIP"},
		{"default", "web", "0/1", "local:1", "-"},
		{"demo", "db", "1/2", "east:1,local:1", "240.0.0.7"},
		{"demo", "db-admin", "1/1", "local:1", "-"},
	})
	if r := h.run("", "inspect", "services", "-o", "yaml"); r.code != 2 {
		t.Fatalf("inspect services -o yaml: exit %d", r.code)
	}
	if r := h.run("", "inspect", "services", "-m", "nope"); r.code != 1 || !strings.Contains(r.stderr, `mesh "nope" not found`) {
		t.Fatalf("unknown mesh: %d %s", r.code, r.stderr)
	}
}

func TestGenerate(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
		body   map[string]any
	}{
		{args: []string{"generate", "dataplane-token", "--name", "web-1", "--tag", "team=a", "--valid-for", "30d"},
			stdout: "tok.dataplane.default/web-1\n",
			body:   map[string]any{"mesh": "default", "name": "web-1", "validFor": "30d", "tags": map[string]any{"team": "a"}}},
		{args: []string{"generate", "zone-token", "--zone", "east"}, stdout: "tok.zone.east\n", body: map[string]any{"zone": "east"}},
		{args: []string{"generate", "ingress-token", "--zone", "east"}, stdout: "tok.ingress.east/ingress\n", body: map[string]any{"zone": "east", "name": "ingress"}},
		{args: []string{"generate", "ingress-token", "--zone", "east", "--name", "edge", "--valid-for", "30d"}, stdout: "tok.ingress.east/edge\n", body: map[string]any{"zone": "east", "name": "edge", "validFor": "30d"}},
		{args: []string{"generate", "ingress-token"}, code: 2, stderr: "--zone is required"},
		{args: []string{"generate", "ingress-token", "--zone", "East_1"}, code: 2, stderr: "--zone"},
		{args: []string{"generate", "user-token", "--name", "alice", "--group", "ops", "--group", "dev", "--valid-for", "1h"},
			stdout: "tok.user.alice\n", body: map[string]any{"name": "alice", "groups": []any{"ops", "dev"}, "validFor": "1h"}},
		{args: []string{"generate", "dataplane-token"}, code: 2, stderr: "--name is required"},
		{args: []string{"generate", "dataplane-token", "--name", "x", "--mesh", "Bad"}, code: 2, stderr: "--mesh"},
		{args: []string{"generate", "dataplane-token", "--name", "x", "--tag", "novalue"}, code: 2, stderr: "not k=v"},
		{args: []string{"generate", "zone-token", "--zone", "east", "--valid-for", "soon"}, code: 2, stderr: "--valid-for"},
		{args: []string{"generate", "tls-certificate", "--type", "peer", "--hostname", "x"}, code: 2, stderr: "server or client"},
		{args: []string{"generate", "nothing"}, code: 2, stderr: `unknown command "nothing"`},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			before := len(h.srv.TokenCalls())
			r := h.run("", tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", r.code, tc.code, r.stderr)
			}
			if tc.stdout != "" && r.stdout != tc.stdout {
				t.Fatalf("stdout = %q, want %q", r.stdout, tc.stdout)
			}
			if tc.stderr != "" && !strings.Contains(r.stderr, tc.stderr) {
				t.Fatalf("stderr lacks %q:\n%s", tc.stderr, r.stderr)
			}
			calls := h.srv.TokenCalls()[before:]
			if tc.body == nil {
				if len(calls) != 0 {
					t.Fatalf("token requested: %v", calls)
				}
				return
			}
			if len(calls) != 1 || fmt.Sprint(calls[0].Body) != fmt.Sprint(tc.body) {
				t.Fatalf("calls = %v, want body %v", calls, tc.body)
			}
		})
	}
}

func TestConfigControlPlanes(t *testing.T) {
	h := newHarness(t)
	delete(h.env, "WEFT_CP")
	delete(h.env, "WEFT_TOKEN")

	// Without any control plane, commands say how to get one.
	r := h.run("", "get", "meshes")
	if r.code != 1 || !strings.Contains(r.stderr, "no control plane configured") {
		t.Fatalf("unconfigured: %d %s", r.code, r.stderr)
	}
	// A wrong token fails verification and writes nothing.
	r = h.run("", "config", "control-planes", "add", "--name", "local", "--address", h.srv.URL, "--token", "wrong")
	if r.code != 1 || !strings.Contains(r.stderr, "Unauthenticated") {
		t.Fatalf("add with wrong token: %d %s", r.code, r.stderr)
	}
	if _, err := os.Stat(h.conf); !os.IsNotExist(err) {
		t.Fatal("config written after a failed add")
	}
	r = h.ok("", "config", "control-planes", "add", "--name", "local", "--address", h.srv.URL, "--token", token)
	if !strings.Contains(r.stdout, "it is now current") {
		t.Fatalf("stdout = %q", r.stdout)
	}
	st, err := os.Stat(h.conf)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v %v", st, err)
	}
	// The stored token is used.
	h.ok("", "get", "meshes")

	h.ok("", "config", "control-planes", "add", "--name", "other", "--address", "http://127.0.0.1:1", "--no-verify")
	r = h.run("", "config", "control-planes", "add", "--name", "other", "--address", "http://127.0.0.1:2", "--no-verify")
	if r.code != 1 || !strings.Contains(r.stderr, "--overwrite") {
		t.Fatalf("duplicate add: %d %s", r.code, r.stderr)
	}
	h.ok("", "config", "control-planes", "add", "--name", "other", "--address", "http://127.0.0.1:2", "--no-verify", "--overwrite")
	r = h.ok("", "config", "control-planes", "list")
	want := [][]string{{"ACTIVE", "NAME", "ADDRESS", "TOKEN"}, {"*", "local", h.srv.URL, "set"}, {"-", "other", "http://127.0.0.1:2", "none"}}
	got := lines(r.stdout)
	for i := range want {
		if i >= len(got) || strings.Join(fields(got[i]), " ") != strings.Join(want[i], " ") {
			t.Fatalf("list:\n%s", r.stdout)
		}
	}
	if strings.Contains(r.stdout, token) {
		t.Fatal("list printed a token")
	}
	h.ok("", "config", "control-planes", "use", "other")
	r = h.run("", "get", "meshes")
	if r.code != 1 || !strings.Contains(r.stderr, "cannot reach the control plane") || !strings.Contains(r.stderr, "Hint:") {
		t.Fatalf("unreachable: %d %s", r.code, r.stderr)
	}
	if r := h.run("", "config", "control-planes", "use", "nope"); r.code != 1 {
		t.Fatalf("use unknown: %d", r.code)
	}
	h.ok("", "config", "control-planes", "remove", "other")
	r = h.run("", "get", "meshes")
	if r.code != 1 || !strings.Contains(r.stderr, "no control plane configured") {
		t.Fatalf("after removing current: %d %s", r.code, r.stderr)
	}
	if r := h.run("", "config", "control-planes", "add", "--name", "x", "--address", "localhost:5681"); r.code != 2 || !strings.Contains(r.stderr, "http://") {
		t.Fatalf("bad address: %d %s", r.code, r.stderr)
	}
	// --config points elsewhere.
	other := filepath.Join(t.TempDir(), "c.yaml")
	h.ok("", "--config", other, "config", "control-planes", "add", "--name", "a", "--address", "http://x:1", "--no-verify")
	if f, err := config.Load(other); err != nil || f.Current != "a" {
		t.Fatalf("--config file: %v %v", f, err)
	}
}

func TestTargetPrecedence(t *testing.T) {
	h := newHarness(t)
	delete(h.env, "WEFT_TOKEN")
	// The config file knows the fixture's address and token under "local",
	// but its current control plane is a dead one.
	if err := config.AddControlPlaneAt(h.conf, "dead", "http://127.0.0.1:1", "x", true); err != nil {
		t.Fatal(err)
	}
	if err := config.AddControlPlaneAt(h.conf, "local", h.srv.URL, token, false); err != nil {
		t.Fatal(err)
	}
	// WEFT_CP overrides the current one; the token comes from the entry
	// with that address.
	h.ok("", "get", "meshes")
	// --cp overrides WEFT_CP.
	r := h.run("", "get", "meshes", "--cp", "http://127.0.0.1:1")
	if r.code != 1 || !strings.Contains(r.stderr, "127.0.0.1:1") {
		t.Fatalf("--cp: %d %s", r.code, r.stderr)
	}
	// --token overrides the config's.
	r = h.run("", "get", "meshes", "--token", "bad")
	if r.code != 1 || !strings.Contains(r.stderr, "HTTP 401") || !strings.Contains(r.stderr, "Hint: pass a token") {
		t.Fatalf("--token: %d %s", r.code, r.stderr)
	}
	// WEFT_TOKEN overrides the config's too.
	h.env["WEFT_TOKEN"] = "bad"
	if r := h.run("", "get", "meshes"); r.code != 1 {
		t.Fatalf("WEFT_TOKEN: %d", r.code)
	}
	for _, req := range h.srv.Requests() {
		if req.Auth != "Bearer "+token && req.Auth != "Bearer bad" {
			t.Fatalf("request with auth %q", req.Auth)
		}
	}
}

func TestVersion(t *testing.T) {
	h := newHarness(t)
	r := h.ok("", "version")
	if !strings.Contains(r.stdout, "Client: weftctl "+cmd.Version) || !strings.Contains(r.stdout, "Control plane: Weft 1.0.0-test, mode standalone") {
		t.Fatalf("stdout = %q", r.stdout)
	}
	r = h.ok("", "version", "--client")
	if len(lines(r.stdout)) != 1 {
		t.Fatalf("--client: %q", r.stdout)
	}
	delete(h.env, "WEFT_CP")
	r = h.ok("", "version")
	if !strings.Contains(r.stdout, "Control plane: none configured") {
		t.Fatalf("unconfigured: %q", r.stdout)
	}
}

func TestHelpAndUsage(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"--help"}, 0, "Commands:"},
		{[]string{"help"}, 0, "apply"},
		{[]string{"help", "get"}, 0, "weftctl get TYPE [NAME]"},
		{[]string{"apply", "-h"}, 0, "--dry-run"},
		{[]string{"config", "control-planes"}, 2, "add"},
		{[]string{}, 2, "weftctl needs a command"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"apply"}, 2, "apply needs -f"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := h.run("", tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
				t.Fatalf("exit %d (want %d), stderr:\n%s", r.code, tc.code, r.stderr)
			}
		})
	}
}

// `weftctl up` is added as one more command; Register is the seam.
func TestRegisterCommand(t *testing.T) {
	var out, errb bytes.Buffer
	a := cmd.New(strings.NewReader(""), &out, &errb)
	conf := filepath.Join(t.TempDir(), "w.yaml")
	a.Getenv = func(k string) string { return map[string]string{"WEFTCTL_CONFIG": conf}[k] }
	a.Register("up", "Start a control plane", func(ctx context.Context, a *cmd.App, args []string) error {
		fs := a.FlagSet("up")
		dataDir := fs.String("data-dir", "", "")
		if _, err := a.Parse(fs, "", args); err != nil {
			return err
		}
		fmt.Fprintf(a.Stdout, "up %s\n", *dataDir)
		return a.AddControlPlane("standalone", "http://127.0.0.1:5681", "admin", true)
	})
	if code := a.Run(context.Background(), []string{"up", "--data-dir", "/tmp/x"}); code != 0 || out.String() != "up /tmp/x\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
	f, err := config.Load(conf)
	if err != nil || f.CurrentControlPlane().Token != "admin" {
		t.Fatalf("config = %+v, %v", f, err)
	}
	errb.Reset()
	a.Run(context.Background(), []string{"help"})
	if !strings.Contains(errb.String(), "Start a control plane") {
		t.Fatalf("help lacks up:\n%s", errb.String())
	}
}

func TestTLSCertificate(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	var got []cmd.TLSRequest
	run := func(gen cmd.TLSGenerator, args ...string) result {
		var out, errb bytes.Buffer
		a := cmd.New(strings.NewReader(""), &out, &errb)
		a.Getenv = func(string) string { return "" }
		a.GenerateTLS = gen
		code := a.Run(context.Background(), append([]string{"generate", "tls-certificate", "--cert-file", cert, "--key-file", key}, args...))
		return result{code, out.String(), errb.String()}
	}
	fake := func(r cmd.TLSRequest) ([]byte, []byte, error) {
		got = append(got, r)
		return []byte("CERT"), []byte("KEY"), nil
	}
	if r := run(nil, "--type", "server", "--hostname", "cp.local"); r.code != 1 || !strings.Contains(r.stderr, "not available in this build") {
		t.Fatalf("without generator: %d %s", r.code, r.stderr)
	}
	if r := run(fake, "--type", "server"); r.code != 2 || !strings.Contains(r.stderr, "--hostname is required") {
		t.Fatalf("server without hostname: %d %s", r.code, r.stderr)
	}
	if r := run(fake, "--type", "server", "--hostname", "cp.local", "--hostname", "10.0.0.5", "--valid-for", "90d"); r.code != 0 {
		t.Fatalf("generate: %d %s", r.code, r.stderr)
	}
	if len(got) != 1 || got[0].Type != "server" || len(got[0].Hostnames) != 2 || got[0].Validity != 90*24*time.Hour || got[0].KeyType != "ecdsa-p256" {
		t.Fatalf("request = %+v", got)
	}
	for p, want := range map[string]os.FileMode{cert: 0o644, key: 0o600} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != want {
			t.Fatalf("%s: %v %v, want %v", p, st, err, want)
		}
	}
	if r := run(fake, "--type", "client"); r.code != 1 || !strings.Contains(r.stderr, "--overwrite") {
		t.Fatalf("existing files: %d %s", r.code, r.stderr)
	}
	if r := run(fake, "--type", "client", "--overwrite", "--key-type", "rsa"); r.code != 0 || got[1].KeyType != "rsa" {
		t.Fatalf("overwrite: %d %s %+v", r.code, r.stderr, got)
	}
}

func TestHTTPSWithCACertFile(t *testing.T) {
	srv := apitest.StartTLS(t, token)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "junk.pem")
	os.WriteFile(notPEM, []byte("junk"), 0o600)
	conf := filepath.Join(dir, "w.yaml")
	h := &harness{t: t, srv: srv, conf: conf, env: map[string]string{"WEFTCTL_CONFIG": conf, "HOME": "/nonexistent"}}

	r := h.run("", "get", "meshes", "--cp", srv.URL, "--token", token)
	if r.code != 1 || !strings.Contains(r.stderr, "certificate") {
		t.Fatalf("without CA: %d %s", r.code, r.stderr)
	}
	h.ok("", "get", "meshes", "--cp", srv.URL, "--token", token, "--ca-cert-file", ca)
	h.env["WEFT_CA_CERT_FILE"] = ca
	h.ok("", "get", "meshes", "--cp", srv.URL, "--token", token)
	delete(h.env, "WEFT_CA_CERT_FILE")
	if r := h.run("", "get", "meshes", "--cp", srv.URL, "--token", token, "--ca-cert-file", notPEM); r.code != 1 || !strings.Contains(r.stderr, "no PEM certificate") {
		t.Fatalf("junk CA: %d %s", r.code, r.stderr)
	}
	// Recorded with the control plane, then used without flags.
	if r := h.run("", "config", "control-planes", "add", "--name", "tls", "--address", srv.URL, "--token", token); r.code != 1 {
		t.Fatalf("add without CA verified: %d", r.code)
	}
	h.ok("", "config", "control-planes", "add", "--name", "tls", "--address", srv.URL, "--token", token, "--ca-cert-file", ca)
	h.ok("", "get", "meshes")
	f, err := config.Load(conf)
	if err != nil || f.CurrentControlPlane().CACertFile != ca {
		t.Fatalf("config: %+v %v", f, err)
	}
	// WEFT_CP naming the same address picks up token and CA from the file.
	h.env["WEFT_CP"] = srv.URL
	h.ok("", "get", "meshes")
}

// TestTLSCertificateRealGenerator runs the built-in generator (pkg/cptls)
// and checks the files are a usable certificate and key.
func TestTLSCertificateRealGenerator(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	var out, errb bytes.Buffer
	a := cmd.New(strings.NewReader(""), &out, &errb)
	a.Getenv = func(string) string { return "" }
	if code := a.Run(context.Background(), []string{"generate", "tls-certificate", "--type", "server", "--hostname", "cp.local",
		"--cert-file", cert, "--key-file", key}); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatalf("generated pair does not load: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil || leaf.VerifyHostname("cp.local") != nil {
		t.Fatalf("certificate not for cp.local: %v", err)
	}
	if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", st.Mode(), err)
	}
}

// The bash completion script completes commands, subcommands (after an
// alias too) and resource types, skipping flags and their values; run by
// bash itself.
func TestCompletionBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not installed")
	}
	h := newHarness(t)
	script := h.ok("", "completion", "bash").stdout
	for words, want := range map[string]string{
		"weftctl insp":                 "inspect",
		"weftctl inspect ":             "dataplanes global meshes services zones",
		"weftctl get traffic-p":        "traffic-permissions",
		"weftctl -m demo get dp":       "",
		"weftctl delete -m demo mes":   "meshes",
		"weftctl config cp r":          "remove",
		"weftctl --cp http://x ver":    "version",
		"weftctl inspect dataplanes ":  "",
		"weftctl generate --force dat": "dataplane-token",
	} {
		fields := strings.Split(words, " ")
		quoted := make([]string, len(fields))
		for i, f := range fields {
			quoted[i] = "'" + f + "'"
		}
		prog := script + "\nCOMP_WORDS=(" + strings.Join(quoted, " ") + "); COMP_CWORD=" + fmt.Sprint(len(fields)-1) + "; _weftctl; echo \"${COMPREPLY[*]}\"\n"
		out, err := exec.Command(bash, "-c", prog).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != want {
			t.Errorf("%q: got %q (%v), want %q", words, out, err, want)
		}
	}
	if r := h.run("", "completion", "fish"); r.code != 2 {
		t.Fatalf("completion fish: exit %d", r.code)
	}
	if r := h.ok("", "completion", "zsh"); !strings.HasPrefix(r.stdout, "autoload -U +X bashcompinit") {
		t.Fatalf("zsh: %s", r.stdout)
	}
}

func TestInspectGlobal(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/global-insight" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"zone":"zone-1","state":"offline","reason":"refused since 2026-01-02T04:00:05Z: invalid token: token is expired",
			"insight":{"type":"ZoneInsight","name":"zone-1","subscriptions":[{"id":"a","globalInstanceId":"g-1","connectTime":"2026-01-01T00:00:00Z","disconnectTime":"2026-01-01T01:00:00Z"},
			{"id":"refused-1","disconnectTime":"2026-01-02T04:00:05Z","lastError":"invalid token: token is expired"}]}}`))
	}))
	defer srv.Close()
	h := newHarness(t)
	r := h.ok("", "--cp", srv.URL, "--token", "t", "inspect", "global")
	wantTable(t, r.stdout, [][]string{
		{"ZONE", "STATE", "SINCE", "GLOBAL-INSTANCE", "REASON"},
		{"zone-1", "offline", "4m", "-", "refused", "since", "2026-01-02T04:00:05Z:", "invalid", "token:", "token", "is", "expired"},
	})
	if r := h.ok("", "--cp", srv.URL, "--token", "t", "inspect", "global", "-o", "json"); !strings.Contains(r.stdout, `"lastError": "invalid token: token is expired"`) {
		t.Fatalf("json:\n%s", r.stdout)
	}
}
