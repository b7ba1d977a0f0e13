package resource_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

func TestValidateFieldPaths(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		want []string // every expected field path, exactly
	}{
		{"valid dataplane", `{"type":"Dataplane","mesh":"m","name":"a.b-1","networking":{"address":"10.0.0.1","inbound":[{"port":80,"tags":{"weft.io/service":"web"}}]}}`, nil},
		{"port 0 and no service", `{"type":"Dataplane","mesh":"m","name":"a","networking":{"address":"10.0.0.1","inbound":[{"port":0,"tags":{}}]}}`,
			[]string{"networking.inbound[0].port", `networking.inbound[0].tags["weft.io/service"]`}},
		{"second inbound bad", `{"type":"Dataplane","mesh":"m","name":"a","networking":{"address":"10.0.0.1","inbound":[{"port":80,"tags":{"weft.io/service":"a"}},{"port":70000,"tags":{"weft.io/service":"b"}}]}}`,
			[]string{"networking.inbound[1].port"}},
		{"service not a label", `{"type":"Dataplane","mesh":"m","name":"a","networking":{"address":"10.0.0.1","inbound":[{"port":80,"tags":{"weft.io/service":"a.b"}}]}}`,
			[]string{`networking.inbound[0].tags["weft.io/service"]`}},
		{"bad protocol", `{"type":"Dataplane","mesh":"m","name":"a","networking":{"address":"10.0.0.1","inbound":[{"port":80,"tags":{"weft.io/service":"a","weft.io/protocol":"udp"}}]}}`,
			[]string{`networking.inbound[0].tags["weft.io/protocol"]`}},
		{"bad names", `{"type":"Dataplane","mesh":"M_1","name":"-x","networking":{"address":"10.0.0.1","inbound":[{"port":80,"tags":{"weft.io/service":"a"}}]}}`,
			[]string{"name", "mesh"}},
		{"mesh name is a label", `{"type":"Mesh","name":"a.b"}`, []string{"name"}},
		{"mesh backends", `{"type":"Mesh","name":"m","mtls":{"enabledBackend":"nope","mode":"lax","backends":[{"name":"ca","type":"builtin","builtin":{"caCert":{"keyType":"rsa","rsaBits":1024}}},{"name":"ca","type":"vault"}]}}`,
			[]string{"mtls.backends[0].builtin.caCert.rsaBits", "mtls.backends[1].name", "mtls.backends[1].type", "mtls.enabledBackend", "mtls.mode"}},
		{"provided needs sources", `{"type":"Mesh","name":"m","mtls":{"backends":[{"name":"ca","type":"provided","provided":{"cert":{"secret":"c"}}}]}}`,
			[]string{"mtls.backends[0].provided.key"}},
		{"permission selectors", `{"type":"TrafficPermission","mesh":"m","name":"p","sources":[{"match":{}}]}`,
			[]string{"sources[0].match", "destinations"}},
		{"timeout durations", `{"type":"Timeout","mesh":"m","name":"t","sources":[{"match":{"weft.io/service":"*"}}],"destinations":[{"match":{"weft.io/service":"*"}}],"conf":{"connectTimeout":"soon","http":{"requestTimeout":"-1s"}}}`,
			[]string{"conf.connectTimeout", "conf.http.requestTimeout"}},
		{"route split", `{"type":"TrafficRoute","mesh":"m","name":"r","sources":[{"match":{"weft.io/service":"*"}}],"destinations":[{"match":{"weft.io/service":"*"}}],"conf":{"split":[{"weight":0,"destination":{}}]}}`,
			[]string{`conf.split[0].destination["weft.io/service"]`, "conf.split"}},
		{"secret data", `{"type":"Secret","mesh":"m","name":"s"}`, []string{"data"}},
		{"global type with mesh", `{"type":"Zone","mesh":"m","name":"z"}`, []string{"mesh"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := resource.Unmarshal([]byte(tc.doc), nil)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			err = resource.Validate(r)
			var got []string
			if err != nil {
				for _, c := range err.(*resource.ValidationError).Causes {
					got = append(got, c.Field)
				}
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("causes %q, want %q (%v)", got, tc.want, err)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	for doc, want := range map[string]string{
		`{"type":"Nope"}`:                    "unknown type",
		`{"name":"x"}`:                       "type: must be set",
		`{"type":"Mesh","mtls":{"bogus":1}}`: "bogus",
		`{"type":"Mesh","version":"abc"}`:    "version",
		`{"type":"Mesh","name":5}`:           "name: must be a string",
		"type: Mesh\n  bad: indent\n-":       "not valid YAML",
		strings.Repeat(" ", 2<<20) + "{}":    "limit",
	} {
		if _, err := resource.Unmarshal([]byte(doc), nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%.40q: got %v, want %q", doc, err, want)
		}
	}
}

func TestUnmarshalAllMultiDocument(t *testing.T) {
	in := "# a mesh\ntype: Mesh\nname: default\n---\n---\ntype: Dataplane\nmesh: default\nname: dp\nnetworking:\n  address: 10.0.0.1\n"
	rs, err := resource.UnmarshalAll(strings.NewReader(in))
	if err != nil || len(rs) != 2 || rs[1].Meta.GetType() != "Dataplane" {
		t.Fatalf("got %d resources, %v", len(rs), err)
	}
	if _, err := resource.UnmarshalAll(strings.NewReader("type: Mesh\n---\ntype: Bad\n")); err == nil || !strings.Contains(err.Error(), "document 2") {
		t.Fatalf("error should name the document: %v", err)
	}
}

func tp(name string, src, dst map[string]string) *resource.Resource {
	return &resource.Resource{Meta: &meshv1.Meta{Type: "TrafficPermission", Mesh: "m", Name: name}, Spec: &meshv1.TrafficPermission{
		Sources: []*meshv1.Selector{{Match: src}}, Destinations: []*meshv1.Selector{{Match: dst}},
	}}
}

func TestMostSpecificPolicyWins(t *testing.T) {
	all := map[string]string{resource.ServiceTag: "*"}
	web := map[string]string{resource.ServiceTag: "web"}
	webV2 := map[string]string{resource.ServiceTag: "web", "version": "v2"}
	backend := map[string]string{resource.ServiceTag: "backend"}
	policies := []*resource.Resource{
		tp("z-all", all, all),
		tp("b-web-to-any", web, all),
		tp("a-web-to-any", web, all), // tie with b-web-to-any: name decides
		tp("web-v2", webV2, backend),
		tp("other", backend, backend),
	}
	for _, tc := range []struct {
		src, dst map[string]string
		want     string
	}{
		{map[string]string{resource.ServiceTag: "web", "version": "v2"}, backend, "web-v2"},
		{map[string]string{resource.ServiceTag: "web", "version": "v1"}, backend, "a-web-to-any"},
		{map[string]string{resource.ServiceTag: "db"}, backend, "z-all"},
		{backend, backend, "other"},
	} {
		got := resource.BestConnectionPolicy(policies, tc.src, tc.dst)
		if got == nil || got.Meta.GetName() != tc.want {
			t.Errorf("%v → %v: got %v, want %s", tc.src, tc.dst, got.Meta.GetName(), tc.want)
		}
	}
	if got := resource.BestConnectionPolicy(policies[3:4], web, backend); got != nil {
		t.Errorf("a selector with an extra tag must not match: %v", got.Meta.GetName())
	}
}

// TestValidateWriteRefusesInlineKeys: the API's write rule refuses inline
// provided-CA keys with field paths (alongside Validate's causes), while
// Validate alone (sync of stored resources) accepts them.
func TestValidateWriteRefusesInlineKeys(t *testing.T) {
	m := resource.New(resource.MeshType, "", "m")
	m.Spec = &meshv1.Mesh{Mtls: &meshv1.Mesh_Mtls{EnabledBackend: "nope", Backends: []*meshv1.CertificateAuthorityBackend{{
		Name: "ca-1", Type: "provided", Provided: &meshv1.CertificateAuthorityBackend_ProvidedConfig{
			Cert: &meshv1.DataSource{Type: &meshv1.DataSource_InlineString{InlineString: "cert"}},
			Key:  &meshv1.DataSource{Type: &meshv1.DataSource_Inline{Inline: []byte("key")}},
		}}}}}
	var ve *resource.ValidationError
	if err := resource.ValidateWrite(m); !errors.As(err, &ve) {
		t.Fatalf("ValidateWrite: %v", err)
	}
	got := map[string]string{}
	for _, c := range ve.Causes {
		got[c.Field] = c.Message
	}
	if !strings.Contains(got["mtls.backends[0].provided.key.inline"], "provided.key.secret") || got["mtls.enabledBackend"] == "" {
		t.Fatalf("causes: %v", ve.Causes)
	}
	if _, ok := got["mtls.backends[0].provided.cert.inlineString"]; ok {
		t.Fatalf("an inline certificate is fine: %v", ve.Causes)
	}
	m.Spec.(*meshv1.Mesh).Mtls.EnabledBackend = "ca-1"
	if err := resource.Validate(m); err != nil {
		t.Fatalf("Validate of a stored legacy mesh: %v", err)
	}
}

// TestValidateWriteTCPLogAddress: a TCP logging backend must be host:port
// with a valid port; a good one passes.
func TestValidateWriteTCPLogAddress(t *testing.T) {
	for addr, want := range map[string]string{
		"":                 "must be host:port",
		"logstash":         "must be host:port",
		":5000":            "must be host:port",
		"logstash:0":       "must be 1..65535",
		"logstash:99999":   "must be 1..65535",
		"logstash:http":    "must be 1..65535",
		"logstash:5000":    "",
		"[2001:db8::1]:50": "",
	} {
		m := resource.New(resource.MeshType, "", "m")
		m.Spec = &meshv1.Mesh{Logging: &meshv1.Logging{Backends: []*meshv1.Logging_Backend{{Name: "tcp-1", Type: "tcp", Address: addr}}}}
		err := resource.ValidateWrite(m)
		var ve *resource.ValidationError
		switch {
		case want == "" && err != nil:
			t.Errorf("%q: %v", addr, err)
		case want != "" && (!errors.As(err, &ve) || len(ve.Causes) != 1 || ve.Causes[0].Field != "logging.backends[0].address" || !strings.Contains(ve.Causes[0].Message, want)):
			t.Errorf("%q: got %v, want logging.backends[0].address: %s", addr, err, want)
		}
	}
}
