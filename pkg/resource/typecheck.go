package resource

import (
	"encoding/base64"
	"math"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// checkMessage checks a tree against a message's fields, the way protojson
// would read it, but reports every problem with its path and line instead
// of stopping at the first. Keys are rewritten to their JSON names (a
// snake_case field name is accepted and becomes camelCase); null fields are
// dropped (protojson's "unset").
func checkMessage(v *Validator, n *node, md protoreflect.MessageDescriptor, o *decodeOptions) {
	if checkWellKnown(v, n, md) {
		return
	}
	if n.kind != kindObject {
		v.addLine(n.line, "must be an object, not %s", n.kind)
		return
	}
	oneofs := map[protoreflect.FullName]string{}
	for i := 0; i < len(n.keys); i++ {
		k, val := n.keys[i], n.vals[i]
		fd := md.Fields().ByJSONName(k)
		if fd == nil {
			fd = md.Fields().ByName(protoreflect.Name(k))
		}
		fv := v.Field(k)
		if fd == nil {
			fv.addLine(val.line, "unknown field %q%s", k, hintFor(md, k))
			continue
		}
		if val.kind == kindNull {
			n.keys = append(n.keys[:i], n.keys[i+1:]...)
			n.vals = append(n.vals[:i], n.vals[i+1:]...)
			i--
			continue
		}
		n.keys[i] = fd.JSONName()
		fv = v.Field(fd.JSONName())
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			if other, ok := oneofs[od.FullName()]; ok {
				fv.addLine(val.line, "only one of %s and %s may be set", other, fd.JSONName())
			}
			oneofs[od.FullName()] = fd.JSONName()
		}
		checkField(fv, val, fd, o)
	}
}

func checkField(v *Validator, n *node, fd protoreflect.FieldDescriptor, o *decodeOptions) {
	switch {
	case fd.IsList():
		if n.kind != kindList {
			v.addLine(n.line, "must be a list, not %s", n.kind)
			return
		}
		for i, it := range n.items {
			iv := v.Index(i)
			if it.kind == kindNull {
				iv.addLine(it.line, "must not be null")
				continue
			}
			checkValue(iv, it, fd, o)
		}
	case fd.IsMap():
		if n.kind != kindObject {
			v.addLine(n.line, "must be a map, not %s", n.kind)
			return
		}
		kd, vd := fd.MapKey(), fd.MapValue()
		for i, k := range n.keys {
			val := n.vals[i]
			if o.FromKuma && vd.Kind() == protoreflect.StringKind && strings.HasPrefix(k, kumaTagPrefix) {
				k = weftTagPrefix + strings.TrimPrefix(k, kumaTagPrefix)
				n.keys[i] = k
			}
			kv := v.Key(k)
			if kd.Kind() != protoreflect.StringKind {
				if _, err := strconv.ParseInt(k, 10, 64); err != nil {
					kv.addLine(val.line, "key must be an integer")
				}
			}
			if val.kind == kindNull {
				kv.addLine(val.line, "must not be null")
				continue
			}
			checkValue(kv, val, vd, o)
		}
	default:
		checkValue(v, n, fd, o)
	}
}

