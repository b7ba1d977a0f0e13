package app_test

import (
	"strings"
	"testing"

	"github.com/weftmesh/weft/api-server/app"
)

// TestInspectWithoutXDSServer: the inspect endpoints' checks that need no
// xds-server (the end-to-end answers are tested through weftctl up, with
// its xds-server): authentication, the dataplane-token scope, dry-run
// validation with field paths (nothing stored), and 501 when no
// xds-server is configured.
func TestInspectWithoutXDSServer(t *testing.T) {
	c := startCfg(t, "standalone", "", func(cfg *app.Config) { cfg.XDS.Address = "" })
	c.must("PUT", "/meshes/default", `{"type":"Mesh"}`, 201)
	c.must("PUT", "/meshes/default/dataplanes/web-1", `{"type":"Dataplane","networking":{"address":"10.0.0.1","inbound":[{"port":8080,"tags":{"weft.io/service":"web"}}]}}`, 201)
	viewer := c.must("POST", "/tokens/user", `{"name":"viewer","validFor":"1h"}`, 200).body["token"].(string)
	other := c.must("POST", "/tokens/dataplane", `{"mesh":"default","name":"backend-1","services":["backend"]}`, 200).body["token"].(string)
	const xds = "/meshes/default/dataplanes/web-1/xds"
	for _, tc := range []struct {
		method, path, tok, body string
		want                    int
		has                     string
	}{
		{"GET", xds, "", "", 401, ""},
		{"GET", xds, "forged.token.value", "", 401, ""},
		{"GET", xds, other, "", 403, "cannot inspect dataplane default/web-1"},
		{"GET", xds, viewer, "", 501, "--xds-address"},
		{"GET", xds, c.admin, "", 501, "--xds-address"},
		// Dry runs: checked like the write, so a read-only user is refused.
		{"PUT", "/meshes/default/timeouts/t?dryRun=explain", viewer, `{"type":"Timeout","sources":[{"match":{"weft.io/service":"*"}}],"destinations":[{"match":{"weft.io/service":"*"}}],"conf":{"connectTimeout":"1s"}}`, 403, "admin"},
		{"PUT", "/meshes/default/timeouts/t?dryRun=explain", c.admin, `{"type":"Timeout","sources":[{"match":{"weft.io/service":"*"}}],"destinations":[{"match":{"weft.io/service":"*"}}],"conf":{"connectTimeout":"-1s"}}`, 400, `"field":"conf.connectTimeout"`},
		{"POST", "/meshes/default/timeouts?dryRun=explain", c.admin, `{"type":"Timeout","name":"t","sources":[{"match":{"weft.io/servce":"*"}}],"destinations":[],"conf":{}}`, 400, `"field":"destinations"`},
		{"PUT", "/meshes/default/timeouts/t?dryRun=All", c.admin, `{}`, 400, "explain"},
		{"PUT", "/meshes/default/dataplanes/web-2?dryRun=explain", c.admin, `{"type":"Dataplane","networking":{"address":"10.0.0.1","inbound":[{"port":8080,"tags":{"weft.io/service":"web"}}]}}`, 400, "not a policy"},
		{"PUT", "/meshes/default/timeouts/t?dryRun=explain", c.admin, `{"type":"Timeout","sources":[{"match":{"weft.io/service":"*"}}],"destinations":[{"match":{"weft.io/service":"*"}}],"conf":{"connectTimeout":"1s"}}`, 501, "--xds-address"},
		{"PUT", "/meshes/default/timeouts/t?dryRun=explain", c.admin, ``, 400, "empty"},
	} {
		r := c.do(tc.method, tc.path, tc.tok, tc.body)
		if r.code != tc.want || !strings.Contains(r.raw, tc.has) {
			t.Errorf("%s %s: %d %s, want %d with %q", tc.method, tc.path, r.code, r.raw, tc.want, tc.has)
		}
	}
	if r := c.do("GET", "/meshes/default/timeouts", c.admin, ""); r.code != 200 || r.body["total"].(float64) != 0 {
		t.Fatalf("a dry run stored a Timeout: %s", r.raw)
	}
}
