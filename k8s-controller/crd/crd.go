// Package crd is the Kubernetes face of Weft's resource model: one
// CustomResourceDefinition per user-writable resource type in the group
// weft.io/v1alpha1, generated from the resource registry (pkg/resource)
// and the types' protobuf descriptors (the model the REST API decodes
// with), and the conversion of a custom resource to a Weft resource.
//
// A custom resource is cluster-scoped, Kuma-shaped:
//
//	apiVersion: weft.io/v1alpha1
//	kind: TrafficPermission
//	mesh: default            # mesh-scoped kinds only; default "default"
//	metadata: {name: allow-web}
//	spec: {...}              # the type's fields, as in the REST API's flat form
//	status: {conditions: [...], causes: [...]}
package crd

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/weftmesh/weft/pkg/resource"
)

// Group and Version of every Weft CRD.
const (
	Group   = "weft.io"
	Version = "v1alpha1"
	// DefaultMesh is the mesh of a mesh-scoped CR that names none.
	DefaultMesh = "default"
)

// Kind is one Weft type as a Kubernetes resource.
type Kind struct {
	Type *resource.Type
	// Kind is the type name (TrafficPermission); Plural the lower-case
	// resource name (trafficpermissions).
	Kind   string
	Plural string
}

// GVR is the kind's group/version/resource.
func (k Kind) GVR() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: Group, Version: Version, Resource: k.Plural}
}

// Kinds are the CRD kinds, sorted by name: every type users write. System
// types (DataplaneInsight, ZoneInsight, VirtualIP) are written by the
// control plane and have none; read them through the REST API.
func Kinds() []Kind {
	var out []Kind
	for _, t := range resource.Types() {
		if t.System {
			continue
		}
		out = append(out, Kind{Type: t, Kind: t.Name, Plural: strings.ReplaceAll(t.Collection, "-", "")})
	}
	return out
}

// KindOf finds the kind of a Kubernetes kind name or plural resource name.
func KindOf(s string) (Kind, bool) {
	for _, k := range Kinds() {
		if k.Kind == s || k.Plural == s {
			return k, true
		}
	}
	return Kind{}, false
}

// CRD returns the kind's CustomResourceDefinition.
func (k Kind) CRD() *apiextv1.CustomResourceDefinition {
	spec := schemaOf(k.Type.NewSpec().ProtoReflect().Descriptor(), map[protoreflect.FullName]bool{})
	spec.Description = fmt.Sprintf("The %s's fields, as in the REST API's flat form (docs/api-server.md).", k.Kind)
	props := map[string]apiextv1.JSONSchemaProps{
		"apiVersion": {Type: "string"},
		"kind":       {Type: "string"},
		"metadata":   {Type: "object"},
		"spec":       spec,
		"status":     statusSchema(),
	}
	if k.Type.MeshScoped() {
		def, _ := json.Marshal(DefaultMesh)
		props["mesh"] = apiextv1.JSONSchemaProps{Type: "string", Description: "The mesh the resource belongs to.", Default: &apiextv1.JSON{Raw: def}}
	}
	cols := []apiextv1.CustomResourceColumnDefinition{
		{Name: "Accepted", Type: "string", JSONPath: `.status.conditions[?(@.type=="Accepted")].status`},
		{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"},
	}
	if k.Type.MeshScoped() {
		cols = append([]apiextv1.CustomResourceColumnDefinition{{Name: "Mesh", Type: "string", JSONPath: ".mesh"}}, cols...)
	}
	return &apiextv1.CustomResourceDefinition{
		TypeMeta: metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition"},
		ObjectMeta: metav1.ObjectMeta{Name: k.Plural + "." + Group, Labels: map[string]string{
			"app.kubernetes.io/part-of": "weft",
		}},
		Spec: apiextv1.CustomResourceDefinitionSpec{
			Group: Group,
			Names: apiextv1.CustomResourceDefinitionNames{
				Plural: k.Plural, Singular: strings.ToLower(k.Kind), Kind: k.Kind, ListKind: k.Kind + "List",
				Categories: []string{"weft"},
			},
			Scope: apiextv1.ClusterScoped,
			Versions: []apiextv1.CustomResourceDefinitionVersion{{
				Name: Version, Served: true, Storage: true,
				Schema:                   &apiextv1.CustomResourceValidation{OpenAPIV3Schema: &apiextv1.JSONSchemaProps{Type: "object", Properties: props}},
				Subresources:             &apiextv1.CustomResourceSubresources{Status: &apiextv1.CustomResourceSubresourceStatus{}},
				AdditionalPrinterColumns: cols,
			}},
		},
	}
}

func statusSchema() apiextv1.JSONSchemaProps {
	str := apiextv1.JSONSchemaProps{Type: "string"}
	cond := apiextv1.JSONSchemaProps{Type: "object", Required: []string{"type", "status"}, Properties: map[string]apiextv1.JSONSchemaProps{
		"type": str, "status": str, "reason": str, "message": str,
		"observedGeneration": {Type: "integer", Format: "int64"},
		"lastTransitionTime": {Type: "string", Format: "date-time"},
	}}
	cause := apiextv1.JSONSchemaProps{Type: "object", Properties: map[string]apiextv1.JSONSchemaProps{"field": str, "message": str}}
	return apiextv1.JSONSchemaProps{Type: "object", Description: "Written by the k8s-controller.", Properties: map[string]apiextv1.JSONSchemaProps{
		"observedGeneration": {Type: "integer", Format: "int64"},
		"conditions": {Type: "array", Items: &apiextv1.JSONSchemaPropsOrArray{Schema: &cond},
			XListType: ptr("map"), XListMapKeys: []string{"type"}},
		"causes": {Type: "array", Description: "The field-path errors of a refused spec, as the REST API reports them.",
			Items: &apiextv1.JSONSchemaPropsOrArray{Schema: &cause}},
	}}
}

func ptr[T any](v T) *T { return &v }

// schemaOf is the OpenAPI v3 schema of a message's protojson form.
// Recursive messages are cut at the second visit (preserve-unknown-fields):
// CRD schemas cannot refer to themselves.
func schemaOf(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) apiextv1.JSONSchemaProps {
	if s, ok := wellKnown(md.FullName()); ok {
		return s
	}
	if seen[md.FullName()] {
		return apiextv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptr(true)}
	}
	seen[md.FullName()] = true
	defer delete(seen, md.FullName())
	props := map[string]apiextv1.JSONSchemaProps{}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		props[f.JSONName()] = fieldSchema(f, seen)
	}
	return apiextv1.JSONSchemaProps{Type: "object", Properties: props}
}

