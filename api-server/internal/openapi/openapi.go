// Package openapi builds the api-server's OpenAPI document (GET
// /openapi.json) from the resource registry, so it describes what the REST
// API really accepts and returns: the flat resource shape of every type
// ({type, mesh, name, <spec fields>, metadata}), lists, "+insights" lists
// and items, and the {title, details, causes} error. The schemas are JSON
// Schema 2020-12 (OpenAPI 3.1), derived from the protobuf descriptors the
// way protojson and the flat codec write them.
package openapi

import (
	"encoding/json"
	"sort"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/weftmesh/weft/pkg/resource"
	apiv1 "github.com/weftmesh/weft/proto/gen/go/weft/api/v1"
)

type obj = map[string]any

// Document returns the OpenAPI 3.1 document for this Weft version.
func Document(version string) ([]byte, error) {
	b := &builder{schemas: obj{}}
	b.schemas["Error"] = obj{
		"type": "object", "required": []string{"title", "details"},
		"properties": obj{
			"title":   obj{"type": "string"},
			"details": obj{"type": "string"},
			"causes": obj{"type": "array", "items": obj{
				"type": "object", "required": []string{"field", "message"},
				"properties": obj{"field": obj{"type": "string"}, "message": obj{"type": "string"}},
			}},
		},
	}
	b.schemas["Index"] = obj{"type": "object", "required": []string{"product", "version", "mode"}, "properties": obj{
		"product": obj{"const": "Weft"}, "version": obj{"type": "string"},
		"mode": obj{"enum": []string{"standalone", "global", "zone"}},
		"zone": obj{"type": "string"}, "instanceId": obj{"type": "string"},
	}}
	paths := obj{"/": obj{"get": op("The control plane", ref("Index"))}}
	for _, t := range resource.Types() {
		b.resource(t)
		list := b.list(t, false)
		item, coll := "/"+t.Collection+"/{name}", "/"+t.Collection
		params := []any{param("name")}
		if t.MeshScoped() {
			paths[coll] = obj{"get": listOp(t, "in every mesh", list)}
			item, coll = "/meshes/{mesh}/"+t.Collection+"/{name}", "/meshes/{mesh}/"+t.Collection
			params = []any{param("mesh"), param("name")}
		}
		if t == resource.MeshType {
			paths["/meshes"] = obj{"get": listOp(t, "", list)}
			item, params = "/meshes/{name}", []any{param("name")}
		} else {
			paths[coll] = obj{"get": withParams(listOp(t, "", list), params[:len(params)-1])}
		}
		ops := obj{"get": withParams(op(t.Name, ref(t.Name)), params)}
		if !t.System {
			put := withParams(op("Create (201) or update (200) a "+t.Name, ref(t.Name)), params)
			put["requestBody"] = obj{"required": true, "content": obj{"application/json": obj{"schema": ref(t.Name)}}}
			put["responses"].(obj)["201"] = put["responses"].(obj)["200"]
			ops["put"] = put
			del := withParams(op("Delete a "+t.Name, obj{"type": "object"}), params)
			if t == resource.MeshType {
				del["parameters"] = append(del["parameters"].([]any), obj{"name": "force", "in": "query", "schema": obj{"type": "boolean"},
					"description": "delete even while dataplanes in the mesh are online"})
			}
			ops["delete"] = del
		}
		paths[item] = ops
		if t.Insight != nil {
			insList := b.list(t, true)
			ip := params[:len(params)-1]
			base := "/" + t.Collection
			if t.MeshScoped() {
				base = "/meshes/{mesh}/" + t.Collection
			}
			paths[base+"+insights"] = obj{"get": withParams(listOp(t, "with insights", insList), ip)}
			one := withParams(op(t.Name+" with its insight", ref(t.Name+"WithInsight")), params)
			paths[base+"+insights/{name}"] = obj{"get": one}
			paths[base+"/{name}+insights"] = obj{"get": one}
		}
	}
	b.schemas["DataplanePolicies"] = obj{"type": "object", "required": []string{"mesh", "dataplane", "total", "policies"}, "properties": obj{
		"mesh": obj{"type": "string"}, "dataplane": obj{"type": "string"}, "total": obj{"type": "integer"},
		"policies": obj{"type": "array", "items": obj{"type": "object", "required": []string{"type", "name", "role", "service"}, "properties": obj{
			"type": obj{"type": "string"}, "name": obj{"type": "string"},
			"role": obj{"enum": []string{"destination", "source", "selected"}}, "service": obj{"type": "string"},
		}}},
	}}
	paths["/meshes/{mesh}/dataplanes/{name}/policies"] = obj{"get": withParams(op("The policies that apply to a dataplane", ref("DataplanePolicies")),
		[]any{param("mesh"), param("name")})}
	b.schemas["MeshCA"] = obj{"type": "object", "required": []string{"mesh", "enabledBackend", "backends"}, "properties": obj{
		"mesh": obj{"type": "string"}, "enabledBackend": obj{"type": "string"},
		"backends": obj{"type": "array", "items": obj{"type": "object", "required": []string{"name", "type", "enabled"}, "additionalProperties": false, "properties": obj{
			"name": obj{"type": "string"}, "type": obj{"type": "string"}, "enabled": obj{"type": "boolean"},
			"notAfter": obj{"type": "string", "format": "date-time", "description": "the root certificate's expiry; absent when it could not be read (error says why)"},
			"error":    obj{"type": "string"},
		}}},
	}}
	paths["/meshes/{mesh}/ca"] = obj{"get": withParams(op("When the root certificate of each CA backend of a mesh expires", ref("MeshCA")), []any{param("mesh")})}
	b.schemas["GlobalInsight"] = obj{"type": "object", "required": []string{"zone", "state"}, "properties": obj{
		"zone": obj{"type": "string"}, "state": obj{"enum": []string{resource.ZoneOnline, resource.ZoneOffline}},
		"reason": obj{"type": "string"}, "insight": ref(resource.ZoneInsightType.Name),
	}}
	paths["/global-insight"] = obj{"get": op("On a zone control plane: its link to global", ref("GlobalInsight"))}
	b.tokens(paths)
	inspectPaths(b, paths)
	doc := obj{
		"openapi": "3.1.0",
		"info": obj{"title": "Weft API", "version": version,
			"description": "Weft's REST API. Every request carries Authorization: Bearer <token>. Resources are flat: {type, mesh, name, <spec fields>} plus read-only metadata."},
		"components": obj{
			"schemas":         b.schemas,
			"securitySchemes": obj{"bearer": obj{"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
		},
		"security": []any{obj{"bearer": []string{}}},
		"paths":    paths,
	}
	return json.MarshalIndent(doc, "", "  ")
}

func ref(name string) obj { return obj{"$ref": "#/components/schemas/" + name} }

func param(name string) obj {
	return obj{"name": name, "in": "path", "required": true, "schema": obj{"type": "string"}}
}

func withParams(o obj, params []any) obj {
	if len(params) > 0 {
		o["parameters"] = append([]any(nil), params...)
	}
	return o
}

// op is an operation answering schema with 200, and the error shape
// otherwise.
func op(summary string, schema obj) obj {
	return obj{"summary": summary, "responses": obj{
		"200":     obj{"description": "OK", "content": obj{"application/json": obj{"schema": schema}}},
		"default": obj{"description": "error", "content": obj{"application/json": obj{"schema": ref("Error")}}},
	}}
}

func listOp(t *resource.Type, what string, list obj) obj {
	o := op("List "+t.Collection+" "+what, list)
	o["parameters"] = []any{
		obj{"name": "size", "in": "query", "schema": obj{"type": "integer", "minimum": 1, "maximum": 1000}},
		obj{"name": "offset", "in": "query", "schema": obj{"type": "string"}},
	}
	return o
}

type builder struct {
	schemas obj
	// wire64 is how 64-bit integers are written in the messages being
	// described: nil as numbers (the flat resource codec), else the schema
	// protojson's strings get (TokenService bodies go through protojson:
	// it writes "1" and reads both 1 and "1").
	wire64 obj
}

// resource adds the flat schema of t (and, with an insight, of an item
// with its insight).
func (b *builder) resource(t *resource.Type) {
	props := obj{
		"type":             obj{"const": t.Name},
		"name":             obj{"type": "string"},
		"creationTime":     obj{"type": "string", "format": "date-time"},
		"modificationTime": obj{"type": "string", "format": "date-time"},
		"version":          obj{"type": "string", "description": "send it back to update only while unchanged (409 otherwise)"},
		"origin":           obj{"type": "string"},
		"labels":           obj{"type": "object", "additionalProperties": obj{"type": "string"}},
	}
	required := []string{"type", "name"}
	if t.MeshScoped() {
		props["mesh"] = obj{"type": "string"}
	}
	spec := b.message(t.NewSpec().ProtoReflect().Descriptor())
	for k, v := range spec["properties"].(obj) {
		props[k] = v
	}
	b.schemas[t.Name] = obj{"type": "object", "properties": props, "required": required, "additionalProperties": false}
	if t.Insight != nil {
		b.resource(t.Insight)
		with := obj{"type": "object", "properties": obj{}, "required": required}
		for k, v := range props {
			with["properties"].(obj)[k] = v
		}
		with["properties"].(obj)["insight"] = ref(t.Insight.Name)
		if t == resource.ZoneType {
			with["properties"].(obj)["state"] = obj{"enum": []string{resource.ZoneOnline, resource.ZoneOffline}}
			with["properties"].(obj)["reason"] = obj{"type": "string"}
			with["required"] = append(required, "state")
		}
		with["additionalProperties"] = false
		b.schemas[t.Name+"WithInsight"] = with
	}
}

// list is the schema of a page of t.
func (b *builder) list(t *resource.Type, insights bool) obj {
	item := ref(t.Name)
	if insights {
		item = ref(t.Name + "WithInsight")
	}
	return obj{"type": "object", "required": []string{"total", "items"}, "properties": obj{
		"total": obj{"type": "integer"}, "items": obj{"type": "array", "items": item},
		"next": obj{"type": []string{"string", "null"}, "description": "full URL of the next page, null on the last"}, "nextOffset": obj{"type": "string"},
	}}
}

// message is the inline JSON schema of a message as protojson writes it
// (camelCase names; 64-bit integers as numbers, see resource.MarshalJSON).
func (b *builder) message(md protoreflect.MessageDescriptor) obj {
	props := obj{}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		props[fd.JSONName()] = b.field(fd)
	}
	return obj{"type": "object", "properties": props, "additionalProperties": false}
}

func (b *builder) field(fd protoreflect.FieldDescriptor) obj {
	switch {
	case fd.IsMap():
		return obj{"type": "object", "additionalProperties": b.single(fd.MapValue())}
	case fd.IsList():
		return obj{"type": "array", "items": b.single(fd)}
	}
	return b.single(fd)
}

// single is the schema of one value of fd (not its list or map).
func (b *builder) single(fd protoreflect.FieldDescriptor) obj {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return obj{"type": "boolean"}
	case protoreflect.StringKind:
		return obj{"type": "string"}
	case protoreflect.BytesKind:
		return obj{"type": "string", "contentEncoding": "base64"}
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return obj{"type": "number"}
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		names := make([]string, 0, vals.Len())
		for i := 0; i < vals.Len(); i++ {
			names = append(names, string(vals.Get(i).Name()))
		}
		sort.Strings(names)
		return obj{"enum": names}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return b.messageRef(fd.Message())
	case protoreflect.Int64Kind, protoreflect.Uint64Kind, protoreflect.Sint64Kind, protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind:
		if b.wire64 != nil {
			c := obj{}
			for k, v := range b.wire64 {
				c[k] = v
			}
			return c
		}
	}
	return obj{"type": "integer"}
}