// checkValue checks one singular value (a list element, a map value or a
// plain field) of field fd's kind.
func checkValue(v *Validator, n *node, fd protoreflect.FieldDescriptor, o *decodeOptions) {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		checkMessage(v, n, fd.Message(), o)
	case protoreflect.BoolKind:
		if n.kind != kindBool {
			v.addLine(n.line, "must be true or false, not %s", n.kind)
		}
	case protoreflect.StringKind:
		if n.kind != kindString {
			hint := ""
			if n.kind == kindNumber || n.kind == kindBool {
				hint = ": quote it (\"" + n.text + "\")"
			}
			v.addLine(n.line, "must be a string, not %s%s", n.kind, hint)
		}
	case protoreflect.BytesKind:
		if n.kind != kindString {
			v.addLine(n.line, "must be a base64 string, not %s", n.kind)
			return
		}
		if !isBase64(n.text) {
			v.addLine(n.line, "must be base64-encoded")
		}
	case protoreflect.EnumKind:
		if n.kind == kindString {
			if fd.Enum().Values().ByName(protoreflect.Name(n.text)) == nil {
				v.addLine(n.line, "%q is not a known value", n.text)
			}
		} else if n.kind != kindNumber {
			v.addLine(n.line, "must be a string, not %s", n.kind)
		}
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		if n.kind != kindNumber && n.kind != kindString {
			v.addLine(n.line, "must be a number, not %s", n.kind)
			return
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(n.text), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			v.addLine(n.line, "%q is not a number", n.text)
		}
	default: // integers
		if n.kind != kindNumber && n.kind != kindString {
			v.addLine(n.line, "must be an integer, not %s", n.kind)
			return
		}
		checkInteger(v, n, fd.Kind())
	}
}

func checkInteger(v *Validator, n *node, k protoreflect.Kind) {
	text := n.text
	if f, err := strconv.ParseFloat(text, 64); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		text = strconv.FormatFloat(f, 'f', -1, 64)
	}
	var bits int
	signed := true
	switch k {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		bits = 32
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		bits, signed = 32, false
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		bits, signed = 64, false
	default:
		bits = 64
	}
	var err error
	if signed {
		_, err = strconv.ParseInt(text, 10, bits)
	} else {
		_, err = strconv.ParseUint(text, 10, bits)
	}
	if err != nil {
		_, ferr := strconv.ParseFloat(text, 64)
		switch {
		case ferr != nil:
			v.addLine(n.line, "must be an integer, not %q", n.text)
		case !signed && strings.HasPrefix(text, "-"):
			v.addLine(n.line, "must not be negative")
		case strings.ContainsAny(text, ".eE"):
			v.addLine(n.line, "must be a whole number, not %s", n.text)
		default:
			v.addLine(n.line, "%s is out of range for a %d-bit integer", n.text, bits)
		}
		return
	}
	// protojson reads integers from numbers or numeric strings; write the
	// canonical number so it does not have to.
	n.kind, n.text = kindNumber, text
}

func isBase64(s string) bool {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if _, err := enc.DecodeString(s); err == nil {
			return true
		}
	}
	return false
}

// checkWellKnown handles the well-known types the specs use; false when md
// is an ordinary message.
func checkWellKnown(v *Validator, n *node, md protoreflect.MessageDescriptor) bool {
	switch md.FullName() {
	case "google.protobuf.BoolValue":
		if n.kind != kindBool {
			v.addLine(n.line, "must be true or false, not %s", n.kind)
		}
	case "google.protobuf.StringValue", "google.protobuf.Timestamp", "google.protobuf.Duration":
		if n.kind != kindString {
			v.addLine(n.line, "must be a string, not %s", n.kind)
		}
	case "google.protobuf.DoubleValue", "google.protobuf.FloatValue":
		if n.kind != kindNumber {
			v.addLine(n.line, "must be a number, not %s", n.kind)
		}
	case "google.protobuf.UInt32Value", "google.protobuf.UInt64Value":
		checkInteger(v, n, protoreflect.Uint64Kind)
	case "google.protobuf.Int32Value", "google.protobuf.Int64Value":
		checkInteger(v, n, protoreflect.Int64Kind)
	case "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue", "google.protobuf.Any":
		// Free-form: protojson checks it.
	default:
		return false
	}
	return true
}

// hintFor suggests the field a user probably meant.
func hintFor(md protoreflect.MessageDescriptor, k string) string {
	fields := md.Fields()
	var names []string
	for i := 0; i < fields.Len(); i++ {
		name := fields.Get(i).JSONName()
		if strings.EqualFold(name, k) {
			return " (did you mean " + strconv.Quote(name) + "?)"
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		return ""
	}
	if len(names) > 12 {
		names = append(names[:12], "...")
	}
	return "; known fields: " + strings.Join(names, ", ")
}
