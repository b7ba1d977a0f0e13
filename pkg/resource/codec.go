package resource

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

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
// Causes lists every problem found, each with its field path and, for YAML
// and JSON documents, its line; Field and Err describe a single problem
// found before the document could be read at all.
type DecodeError struct {
	Field  string
	Err    error
	Causes []Cause
}

func (e *DecodeError) Error() string {
	if len(e.Causes) > 0 {
		return joinCauses(e.Causes)
	}
	if e.Field == "" {
		return e.Err.Error()
	}
	return e.Field + ": " + e.Err.Error()
}

func (e *DecodeError) Unwrap() error { return e.Err }

// AllCauses returns the problems as causes: Causes, or Field and Err as one.
func (e *DecodeError) AllCauses() []Cause {
	if len(e.Causes) > 0 {
		return e.Causes
	}
	msg := ""
	if e.Err != nil {
		msg = e.Err.Error()
	}
	return []Cause{{Field: e.Field, Message: msg}}
}

// DecodeOptions changes how documents are read.
type DecodeOptions struct {
	// FromKuma rewrites Kuma's tag keys (kuma.io/service, kuma.io/protocol,
	// kuma.io/zone, ...) to Weft's (weft.io/...) wherever tags are read:
	// what "weftctl apply --from-kuma" and "weftctl convert --from-kuma" do.
	// Kuma's other input shapes are always accepted.
	FromKuma bool

	// lineOffset is added to every cause's line: the line the document
	// starts on in a multi-document stream.
	lineOffset int
}

type decodeOptions = DecodeOptions

// Unmarshal decodes one flat YAML or JSON document into a resource. The
// document must name its type unless want is given; unknown fields are
// errors. Metadata other than type, mesh, name, version and labels is
// ignored: the store owns it.
func Unmarshal(doc []byte, want *Type) (*Resource, error) {
	return DecodeOptions{}.Unmarshal(doc, want)
}

// Unmarshal decodes one flat YAML or JSON document into a resource: Kuma's
// input shapes are normalised to Weft's canonical form, and every problem
// is reported at once as a *DecodeError with field paths and lines.
func (o DecodeOptions) Unmarshal(doc []byte, want *Type) (*Resource, error) {
	if len(doc) > MaxDocumentSize {
		return nil, &DecodeError{Err: fmt.Errorf("document is %d bytes, more than the limit of %d", len(doc), MaxDocumentSize)}
	}
	// JSON (what REST clients send) skips the YAML parser: it is valid YAML,
	// but parsing it as YAML costs several times more. Only when the
	// document has problems is it parsed again as YAML, for their lines.
	if t := bytes.TrimLeft(doc, " \t\r\n"); len(t) > 0 && t[0] == '{' && json.Valid(t) {
		tree, err := parseJSON(t)
		if err != nil {
			return nil, &DecodeError{Err: fmt.Errorf("not valid JSON: %w", err)}
		}
		r, causes := o.decodeTree(tree, want)
		if len(causes) == 0 {
			return r, nil
		}
		if lined, err := parseYAML(doc); err == nil {
			if _, withLines := o.decodeTree(lined, want); len(withLines) == len(causes) {
				causes = withLines
			}
		}
		return nil, &DecodeError{Causes: o.offset(causes)}
	}
	tree, err := parseYAML(doc)
	if err != nil {
		return nil, &DecodeError{Err: fmt.Errorf("not valid YAML or JSON: %w", err)}
	}
	r, causes := o.decodeTree(tree, want)
	if len(causes) > 0 {
		return nil, &DecodeError{Causes: o.offset(causes)}
	}
	return r, nil
}

func (o DecodeOptions) offset(causes []Cause) []Cause {
	if o.lineOffset == 0 {
		return causes
	}
	for i := range causes {
		if causes[i].Line > 0 {
			causes[i].Line += o.lineOffset
		}
	}
	return causes
}