// messageRef refers to a message's schema in components (cycles allowed);
// well-known types are inlined as protojson writes them.
func (b *builder) messageRef(md protoreflect.MessageDescriptor) obj {
	switch md.FullName() {
	case "google.protobuf.Timestamp":
		return obj{"type": "string", "format": "date-time"}
	case "google.protobuf.Duration":
		return obj{"type": "string", "pattern": `^-?[0-9]+(\.[0-9]+)?s$`}
	case "google.protobuf.BoolValue":
		return obj{"type": "boolean"}
	case "google.protobuf.StringValue":
		return obj{"type": "string"}
	case "google.protobuf.UInt32Value", "google.protobuf.Int32Value", "google.protobuf.UInt64Value", "google.protobuf.Int64Value":
		return obj{"type": []string{"integer", "string"}}
	case "google.protobuf.DoubleValue", "google.protobuf.FloatValue":
		return obj{"type": "number"}
	case "google.protobuf.Struct":
		return obj{"type": "object"}
	case "google.protobuf.Value":
		return obj{}
	case "google.protobuf.Any":
		return obj{"type": "object"}
	}
	name := string(md.FullName())
	if _, ok := b.schemas[name]; !ok {
		b.schemas[name] = obj{} // placeholder against cycles
		b.schemas[name] = b.message(md)
	}
	return ref(name)
}