func fieldSchema(f protoreflect.FieldDescriptor, seen map[protoreflect.FullName]bool) apiextv1.JSONSchemaProps {
	if f.IsMap() {
		v := singular(f.MapValue(), seen)
		return apiextv1.JSONSchemaProps{Type: "object", AdditionalProperties: &apiextv1.JSONSchemaPropsOrBool{Allows: true, Schema: &v}}
	}
	s := singular(f, seen)
	if f.IsList() {
		return apiextv1.JSONSchemaProps{Type: "array", Items: &apiextv1.JSONSchemaPropsOrArray{Schema: &s}}
	}
	return s
}

func singular(f protoreflect.FieldDescriptor, seen map[protoreflect.FullName]bool) apiextv1.JSONSchemaProps {
	switch f.Kind() {
	case protoreflect.BoolKind:
		return apiextv1.JSONSchemaProps{Type: "boolean"}
	case protoreflect.StringKind:
		return apiextv1.JSONSchemaProps{Type: "string"}
	case protoreflect.BytesKind:
		return apiextv1.JSONSchemaProps{Type: "string", Format: "byte"}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return apiextv1.JSONSchemaProps{Type: "integer", Format: "int32"}
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return apiextv1.JSONSchemaProps{Type: "integer", Format: "int32", Minimum: ptr(0.0)}
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		// protojson writes 64-bit integers as strings and reads both.
		return apiextv1.JSONSchemaProps{XIntOrString: true}
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return apiextv1.JSONSchemaProps{Type: "number"}
	case protoreflect.EnumKind:
		vals := f.Enum().Values()
		var enum []apiextv1.JSON
		names := make([]string, 0, vals.Len())
		for i := 0; i < vals.Len(); i++ {
			names = append(names, string(vals.Get(i).Name()))
		}
		sort.Strings(names)
		for _, n := range names {
			b, _ := json.Marshal(n)
			enum = append(enum, apiextv1.JSON{Raw: b})
		}
		return apiextv1.JSONSchemaProps{Type: "string", Enum: enum}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return schemaOf(f.Message(), seen)
	}
	return apiextv1.JSONSchemaProps{XPreserveUnknownFields: ptr(true)}
}

// wellKnown maps the protobuf well-known types to their protojson form.
func wellKnown(n protoreflect.FullName) (apiextv1.JSONSchemaProps, bool) {
	switch n {
	case "google.protobuf.Duration":
		return apiextv1.JSONSchemaProps{Type: "string", Description: "A duration such as 1.5s or 300ms."}, true
	case "google.protobuf.Timestamp":
		return apiextv1.JSONSchemaProps{Type: "string", Format: "date-time"}, true
	case "google.protobuf.Struct", "google.protobuf.Any":
		return apiextv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptr(true)}, true
	case "google.protobuf.Value", "google.protobuf.ListValue":
		return apiextv1.JSONSchemaProps{XPreserveUnknownFields: ptr(true)}, true
	case "google.protobuf.BoolValue":
		return apiextv1.JSONSchemaProps{Type: "boolean"}, true
	case "google.protobuf.StringValue":
		return apiextv1.JSONSchemaProps{Type: "string"}, true
	case "google.protobuf.BytesValue":
		return apiextv1.JSONSchemaProps{Type: "string", Format: "byte"}, true
	case "google.protobuf.Int32Value", "google.protobuf.UInt32Value":
		return apiextv1.JSONSchemaProps{Type: "integer", Format: "int32"}, true
	case "google.protobuf.Int64Value", "google.protobuf.UInt64Value":
		return apiextv1.JSONSchemaProps{XIntOrString: true}, true
	case "google.protobuf.FloatValue", "google.protobuf.DoubleValue":
		return apiextv1.JSONSchemaProps{Type: "number"}, true
	case "google.protobuf.Empty":
		return apiextv1.JSONSchemaProps{Type: "object"}, true
	}
	return apiextv1.JSONSchemaProps{}, false
}
