package resource_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/pkg/resource"
)

// FuzzUnmarshal feeds arbitrary documents to the flat YAML/JSON decoder:
// it must never panic, and whatever it accepts must survive a
// marshal → unmarshal round trip unchanged.
func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{
		`{"type":"Dataplane","mesh":"default","name":"web-1","networking":{"address":"10.0.0.1","inbound":[{"port":8080,"tags":{"weft.io/service":"web"}}]}}`,
		"type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n",
		`{"type":"TrafficPermission","mesh":"m","name":"x","sources":[{"match":{"weft.io/service":"*"}}],"destinations":[{"match":{"weft.io/service":"*"}}]}`,
		`{"type":"Secret","mesh":"m","name":"s","data":"aGVsbG8="}`,
		`{"type":"Mesh","version":"12","labels":{"a":"b"}}`,
		"type: TrafficRoute\nmesh: m\nname: r\nconf:\n- weight: 1\n  destination: {kuma.io/service: a}\n",
		"type: Dataplane\nmesh: m\nname: i\nnetworking:\n  address: 1.2.3.4\n  ingress: {availableServices: [{tags: {a: b}}]}\n  inbound: [{port: 1}]\n",
		"type: Mesh\nname: m\nmtls:\n  backends:\n  - {name: a, type: builtin, mode: STRICT, conf: {caCert: {RSAbits: 2048}}}\ntracing: {backends: [{name: z, type: datadog, conf: {port: 1}}]}\n",
		"type: ProxyTemplate\nmesh: m\nname: p\nconf: {modifications: [{cluster: {operation: add}}, {httpFilter: 3}]}\n",
		"type: TrafficRoute\nmesh: m\nname: r\nconf: {loadBalancer: {ringHash: {}}}\n",
		"- a\n- b", "null", "", "{", `{"type":7}`, "&a [*a, *a]",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		r, err := resource.Unmarshal(doc, nil)
		if err != nil {
			return
		}
		_ = resource.Validate(r)
		js, err := resource.MarshalJSON(r)
		if err != nil {
			t.Fatalf("marshal of a decoded resource failed: %v", err)
		}
		back, err := resource.Unmarshal(js, nil)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", js, err)
		}
		if !proto.Equal(r.Spec, back.Spec) || r.Meta.GetName() != back.Meta.GetName() || r.Meta.GetMesh() != back.Meta.GetMesh() {
			t.Fatalf("round trip changed the resource:\n%s", js)
		}
	})
}
