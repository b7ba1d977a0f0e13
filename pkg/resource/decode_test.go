package resource_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/weftmesh/weft/pkg/resource"
)

func decodeCauses(t *testing.T, err error) []resource.Cause {
	t.Helper()
	var de *resource.DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("want a *DecodeError, got %v", err)
	}
	return de.AllCauses()
}

// A JSON document (what REST clients send) reports its problems with lines
// too, although it is read without the YAML parser when it is valid.
func TestDecodeJSONLines(t *testing.T) {
	doc := "{\n  \"type\": \"Dataplane\",\n  \"mesh\": \"m\",\n  \"name\": \"d\",\n  \"networking\": {\n    \"address\": 7,\n    \"bogus\": true\n  }\n}"
	_, err := resource.Unmarshal([]byte(doc), nil)
	causes := decodeCauses(t, err)
	want := map[string]int{"networking.address": 6, "networking.bogus": 7}
	if len(causes) != len(want) {
		t.Fatalf("causes %v, want %v", causes, want)
	}
	for _, c := range causes {
		if want[c.Field] != c.Line {
			t.Errorf("cause %v: want line %d", c, want[c.Field])
		}
	}
}

// Lines of a multi-document stream are lines of the stream.
func TestDecodeStreamLines(t *testing.T) {
	in := "type: Mesh\nname: a\n---\n# second\ntype: Mesh\nname: b\nmtls: 3\n"
	_, err := resource.UnmarshalAll(strings.NewReader(in))
	causes := decodeCauses(t, err)
	if len(causes) != 1 || causes[0].Field != "mtls" || causes[0].Line != 7 {
		t.Fatalf("causes %v, want mtls on line 7", causes)
	}
	if !strings.Contains(err.Error(), "document 2") || !strings.Contains(err.Error(), "line 7: mtls: must be an object") {
		t.Errorf("error text %q", err)
	}
}

// YAML aliases cannot expand a small document into a huge one.
func TestDecodeAliasBomb(t *testing.T) {
	doc := "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ntype: Mesh\nname: x\n"
	_, err := resource.Unmarshal([]byte(doc), nil)
	if err == nil || !strings.Contains(err.Error(), "expands to more than") {
		t.Fatalf("want the expansion limit, got %v", err)
	}
}

// Kuma's tags are refused without --from-kuma, with the fix in the cause;
// with it they are Weft's.
func TestKumaTagsNeedFromKuma(t *testing.T) {
	doc := []byte("type: Dataplane\nmesh: m\nname: d\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    tags:\n      kuma.io/service: web\n")
	r, err := resource.Unmarshal(doc, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = resource.Validate(r)
	var ve *resource.ValidationError
	if !errors.As(err, &ve) || len(ve.Causes) != 1 || ve.Causes[0].Field != `networking.inbound[0].tags["kuma.io/service"]` || !strings.Contains(ve.Causes[0].Message, "--from-kuma") {
		t.Fatalf("want one cause naming --from-kuma, got %v", err)
	}
	r, err = resource.DecodeOptions{FromKuma: true}.Unmarshal(doc, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := resource.Validate(r); err != nil {
		t.Fatal(err)
	}
}

// A Kuma ingress Dataplane is a ZoneIngress: PUT to dataplanes says so.
func TestIngressDataplaneWantDataplane(t *testing.T) {
	doc := []byte("type: Dataplane\nmesh: default\nname: i\nnetworking:\n  address: 10.0.0.1\n  ingress: {}\n  inbound:\n  - port: 10001\n")
	_, err := resource.Unmarshal(doc, resource.DataplaneType)
	causes := decodeCauses(t, err)
	if len(causes) != 1 || causes[0].Field != "type" || !strings.Contains(causes[0].Message, "ZoneIngress") {
		t.Fatalf("causes %v", causes)
	}
	r, err := resource.Unmarshal(doc, resource.ZoneIngressType)
	if err != nil || r.Meta.GetMesh() != "" || r.Type() != resource.ZoneIngressType {
		t.Fatalf("as a ZoneIngress: %v %v", r, err)
	}
}
