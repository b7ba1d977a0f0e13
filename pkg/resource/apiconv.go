package resource

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	apiv1 "github.com/weftmesh/weft/proto/gen/go/weft/api/v1"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// FlatJSONTypeURL marks an apiv1.Resource whose spec is the raw flat JSON
// document (what REST clients send): the server decodes it, so decoding
// errors carry field paths like validation errors do.
const FlatJSONTypeURL = "type.weft.io/weft.FlatJSON"

// ToAPI converts a resource to its gRPC API form.
// Key material is never returned: see Redact.
func ToAPI(r *Resource) (*apiv1.Resource, error) {
	spec, err := anypb.New(Redact(r.Spec))
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", r.Key(), err)
	}
	return &apiv1.Resource{Meta: r.Meta, Spec: spec}, nil
}

// FromAPI converts the gRPC API form to a resource of type want (any type
// when nil). Flat JSON specs are decoded with Unmarshal.
func FromAPI(a *apiv1.Resource, want *Type) (*Resource, error) {
	if a == nil {
		return nil, &DecodeError{Err: fmt.Errorf("resource is missing")}
	}
	if a.GetSpec().GetTypeUrl() == FlatJSONTypeURL {
		return Unmarshal(a.GetSpec().GetValue(), want)
	}
	meta := a.GetMeta()
	if meta == nil {
		meta = &meshv1.Meta{}
	}
	t := want
	if meta.GetType() != "" {
		found, ok := ByName(meta.GetType())
		if !ok {
			return nil, &DecodeError{Field: "type", Err: fmt.Errorf("unknown type %q", meta.GetType())}
		}
		if want != nil && found != want {
			return nil, &DecodeError{Field: "type", Err: fmt.Errorf("is %s, expected %s", found.Name, want.Name)}
		}
		t = found
	}
	if t == nil {
		return nil, &DecodeError{Field: "type", Err: fmt.Errorf("must be set")}
	}
	spec := t.NewSpec()
	if a.GetSpec() != nil {
		if err := a.GetSpec().UnmarshalTo(spec); err != nil {
			return nil, &DecodeError{Field: "spec", Err: fmt.Errorf("is not a %s: %w", proto.MessageName(spec), err)}
		}
	}
	m := proto.Clone(meta).(*meshv1.Meta)
	m.Type = t.Name
	return &Resource{Meta: m, Spec: spec}, nil
}

// Redacted replaces key material that a read must not return.
const Redacted = "[redacted]"

// Redact returns spec with private key material removed: the inline
// provided-CA keys of a Mesh (refused on write since, but a Mesh stored by
// an older version may still hold one). spec itself is not changed; a spec
// with nothing to redact is returned as is.
func Redact(spec proto.Message) proto.Message {
	m, ok := spec.(*meshv1.Mesh)
	if !ok {
		return spec
	}
	var out *meshv1.Mesh
	for i, b := range m.GetMtls().GetBackends() {
		switch b.GetProvided().GetKey().GetType().(type) {
		case *meshv1.DataSource_Inline, *meshv1.DataSource_InlineString:
			if out == nil {
				out = proto.Clone(m).(*meshv1.Mesh)
			}
			out.Mtls.Backends[i].Provided.Key = &meshv1.DataSource{Type: &meshv1.DataSource_InlineString{InlineString: Redacted}}
		}
	}
	if out == nil {
		return spec
	}
	return out
}
