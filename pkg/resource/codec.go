package resource

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"
	"sigs.k8s.io/yaml"

	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// MaxDocumentSize bounds one YAML/JSON resource document. Anything larger is
// refused before parsing.
const MaxDocumentSize = 1 << 20

// metaKeys are the flat form's metadata keys; every other key is a spec field.
var metaKeys = map[string]bool{
	"type": true, "mesh": true, "name": true, "version": true, "creationTime": true,
	"modificationTime": true, "origin": true, "labels": true,
}

// IsMetaKey reports whether k is a metadata key of the flat form; every
// other key of a flat document is a spec field. Clients that decode the
// flat form themselves (weftctl) use it to split a document as the server
// does.
func IsMetaKey(k string) bool { return metaKeys[k] }

// DecodeError is a document that could not be read into a resource.
type DecodeError struct {
	Field string
	Err   error
}

func (e *DecodeError) Error() string {
	if e.Field == "" {
		return e.Err.Error()
	}
	return e.Field + ": " + e.Err.Error()
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Unmarshal decodes one flat YAML or JSON document into a resource. The
// document must name its type unless want is given; unknown fields are
// errors. Metadata other than type, mesh, name, version and labels is
// ignored: the store owns it.
func Unmarshal(doc []byte, want *Type) (*Resource, error) {
	if len(doc) > MaxDocumentSize {
		return nil, &DecodeError{Err: fmt.Errorf("document is %d bytes, more than the limit of %d", len(doc), MaxDocumentSize)}
	}
	// JSON (what REST clients send) skips the YAML parser: it is valid YAML,
	// but parsing it as YAML costs several times more.
	if t := bytes.TrimLeft(doc, " \t\r\n"); len(t) > 0 && t[0] == '{' && json.Valid(t) {
		return unmarshalJSON(t, want)
	}
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, &DecodeError{Err: fmt.Errorf("not valid YAML or JSON: %w", err)}
	}
	return unmarshalJSON(js, want)
}

func unmarshalJSON(js []byte, want *Type) (*Resource, error) {
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(js))
	if err := dec.Decode(&fields); err != nil {
		return nil, &DecodeError{Err: fmt.Errorf("a resource must be an object: %w", err)}
	}
	if fields == nil {
		return nil, &DecodeError{Err: errors.New("a resource must be an object, not null")}
	}
	meta := &meshv1.Meta{}
	str := func(k string) (string, error) {
		raw, ok := fields[k]
		if !ok || string(raw) == "null" {
			return "", nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", &DecodeError{Field: k, Err: errors.New("must be a string")}
		}
		return s, nil
	}
	typeName, err := str("type")
	if err != nil {
		return nil, err
	}
	t := want
	if typeName != "" {
		found, ok := ByName(typeName)
		if !ok {
			return nil, &DecodeError{Field: "type", Err: fmt.Errorf("unknown type %q", typeName)}
		}
		if want != nil && found != want {
			return nil, &DecodeError{Field: "type", Err: fmt.Errorf("is %s, expected %s", found.Name, want.Name)}
		}
		t = found
	}
	if t == nil {
		return nil, &DecodeError{Field: "type", Err: errors.New("must be set")}
	}
	meta.Type = t.Name
	if meta.Mesh, err = str("mesh"); err != nil {
		return nil, err
	}
	if meta.Name, err = str("name"); err != nil {
		return nil, err
	}
	if meta.Origin, err = str("origin"); err != nil {
		return nil, err
	}
	if raw, ok := fields["version"]; ok && string(raw) != "null" {
		// Accept a number or a numeric string: JSON clients lose int64
		// precision only past 2^53, far beyond etcd revisions in practice.
		s := strings.Trim(string(raw), `"`)
		if s != "" {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil || v < 0 {
				return nil, &DecodeError{Field: "version", Err: errors.New("must be a non-negative integer")}
			}
			meta.Version = v
		}
	}
	if raw, ok := fields["labels"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &meta.Labels); err != nil {
			return nil, &DecodeError{Field: "labels", Err: errors.New("must be a map of strings")}
		}
	}
	spec := map[string]json.RawMessage{}
	for k, v := range fields {
		if !metaKeys[k] {
			spec[k] = v
		}
	}
	specJSON, _ := json.Marshal(spec)
	msg := t.NewSpec()
	if err := protojson.Unmarshal(specJSON, msg); err != nil {
		return nil, &DecodeError{Err: fmt.Errorf("%s: %s", t.Name, cleanProtoJSONError(err))}
	}
	return &Resource{Meta: meta, Spec: msg}, nil
}

