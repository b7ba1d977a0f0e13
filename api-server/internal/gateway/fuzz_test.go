package gateway

import (
	"bytes"
	"testing"

	"github.com/weftmesh/weft/pkg/resource"
	apiv1 "github.com/weftmesh/weft/proto/gen/go/weft/api/v1"
)

// FuzzRESTBody drives the REST body path of PUT (gateway decoder → the
// server's decode → validation) with arbitrary bytes: no panic, and a body
// over the size limit is always refused.
func FuzzRESTBody(f *testing.F) {
	f.Add([]byte(`{"type":"Dataplane","mesh":"default","name":"web-1","networking":{"address":"10.0.0.1","inbound":[{"port":8080,"tags":{"weft.io/service":"web"}}]}}`))
	f.Add([]byte(`{"type":"Mesh"}`))
	f.Add([]byte(``))
	f.Add([]byte(`[1,2,3]`))
	f.Add([]byte("\x00\xff"))
	m := NewMarshaler()
	f.Fuzz(func(t *testing.T, body []byte) {
		var res *apiv1.Resource
		err := m.NewDecoder(bytes.NewReader(body)).Decode(&res)
		if len(body) > MaxBodySize && err == nil {
			t.Fatal("oversized body accepted")
		}
		if err != nil {
			return
		}
		for _, typ := range []*resource.Type{resource.DataplaneType, resource.MeshType, nil} {
			r, err := resource.FromAPI(res, typ)
			if err != nil {
				continue
			}
			_ = resource.Validate(r)
			if _, err := resource.ToAPI(r); err != nil {
				t.Fatalf("decoded resource does not convert back: %v", err)
			}
		}
	})
}