// tokenRoutes are the token endpoints (gRPC TokenService over REST, body
// "*"): their request and response bodies are the TokenService messages,
// described field by field the way protojson reads and writes them.
var tokenRoutes = []struct {
	path, summary string
	req, resp     protoreflect.ProtoMessage
	// required fields of the request and of the response.
	reqRequired, respRequired []string
}{
	{"/tokens/dataplane", "Issue a dataplane token (admin)", &apiv1.GenerateDataplaneTokenRequest{}, &apiv1.TokenResponse{},
		[]string{"mesh", "name"}, []string{"token", "expiresTime", "id"}},
	{"/tokens/zone", "Issue a zone token (admin; global and standalone only)", &apiv1.GenerateZoneTokenRequest{}, &apiv1.TokenResponse{},
		[]string{"zone"}, []string{"token", "expiresTime", "id"}},
	{"/tokens/ingress", "Issue an ingress token for one ZoneIngress of this zone (admin; zone control planes only)", &apiv1.GenerateIngressTokenRequest{}, &apiv1.TokenResponse{},
		[]string{"zone"}, []string{"token", "expiresTime", "id"}},
	{"/tokens/user", "Issue a user token (admin)", &apiv1.GenerateUserTokenRequest{}, &apiv1.TokenResponse{},
		[]string{"name"}, []string{"token", "expiresTime", "id"}},
	{"/tokens/revoke", "Revoke one token by its id or the token itself (admin)", &apiv1.RevokeTokenRequest{}, &apiv1.RevokeTokenResponse{},
		nil, []string{"id", "until"}},
	{"/tokens/signing-key/rotate", "Replace the token signing key: every token issued before stops verifying (admin)", &apiv1.RotateSigningKeyRequest{}, &apiv1.RotateSigningKeyResponse{},
		nil, []string{"generation", "keyId"}},
}