// cleanProtoJSONError drops protojson's internal prefix, which names the Go
// library rather than the user's mistake.
func cleanProtoJSONError(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "proto:")
	s = strings.ReplaceAll(s, "\u00a0", " ")
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), "(line 1:"))
}

// UnmarshalAll decodes a stream of YAML documents separated by "---" (or a
// single JSON document or JSON array) into resources.
func UnmarshalAll(r io.Reader) ([]*Resource, error) {
	data, err := io.ReadAll(io.LimitReader(r, 64*MaxDocumentSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > 64*MaxDocumentSize {
		return nil, fmt.Errorf("input is larger than %d bytes", 64*MaxDocumentSize)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(trimmed, &items); err != nil {
			return nil, fmt.Errorf("not a JSON array of resources: %w", err)
		}
		var out []*Resource
		for i, it := range items {
			res, err := Unmarshal(it, nil)
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			out = append(out, res)
		}
		return out, nil
	}
	var out []*Resource
	for i, doc := range splitYAML(data) {
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		res, err := Unmarshal(doc, nil)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		out = append(out, res)
	}
	return out, nil
}

func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		if t := bytes.TrimRight(line, " \t\r\n"); bytes.Equal(t, []byte("---")) {
			docs = append(docs, append([]byte(nil), cur.Bytes()...))
			cur.Reset()
			continue
		}
		cur.Write(line)
	}
	return append(docs, cur.Bytes())
}

func stripComments(doc []byte) []byte {
	var out bytes.Buffer
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out.Write(line)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}

var specMarshal = protojson.MarshalOptions{}

// MarshalJSON encodes a resource in the flat form: type, mesh and name
// first, then the spec fields, then the read-only metadata.
func MarshalJSON(r *Resource) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	writeKV := func(k string, v any) {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		vb, _ := json.Marshal(v)
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	m := r.Meta
	writeKV("type", m.GetType())
	if m.GetMesh() != "" {
		writeKV("mesh", m.GetMesh())
	}
	writeKV("name", m.GetName())
	if r.Spec != nil {
		spec, err := specMarshal.Marshal(r.Spec)
		if err == nil {
			spec, err = numbers64(r.Spec.ProtoReflect().Descriptor(), spec)
		}
		if err != nil {
			return nil, fmt.Errorf("marshal %s: %w", r.Key(), err)
		}
		// protojson output is always an object; splice its fields in.
		spec = bytes.TrimSpace(spec)
		if inner := bytes.TrimSpace(spec[1 : len(spec)-1]); len(inner) > 0 {
			b.WriteByte(',')
			b.Write(inner)
		}
	}
	if m.GetCreationTime() != nil {
		writeKV("creationTime", m.GetCreationTime().AsTime().UTC().Format(time.RFC3339Nano))
	}
	if m.GetModificationTime() != nil {
		writeKV("modificationTime", m.GetModificationTime().AsTime().UTC().Format(time.RFC3339Nano))
	}
	if m.GetVersion() != 0 {
		writeKV("version", strconv.FormatInt(m.GetVersion(), 10))
	}
	if m.GetOrigin() != "" {
		writeKV("origin", m.GetOrigin())
	}
	if len(m.GetLabels()) > 0 {
		writeKV("labels", m.GetLabels())
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// Timestamp converts a time for Meta fields.
func Timestamp(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }
