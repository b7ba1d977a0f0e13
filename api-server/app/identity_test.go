package app_test

import (
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/token"
)

const gatewayDP = `{"type":"Dataplane","mesh":"default","name":"web-1","networking":{"address":"10.0.0.1","gateway":{"tags":{"weft.io/service":"backend"}}}}`

// Issue 10: web-1's token rewriting its inbound to backend/admin-api, or
// re-registering as a gateway of another service, is refused (it was 200).
func TestDataplaneTokenIsBoundToItsServices(t *testing.T) {
	c := start(t, "standalone", "")
	c.must("PUT", "/meshes/default", `{"type":"Mesh"}`, 201)
	c.must("PUT", "/meshes/default/dataplanes/web-1", dp, 201)

	// Bound by default to the registered Dataplane's services.
	r := c.must("POST", "/tokens/dataplane", `{"mesh":"default","name":"web-1"}`, 200)
	if svcs, _ := r.body["services"].([]any); len(svcs) != 1 || svcs[0] != "web" || r.body["id"] == "" {
		t.Fatalf("token response: %s", r.raw)
	}
	bound := r.body["token"].(string)
	// The legacy tag-bound form binds too.
	tagged := c.must("POST", "/tokens/dataplane", `{"mesh":"default","name":"web-1","tags":{"weft.io/service":"web"}}`, 200).body["token"].(string)

	for name, tok := range map[string]string{"bound": bound, "tag-bound": tagged} {
		if r := c.do("PUT", "/meshes/default/dataplanes/web-1", tok, dp); r.code != 200 {
			t.Fatalf("%s: own services: %d %s", name, r.code, r.raw)
		}
		for _, svc := range []string{"backend", "admin-api"} {
			body := strings.Replace(dp, `"weft.io/service":"web"`, `"weft.io/service":"`+svc+`"`, 1)
			if r := c.do("PUT", "/meshes/default/dataplanes/web-1", tok, body); r.code != 403 || !strings.Contains(r.raw, `\"`+svc+`\"`) {
				t.Fatalf("%s: rewriting the inbound to %s: %d %s, want 403 naming it", name, svc, r.code, r.raw)
			}
		}
		two := strings.Replace(dp, `]}}`, `,{"port":9090,"tags":{"weft.io/service":"admin-api"}}]}}`, 1)
		if r := c.do("PUT", "/meshes/default/dataplanes/web-1", tok, two); r.code != 403 {
			t.Fatalf("%s: adding an inbound of admin-api: %d %s", name, r.code, r.raw)
		}
		if r := c.do("PUT", "/meshes/default/dataplanes/web-1", tok, gatewayDP); r.code != 403 || !strings.Contains(r.raw, "backend") {
			t.Fatalf("%s: re-registering as a gateway of backend: %d %s", name, r.code, r.raw)
		}
	}
	// Nothing changed.
	if r := c.must("GET", "/meshes/default/dataplanes/web-1", "", 200); strings.Contains(r.raw, "backend") || strings.Contains(r.raw, "admin-api") {
		t.Fatalf("refused writes changed the Dataplane: %s", r.raw)
	}
	// An admin may still register anything.
	c.must("PUT", "/meshes/default/dataplanes/web-1", gatewayDP, 200)

	// Explicit services; unbound only on request; bad combinations are 400.
	c.must("POST", "/tokens/dataplane", `{"mesh":"default","name":"new-1","services":["web","api"]}`, 200)
	unbound := c.must("POST", "/tokens/dataplane", `{"mesh":"default","name":"web-1","unbound":true}`, 200)
	if unbound.body["unbound"] != true {
		t.Fatalf("unbound: %s", unbound.raw)
	}
	if r := c.do("PUT", "/meshes/default/dataplanes/web-1", unbound.body["token"].(string), gatewayDP); r.code != 200 {
		t.Fatalf("unbound token: %d %s", r.code, r.raw)
	}
	for body, field := range map[string]string{
		`{"mesh":"default","name":"new-1"}`:                                 "services",
		`{"mesh":"default","name":"new-1","services":["Bad_Name"]}`:         "services[0]",
		`{"mesh":"default","name":"new-1","services":["a"],"unbound":true}`: "unbound",
		`{"mesh":"nope","name":"new-1","services":["web"]}`:                 "mesh",
	} {
		r := c.do("POST", "/tokens/dataplane", c.admin, body)
		if r.code != 400 || causes(r)[field] == "" {
			t.Fatalf("%s: %d %s, want 400 with cause %q", body, r.code, r.raw, field)
		}
	}
}

