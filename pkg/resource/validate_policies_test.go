package resource_test

import (
	"strings"
	"testing"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

func TestCheckPolicyReferences(t *testing.T) {
	mesh := &meshv1.Mesh{
		Logging: &meshv1.Logging{Backends: []*meshv1.Logging_Backend{{Name: "file", Type: "file", Path: "/tmp/x"}}},
		Tracing: &meshv1.Tracing{DefaultBackend: "zipkin", Backends: []*meshv1.Tracing_Backend{{Name: "zipkin", Type: "zipkin", Url: "http://z:9411"}}},
	}
	tl := func(b string) *resource.Resource {
		return &resource.Resource{Meta: &meshv1.Meta{Type: "TrafficLog", Mesh: "m", Name: "l"}, Spec: &meshv1.TrafficLog{Conf: &meshv1.TrafficLog_Conf{Backend: b}}}
	}
	tt := func(b string) *resource.Resource {
		return &resource.Resource{Meta: &meshv1.Meta{Type: "TrafficTrace", Mesh: "m", Name: "t"}, Spec: &meshv1.TrafficTrace{Conf: &meshv1.TrafficTrace_Conf{Backend: b}}}
	}
	for _, tc := range []struct {
		r    *resource.Resource
		want string // "" = valid
	}{
		{tl("file"), ""},
		{tl("nope"), `conf.backend: logging backend "nope" is not defined`},
		{tl(""), ""}, // the mesh default; with none, nothing is logged
		{tt(""), ""},
		{tt("zipkin"), ""},
		{tt("jaeger"), `conf.backend: tracing backend "jaeger" is not defined`},
	} {
		err := resource.CheckPolicyReferences(tc.r, mesh)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s %q: %v, want %q", tc.r.Meta.GetType(), tc.r.Spec, err, tc.want)
		}
	}
	if err := resource.CheckPolicyReferences(tl("nope"), nil); err != nil {
		t.Errorf("no mesh: %v", err)
	}
}
