package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// TestOpenAPIDescribesRealResponses validates real answers of a running
// api-server (resources, lists, +insights lists and items, errors) against
// the schemas /openapi.json names for their route and status.
func TestOpenAPIDescribesRealResponses(t *testing.T) {
	c := start(t, "standalone", "")
	raw := c.do("GET", "/openapi.json", "", "").raw
	var doc map[string]any
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatal(err)
	}
	comp := jsonschema.NewCompiler()
	docJSON, err := jsonschema.UnmarshalJSON(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := comp.AddResource("weft.json", docJSON); err != nil {
		t.Fatal(err)
	}
	paths := doc["paths"].(map[string]any)
	// schemaFor finds the route template matching path and compiles the
	// schema of its answer (status 2xx or the error).
	schemaFor := func(method, path string, code int) *jsonschema.Schema {
		t.Helper()
		for tmpl, ops := range paths {
			re := "^" + regexp.MustCompile(`\\{[a-z]+\\}`).ReplaceAllString(regexp.QuoteMeta(tmpl), `[^/+]+`) + "$"
			if !regexp.MustCompile(re).MatchString(path) {
				continue
			}
			_, ok := ops.(map[string]any)[strings.ToLower(method)]
			if !ok {
				continue
			}
			status := "default"
			if code/100 == 2 {
				status = "200"
			}
			ptr := "weft.json#/paths/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(tmpl) + "/" + strings.ToLower(method) +
				"/responses/" + status + "/content/application~1json/schema"
			s, err := comp.Compile(ptr)
			if err != nil {
				t.Fatalf("%s %s: compile %s: %v", method, path, ptr, err)
			}
			return s
		}
		t.Fatalf("%s %s: no route in /openapi.json", method, path)
		return nil
	}
	check := func(method, path, body string) resp {
		t.Helper()
		r := c.do(method, path, c.admin, body)
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(r.raw)))
		if err != nil {
			t.Fatalf("%s %s: %d not JSON: %s", method, path, r.code, r.raw)
		}
		if err := schemaFor(method, path, r.code).Validate(v); err != nil {
			t.Errorf("%s %s (%d) does not match /openapi.json: %v\n%s", method, path, r.code, err, r.raw)
		}
		return r
	}
	check("PUT", "/meshes/default", `{"type":"Mesh","mtls":{"enabledBackend":"ca-1","backends":[{"name":"ca-1","type":"builtin"}]}}`)
	check("PUT", "/meshes/default/dataplanes/web-1", dp)
	check("PUT", "/meshes/default/traffic-permissions/allow", `{"type":"TrafficPermission","sources":[{"match":{"weft.io/service":"*"}}],"destinations":[{"match":{"weft.io/service":"*"}}]}`)
	check("PUT", "/zones/east", `{"type":"Zone","enabled":true}`)
	ins := resource.New(resource.DataplaneInsightType, "default", "web-1")
	now := resource.Timestamp(time.Now())
	ins.Spec = &meshv1.DataplaneInsight{
		Subscriptions: []*meshv1.DiscoverySubscription{{Id: "s", ControlPlaneInstanceId: "xds-1", ConnectTime: now, ProxyKind: "grpc",
			Types: map[string]*meshv1.SyncTypeStatus{"type.googleapis.com/envoy.config.listener.v3.Listener": {LastVersion: "v1", Resources: 2, ResponsesSent: 3, Acks: 3, LastUpdateTime: now}}}},
		Mtls: &meshv1.DataplaneInsight_MTLS{CertificateExpirationTime: now, CertificateRegenerations: 4, IssuedBackend: "ca-1"},
	}
	if _, err := c.st.Create(context.Background(), ins); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/", "/meshes", "/meshes/default", "/meshes/default/dataplanes", "/dataplanes",
		"/meshes/default/dataplanes/web-1", "/meshes/default/dataplanes+insights", "/meshes/default/dataplanes+insights/web-1",
		"/meshes/default/dataplanes/web-1+insights", "/meshes/default/traffic-permissions", "/zones", "/zones+insights",
		"/zones/east+insights", "/meshes/default/dataplanes/nope", "/meshes/nope/dataplanes", "/meshes/default/dataplanes/web-1/policies"} {
		check("GET", path, "")
	}
	if r := check("PUT", "/meshes/default/dataplanes/bad", `{"type":"Dataplane","networking":{"address":"10.0.0.1","inbound":[{"port":0,"tags":{}}]}}`); r.code != 400 {
		t.Fatalf("bad dataplane: %d", r.code)
	}
	check("POST", "/tokens/dataplane", `{"mesh":"default","name":"web-1"}`)
	// The document itself catches a wrong answer: an insight counter
	// written as a string would not validate.
	bad, _ := jsonschema.UnmarshalJSON(strings.NewReader(`{"type":"DataplaneInsight","mesh":"m","name":"n","mtls":{"certificateRegenerations":"4"}}`))
	s, err := comp.Compile("weft.json#/components/schemas/DataplaneInsight")
	if err != nil {
		t.Fatal(err)
	}
	if s.Validate(bad) == nil {
		t.Fatal("a string counter validated")
	}
}