// decodeTree reads a parsed document; it returns the resource or every
// problem found.
func (o *DecodeOptions) decodeTree(n *node, want *Type) (*Resource, []Cause) {
	v := NewValidator()
	if n.kind != kindObject {
		v.addLine(n.line, "a resource must be an object, not %s", n.kind)
		return nil, *v.causes
	}
	str := func(k string) string {
		val := n.get(k)
		if val == nil || val.kind == kindNull {
			return ""
		}
		if val.kind != kindString {
			v.Field(k).addLine(val.line, "must be a string, not %s", val.kind)
			return ""
		}
		return val.text
	}
	meta := &meshv1.Meta{}
	t := want
	typeNode := n.get("type")
	if typeName := str("type"); typeName != "" {
		found, ok := ByName(typeName)
		switch {
		case !ok && KumaOnlyTypes[typeName] != "":
			v.Field("type").addLine(typeNode.line, "%s is a Kuma type Weft does not support: %s (docs/kuma-compatibility.md)", typeName, KumaOnlyTypes[typeName])
		case !ok:
			v.Field("type").addLine(typeNode.line, "unknown type %q", typeName)
		case want != nil && found != want && !(found == DataplaneType && want == ZoneIngressType):
			v.Field("type").addLine(typeNode.line, "is %s, expected %s", found.Name, want.Name)
		default:
			t = found
		}
	} else if t == nil && len(*v.causes) == 0 {
		v.Field("type").addLine(n.line, "must be set")
	}
	if len(*v.causes) > 0 || t == nil {
		return nil, *v.causes
	}
	meta.Mesh = str("mesh")
	meta.Name = str("name")
	meta.Origin = str("origin")
	if val := n.get("version"); val != nil && val.kind != kindNull {
		// Accept a number or a numeric string: JSON clients lose int64
		// precision only past 2^53, far beyond etcd revisions in practice.
		if s := val.text; s != "" {
			ver, err := strconv.ParseInt(s, 10, 64)
			if err != nil || ver < 0 || (val.kind != kindNumber && val.kind != kindString) {
				v.Field("version").addLine(val.line, "must be a non-negative integer")
			}
			meta.Version = ver
		}
	}
	if val := n.get("labels"); val != nil && val.kind != kindNull {
		lv := v.Field("labels")
		if val.kind != kindObject {
			lv.addLine(val.line, "must be a map of strings, not %s", val.kind)
		} else {
			meta.Labels = map[string]string{}
			for i, k := range val.keys {
				if lval := val.vals[i]; lval.kind != kindString {
					lv.Key(k).addLine(lval.line, "must be a string, not %s", lval.kind)
				} else {
					meta.Labels[k] = lval.text
				}
			}
		}
	}
	spec := obj(n.line)
	for i, k := range n.keys {
		if !metaKeys[k] {
			spec.keys = append(spec.keys, k)
			spec.vals = append(spec.vals, n.vals[i])
		}
	}
	before := t
	t = normaliseKuma(t, meta, spec, v)
	if want != nil && t != want {
		line := n.line
		if typeNode != nil {
			line = typeNode.line
		}
		v.Field("type").addLine(line, "a Kuma %s with networking.ingress is a %s in Weft, expected %s: write it to %s", before.Name, t.Name, want.Name, t.Collection)
	}
	meta.Type = t.Name
	msg := t.NewSpec()
	checkMessage(v, spec, msg.ProtoReflect().Descriptor(), o)
	if len(*v.causes) > 0 {
		return nil, *v.causes
	}
	if err := protojson.Unmarshal(spec.appendJSON(nil), msg); err != nil {
		v.addLine(n.line, "%s: %s", t.Name, cleanProtoJSONError(err))
		return nil, *v.causes
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
func UnmarshalAll(r io.Reader) ([]*Resource, error) { return DecodeOptions{}.UnmarshalAll(r) }

// UnmarshalAll decodes a stream of YAML documents separated by "---" (or a
// single JSON document or JSON array) into resources. Lines in errors are
// lines of the whole stream.
func (o DecodeOptions) UnmarshalAll(r io.Reader) ([]*Resource, error) {
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
			res, err := o.Unmarshal(it, nil)
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			out = append(out, res)
		}
		return out, nil
	}
	var out []*Resource
	line := 0
	for i, doc := range splitYAML(data) {
		start := line
		line += bytes.Count(doc, []byte("\n")) + 1 // the document and its "---"
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		do := o
		do.lineOffset = start
		res, err := do.Unmarshal(doc, nil)
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