// tokens adds the token endpoints. A request schema lists each field under
// its JSON (camelCase) name and, where it differs, its protobuf name too
// (protojson accepts both: "valid_for" is "validFor"); nothing else is
// accepted, as the server rejects unknown fields.
func (b *builder) tokens(paths obj) {
	for _, r := range tokenRoutes {
		reqName, respName := b.request(r.req.ProtoReflect().Descriptor(), r.reqRequired), b.response(r.resp.ProtoReflect().Descriptor(), r.respRequired)
		o := op(r.summary, ref(respName))
		o["requestBody"] = obj{"required": true, "content": obj{"application/json": obj{"schema": ref(reqName)}}}
		paths[r.path] = obj{"post": o}
	}
	// Either the id or the token names what to revoke, not both.
	rev := b.schemas[string((&apiv1.RevokeTokenRequest{}).ProtoReflect().Descriptor().FullName())].(obj)
	rev["oneOf"] = []any{obj{"required": []string{"id"}}, obj{"required": []string{"token"}}}
}

// request adds the schema of a request message (with protobuf-name
// aliases) and returns its name.
func (b *builder) request(md protoreflect.MessageDescriptor, required []string) string {
	b.wire64 = obj{"type": []string{"integer", "string"}, "pattern": `^-?[0-9]+$`}
	defer func() { b.wire64 = nil }()
	s := b.message(md)
	props := s["properties"].(obj)
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if name := string(fd.Name()); name != fd.JSONName() {
			alias := b.field(fd)
			alias["description"] = "same as " + fd.JSONName() + " (the protobuf field name, also accepted)"
			props[name] = alias
		}
	}
	if len(required) > 0 {
		s["required"] = required
	}
	name := string(md.FullName())
	b.schemas[name] = s
	return name
}

// response adds the schema of a response message and returns its name.
func (b *builder) response(md protoreflect.MessageDescriptor, required []string) string {
	b.wire64 = obj{"type": "string", "pattern": `^-?[0-9]+$`}
	defer func() { b.wire64 = nil }()
	s := b.message(md)
	if len(required) > 0 {
		s["required"] = required
	}
	name := string(md.FullName())
	b.schemas[name] = s
	return name
}