func TestRevokeAndRotate(t *testing.T) {
	c := start(t, "standalone", "")
	c.must("PUT", "/meshes/default", `{"type":"Mesh"}`, 201)
	c.must("PUT", "/meshes/default/dataplanes/web-1", dp, 201)
	r := c.must("POST", "/tokens/dataplane", `{"mesh":"default","name":"web-1"}`, 200)
	tok, id := r.body["token"].(string), r.body["id"].(string)
	keep := c.must("POST", "/tokens/dataplane", `{"mesh":"default","name":"web-1"}`, 200).body["token"].(string)
	viewer := c.must("POST", "/tokens/user", `{"name":"viewer"}`, 200).body["token"].(string)
	if r := c.do("GET", "/meshes/default/dataplanes/web-1", tok, ""); r.code != 200 {
		t.Fatalf("before revocation: %d", r.code)
	}
	// Admin only; bad input is 400.
	if r := c.do("POST", "/tokens/revoke", viewer, `{"id":"`+id+`"}`); r.code != 403 {
		t.Fatalf("viewer revokes: %d %s", r.code, r.raw)
	}
	if r := c.do("POST", "/tokens/revoke", tok, `{"id":"`+id+`"}`); r.code != 403 {
		t.Fatalf("dataplane revokes: %d %s", r.code, r.raw)
	}
	if r := c.do("POST", "/tokens/revoke", c.admin, `{}`); r.code != 400 || causes(r)["id"] == "" {
		t.Fatalf("empty revoke: %d %s", r.code, r.raw)
	}
	if r := c.do("POST", "/tokens/revoke", c.admin, `{"token":"garbage"}`); r.code != 400 {
		t.Fatalf("garbage token: %d %s", r.code, r.raw)
	}
	c.must("POST", "/tokens/revoke", `{"id":"`+id+`"}`, 200)
	if r := c.do("GET", "/meshes/default/dataplanes/web-1", tok, ""); r.code != 401 || !strings.Contains(r.raw, "revoked") {
		t.Fatalf("revoked token: %d %s, want 401", r.code, r.raw)
	}
	if r := c.do("GET", "/meshes/default/dataplanes/web-1", keep, ""); r.code != 200 {
		t.Fatalf("another token of the same dataplane: %d %s", r.code, r.raw)
	}
	// Revoking by the token itself works too (and again is harmless).
	c.must("POST", "/tokens/revoke", `{"token":"`+tok+`"}`, 200)

	if r := c.do("POST", "/tokens/signing-key/rotate", viewer, `{}`); r.code != 403 {
		t.Fatalf("viewer rotates: %d", r.code)
	}
	rot := c.must("POST", "/tokens/signing-key/rotate", `{}`, 200)
	if rot.body["generation"] != "2" && rot.body["generation"] != float64(2) {
		t.Fatalf("rotate: %s", rot.raw)
	}
	// Every token signed before, the admin's own included, is now refused.
	deadline := time.Now().Add(10*token.RefreshInterval + 10*time.Second)
	for _, old := range []string{keep, viewer, c.admin} {
		for {
			r := c.do("GET", "/meshes/default/dataplanes/web-1", old, "")
			if r.code == 401 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("token of the old generation still accepted: %d %s", r.code, r.raw)
			}
			time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
		}
	}
}
