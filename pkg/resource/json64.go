package resource

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"sync"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// protojson writes 64-bit integers as JSON strings ("acks": "3"). Counters
// are numbers to their readers (jq, dashboards, the OpenAPI schema), so the
// flat form writes them as JSON numbers; every value of a uint64/int64 field
// up to 2^53 survives a float64 reader, and protojson reads both forms back.
// Only types that have such fields are rewritten (today the insights).

var has64 sync.Map // protoreflect.FullName → bool

// hasInt64 reports whether md reaches a 64-bit integer field outside the
// well-known types (whose JSON forms are strings by definition).
func hasInt64(md protoreflect.MessageDescriptor) bool {
	if v, ok := has64.Load(md.FullName()); ok {
		return v.(bool)
	}
	has64.Store(md.FullName(), false) // cycles: assume no while walking
	found := false
	fields := md.Fields()
	for i := 0; i < fields.Len() && !found; i++ {
		fd := fields.Get(i)
		if fd.IsMap() {
			fd = fd.MapValue()
		}
		switch {
		case is64(fd.Kind()):
			found = true
		case fd.Message() != nil && !wellKnown(fd.Message()):
			found = hasInt64(fd.Message())
		}
	}
	has64.Store(md.FullName(), found)
	return found
}

func is64(k protoreflect.Kind) bool {
	switch k {
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return true
	}
	return false
}

func wellKnown(md protoreflect.MessageDescriptor) bool {
	return md.ParentFile().Package() == "google.protobuf"
}

// numbers64 rewrites the protojson object js of a message of type md so
// that its 64-bit integer fields are JSON numbers. Keys keep their order.
func numbers64(md protoreflect.MessageDescriptor, js []byte) ([]byte, error) {
	if !hasInt64(md) {
		return js, nil
	}
	var tree any
	d := json.NewDecoder(bytes.NewReader(js))
	d.UseNumber()
	if err := d.Decode(&tree); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	// Fields in the descriptor's order (protojson's own), map keys sorted.
	writeJSON64(&b, tree, md, nil)
	return b.Bytes(), nil
}

// writeJSON64 writes v (a decoded protojson value of message md, or of the
// scalar field fd when md is nil) in protojson's field order.
func writeJSON64(b *bytes.Buffer, v any, md protoreflect.MessageDescriptor, fd protoreflect.FieldDescriptor) {
	switch x := v.(type) {
	case map[string]any:
		if md == nil || wellKnown(md) {
			writeJSONPlain(b, x)
			return
		}
		b.WriteByte('{')
		n := 0
		fields := md.Fields()
		for i := 0; i < fields.Len(); i++ {
			f := fields.Get(i)
			val, ok := x[f.JSONName()]
			if !ok {
				continue
			}
			if n > 0 {
				b.WriteByte(',')
			}
			n++
			writeKey(b, f.JSONName())
			writeField(b, val, f)
		}
		b.WriteByte('}')
	case string:
		if fd != nil && is64(fd.Kind()) {
			if _, err := strconv.ParseInt(x, 10, 64); err == nil {
				b.WriteString(x)
				return
			}
			if _, err := strconv.ParseUint(x, 10, 64); err == nil {
				b.WriteString(x)
				return
			}
		}
		writeJSONPlain(b, x)
	default:
		writeJSONPlain(b, x)
	}
}

// writeField writes the value of field f: a map, a list, a message or a
// scalar.
func writeField(b *bytes.Buffer, val any, f protoreflect.FieldDescriptor) {
	switch {
	case f.IsMap():
		m, ok := val.(map[string]any)
		if !ok {
			writeJSONPlain(b, val)
			return
		}
		vf := f.MapValue()
		keys := slices.Sorted(maps.Keys(m))
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeKey(b, k)
			writeJSON64(b, m[k], vf.Message(), vf)
		}
		b.WriteByte('}')
	case f.IsList():
		l, ok := val.([]any)
		if !ok {
			writeJSONPlain(b, val)
			return
		}
		b.WriteByte('[')
		for i, e := range l {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSON64(b, e, f.Message(), f)
		}
		b.WriteByte(']')
	default:
		writeJSON64(b, val, f.Message(), f)
	}
}

func writeKey(b *bytes.Buffer, k string) {
	writeJSONPlain(b, k)
	b.WriteByte(':')
}

func writeJSONPlain(b *bytes.Buffer, v any) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	b.Truncate(b.Len() - 1) // Encode's newline
}
