package app_test

import (
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// TestOpenAPITokenBodies: every token endpoint's request and response
// bodies in /openapi.json are the TokenService messages, field by field.
// Real requests (camelCase and protobuf field names, as protojson reads
// both) validate against the request schema and the server accepts them;
// the real answers validate against the response schema; bodies the
// server rejects (unknown field, wrong type, missing field) do not
// validate either.
func TestOpenAPITokenBodies(t *testing.T) {
	c := start(t, "standalone", "")
	raw := c.do("GET", "/openapi.json", "", "").raw
	comp := jsonschema.NewCompiler()
	docJSON, err := jsonschema.UnmarshalJSON(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := comp.AddResource("weft.json", docJSON); err != nil {
		t.Fatal(err)
	}
	schema := func(path, part string) *jsonschema.Schema {
		t.Helper()
		ptr := "weft.json#/paths/" + strings.ReplaceAll(path, "/", "~1") + "/post/"
		if part == "request" {
			ptr += "requestBody/content/application~1json/schema"
		} else {
			ptr += "responses/200/content/application~1json/schema"
		}
		s, err := comp.Compile(ptr)
		if err != nil {
			t.Fatalf("%s %s: %v", path, part, err)
		}
		return s
	}
	valid := func(s *jsonschema.Schema, body string) error {
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(body))
		if err != nil {
			t.Fatalf("not JSON: %s", body)
		}
		return s.Validate(v)
	}
	c.must("PUT", "/meshes/default", `{"type":"Mesh"}`, 201)
	c.must("PUT", "/meshes/default/dataplanes/web-1", dp, 201)

	var issued string
	for _, tc := range []struct{ path, body string }{
		{"/tokens/dataplane", `{"mesh":"default","name":"web-1","services":["web"],"validFor":"1h","tags":{"version":"v1"}}`},
		{"/tokens/dataplane", `{"mesh":"default","name":"web-1","unbound":true,"valid_for":"2h"}`},
		{"/tokens/dataplane", `{"mesh":"default","name":"web-1"}`},
		{"/tokens/zone", `{"zone":"zone-1","validFor":"24h"}`},
		{"/tokens/user", `{"name":"viewer","groups":["dev"],"valid_for":"1h"}`},
		{"/tokens/revoke", `{"id":"0123456789abcdef"}`},
	} {
		body := tc.body
		if tc.path == "/tokens/revoke" && issued != "" {
			body = `{"token":"` + issued + `"}`
		}
		if err := valid(schema(tc.path, "request"), body); err != nil {
			t.Errorf("POST %s %s: the request does not match /openapi.json: %v", tc.path, body, err)
		}
		r := c.must("POST", tc.path, body, 200)
		if err := valid(schema(tc.path, "response"), r.raw); err != nil {
			t.Errorf("POST %s: the answer does not match /openapi.json: %v\n%s", tc.path, err, r.raw)
		}
		if tok, ok := r.body["token"].(string); ok && tc.path == "/tokens/user" {
			issued = tok
		}
	}
	if issued == "" {
		t.Fatal("no user token issued to revoke")
	}

	// What the server refuses the schema refuses too.
	for _, tc := range []struct{ path, body string }{
		{"/tokens/dataplane", `{"mesh":"default","name":"web-1","validity":"1h"}`},  // unknown field
		{"/tokens/dataplane", `{"mesh":"default","name":"web-1","services":"web"}`}, // not a list
		{"/tokens/dataplane", `{"mesh":"default","name":"web-1","unbound":"yes"}`},  // not a boolean
		{"/tokens/zone", `{"zone":7}`},                                              // not a string
		{"/tokens/user", `{"groups":["x"]}`},                                        // name missing
		{"/tokens/revoke", `{}`},                                                    // neither id nor token
		{"/tokens/revoke", `{"id":"a","token":"b"}`},                                // both
	} {
		if err := valid(schema(tc.path, "request"), tc.body); err == nil {
			t.Errorf("POST %s %s validates against /openapi.json", tc.path, tc.body)
		}
		if r := c.do("POST", tc.path, c.admin, tc.body); r.code != 400 {
			t.Errorf("POST %s %s: %d, want 400: %s", tc.path, tc.body, r.code, r.raw)
		}
	}
	// Last: rotating the key invalidates the admin token too.
	if err := valid(schema("/tokens/signing-key/rotate", "request"), `{}`); err != nil {
		t.Errorf("rotate request: %v", err)
	}
	r := c.must("POST", "/tokens/signing-key/rotate", `{}`, 200)
	if err := valid(schema("/tokens/signing-key/rotate", "response"), r.raw); err != nil {
		t.Errorf("rotate: the answer does not match /openapi.json: %v\n%s", err, r.raw)
	}
	// A response missing the token or with a counter of the wrong type does
	// not validate.
	for path, body := range map[string]string{
		"/tokens/user":               `{"expiresTime":"2026-01-01T00:00:00Z","id":"x"}`,
		"/tokens/signing-key/rotate": `{"generation":true,"keyId":"k"}`,
	} {
		if err := valid(schema(path, "response"), body); err == nil {
			t.Errorf("%s: the bad answer %s validates", path, body)
		}
	}
}

// TestOpenAPIMeshCA: GET /meshes/{mesh}/ca answers match /openapi.json
// (mTLS off, and a builtin backend whose root nobody created: no
// ca-service runs here), and a missing mesh is the error shape with 404.
func TestOpenAPIMeshCA(t *testing.T) {
	c := start(t, "standalone", "")
	raw := c.do("GET", "/openapi.json", "", "").raw
	comp := jsonschema.NewCompiler()
	docJSON, err := jsonschema.UnmarshalJSON(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := comp.AddResource("weft.json", docJSON); err != nil {
		t.Fatal(err)
	}
	compile := func(status string) *jsonschema.Schema {
		s, err := comp.Compile("weft.json#/paths/~1meshes~1{mesh}~1ca/get/responses/" + status + "/content/application~1json/schema")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ok, bad := compile("200"), compile("default")
	c.must("PUT", "/meshes/plain", `{"type":"Mesh"}`, 201)
	c.must("PUT", "/meshes/secure", `{"type":"Mesh","mtls":{"enabledBackend":"ca-1","backends":[{"name":"ca-1","type":"builtin"}]}}`, 201)
	for path, want := range map[string]string{"/meshes/plain/ca": `"backends":[]`, "/meshes/secure/ca": `"error":"root not created yet by ca-service"`} {
		r := c.must("GET", path, "", 200)
		v, _ := jsonschema.UnmarshalJSON(strings.NewReader(r.raw))
		if err := ok.Validate(v); err != nil || !strings.Contains(r.raw, want) {
			t.Errorf("GET %s: %v\n%s (want %s)", path, err, r.raw, want)
		}
	}
	r := c.must("GET", "/meshes/nope/ca", "", 404)
	v, _ := jsonschema.UnmarshalJSON(strings.NewReader(r.raw))
	if err := bad.Validate(v); err != nil {
		t.Errorf("404: %v\n%s", err, r.raw)
	}
	// Not a CA answer: the schema refuses a backend without its name.
	v, _ = jsonschema.UnmarshalJSON(strings.NewReader(`{"mesh":"m","enabledBackend":"","backends":[{"type":"builtin","enabled":true}]}`))
	if ok.Validate(v) == nil {
		t.Error("a backend without a name validates")
	}
}
