package protocol

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	syncv1 "github.com/weftmesh/weft/proto/gen/go/weft/sync/v1"
)

func dataplane(mesh, name string) *resource.Resource {
	r := resource.New(resource.DataplaneType, mesh, name)
	r.Spec = &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: "10.0.0.1",
		Inbound: []*meshv1.Dataplane_Networking_Inbound{{Port: 8080, Tags: map[string]string{resource.ServiceTag: "web"}}}}}
	return r
}

func wire(r *resource.Resource) *syncv1.SyncResource {
	t := r.Type()
	spec, _ := MarshalSpec(r.Spec)
	w := WireName(t, r.Meta.GetMesh(), r.Meta.GetName())
	return &syncv1.SyncResource{Name: w, Version: Version(w, r.Meta.GetLabels(), spec), Meta: r.Meta, Spec: spec}
}

func validResponse() *syncv1.DeltaResponse {
	return &syncv1.DeltaResponse{TypeUrl: TypeURL(resource.DataplaneType), Nonce: "1",
		Resources: []*syncv1.SyncResource{wire(dataplane("default", "web-1"))}, RemovedResources: []string{"default/web-0"}}
}

func TestDecodeResponse(t *testing.T) {
	accept := func(t *resource.Type) bool { return t == resource.DataplaneType }
	d, err := DecodeResponse(validResponse(), accept)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Resources) != 1 || d.Resources[0].Resource.Meta.GetName() != "web-1" || len(d.Removed) != 1 {
		t.Fatalf("decoded %+v", d)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*syncv1.DeltaResponse)
		want   string
	}{
		{"unknown type", func(m *syncv1.DeltaResponse) { m.TypeUrl = "type.googleapis.com/x.Y" }, "unknown type URL"},
		{"type not accepted", func(m *syncv1.DeltaResponse) { m.TypeUrl = TypeURL(resource.MeshType) }, "not accepted"},
		{"no nonce", func(m *syncv1.DeltaResponse) { m.Nonce = "" }, "nonce"},
		{"bad name", func(m *syncv1.DeltaResponse) { m.Resources[0].Name = "web-1" }, "mesh/name"},
		{"meta mismatch", func(m *syncv1.DeltaResponse) { m.Resources[0].Meta.Name = "other" }, "meta names"},
		{"version mismatch", func(m *syncv1.DeltaResponse) { m.Resources[0].Version = "abc" }, "does not match its content"},
		{"garbage spec", func(m *syncv1.DeltaResponse) {
			m.Resources[0].Spec = []byte{0xff, 0xff}
			m.Resources[0].Version = Version(m.Resources[0].Name, nil, m.Resources[0].Spec)
		}, "spec is not"},
		{"invalid spec", func(m *syncv1.DeltaResponse) {
			r := dataplane("default", "web-1")
			r.Spec.(*meshv1.Dataplane).Networking.Inbound[0].Tags = nil
			m.Resources[0] = wire(r)
		}, "tag is required"},
		{"duplicate", func(m *syncv1.DeltaResponse) { m.RemovedResources = []string{"default/web-1"} }, "both updated and removed"},
		{"too many", func(m *syncv1.DeltaResponse) {
			for range MaxResourcesPerResponse {
				m.Resources = append(m.Resources, m.Resources[0])
			}
		}, "at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := validResponse()
			tc.mutate(m)
			_, err := DecodeResponse(m, accept)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestCheckRequest(t *testing.T) {
	serves := func(t *resource.Type) bool { return t == resource.MeshType || t == resource.DataplaneType }
	ok := &syncv1.DeltaRequest{TypeUrl: TypeURL(resource.DataplaneType), InitialResourceVersions: map[string]string{"default/a": "v"}}
	if _, err := CheckRequest(ok, serves); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []*syncv1.DeltaRequest{
		{TypeUrl: "nope"},
		{TypeUrl: TypeURL(resource.SecretType)},
		{TypeUrl: TypeURL(resource.DataplaneType), InitialResourceVersions: map[string]string{"a": "v"}},
		{TypeUrl: TypeURL(resource.MeshType), InitialResourceVersions: map[string]string{"a/b": "v"}},
		{TypeUrl: TypeURL(resource.MeshType), InitialResourceVersions: map[string]string{"a": ""}},
		{TypeUrl: TypeURL(resource.MeshType), ResponseNonce: "1", InitialResourceVersions: map[string]string{"a": "v"}},
		{TypeUrl: TypeURL(resource.MeshType), ResponseNonce: strings.Repeat("1", 100)},
	} {
		if _, err := CheckRequest(bad, serves); err == nil {
			t.Errorf("accepted %v", bad)
		}
	}
}

func TestVersionIgnoresLabelOrder(t *testing.T) {
	a := Version("m/n", map[string]string{"a": "1", "b": "2"}, []byte("x"))
	b := Version("m/n", map[string]string{"b": "2", "a": "1"}, []byte("x"))
	if a != b || a == Version("m/n", map[string]string{"a": "12"}, []byte("x")) {
		t.Fatal("version is not a function of content only")
	}
}

// FuzzDecodeMessage feeds arbitrary bytes through what a peer's message
// goes through: proto decoding of a SyncMessage, then the response decoder
// and the request checker. It must never panic, and whatever the decoder
// accepts must be a valid resource whose version matches its content.
func FuzzDecodeMessage(f *testing.F) {
	for _, m := range []*syncv1.SyncMessage{
		{Message: &syncv1.SyncMessage_Response{Response: validResponse()}},
		{Message: &syncv1.SyncMessage_Request{Request: &syncv1.DeltaRequest{TypeUrl: TypeURL(resource.MeshType),
			InitialResourceVersions: map[string]string{"default": "abc"}}}},
		{Message: &syncv1.SyncMessage_Request{Request: &syncv1.DeltaRequest{TypeUrl: TypeURL(resource.MeshType), ResponseNonce: "3",
			ErrorDetail: &syncv1.ErrorDetail{Code: 3, Message: "bad"}}}},
		{Message: &syncv1.SyncMessage_Hello{Hello: &syncv1.Hello{Zone: "zone-1"}}},
	} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	all := func(*resource.Type) bool { return true }
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > MaxMessageSize {
			return
		}
		m := &syncv1.SyncMessage{}
		if proto.Unmarshal(data, m) != nil {
			return
		}
		if req := m.GetRequest(); req != nil {
			_, _ = CheckRequest(req, all)
		}
		resp := m.GetResponse()
		if resp == nil {
			return
		}
		d, err := DecodeResponse(resp, all)
		if err != nil {
			return
		}
		for _, in := range d.Resources {
			if err := resource.Validate(in.Resource); err != nil {
				t.Fatalf("accepted an invalid resource: %v", err)
			}
			v, err := ResourceVersion(in.Wire, in.Resource)
			if err != nil {
				t.Fatal(err)
			}
			_ = v // re-serialisation may legitimately differ (unknown fields)
			if _, _, err := SplitName(d.Type, in.Wire); err != nil {
				t.Fatalf("accepted a bad name: %v", err)
			}
		}
	})
}

func TestDecodeRemovedTimes(t *testing.T) {
	accept := func(t *resource.Type) bool { return t == resource.DataplaneType }
	m := validResponse()
	m.RemovedTimes = map[string]*timestamppb.Timestamp{"default/web-0": timestamppb.Now()}
	d, err := DecodeResponse(m, accept)
	if err != nil || d.RemovedTimes["default/web-0"].IsZero() {
		t.Fatalf("%v %v", d, err)
	}
	m.RemovedTimes["default/web-1"] = timestamppb.Now()
	if _, err := DecodeResponse(m, accept); err == nil {
		t.Fatal("accepted a removal time for a resource that is not removed")
	}
}
