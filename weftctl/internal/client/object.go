package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// Object is one resource as the server sent it: the decoded resource and the
// exact JSON, so output can show fields this client does not know yet.
type Object struct {
	// Resource always has Meta; Spec is nil when the type is unknown to
	// this client or the spec could not be decoded (see SpecErr).
	*resource.Resource
	// Raw is the object's JSON as received (without "insight" for insight
	// listings).
	Raw json.RawMessage
	// SpecErr says why Spec is nil.
	SpecErr error
}

// lenient decodes specs from the server: a newer server may send fields this
// client does not know, and a listing should still render.
var lenient = protojson.UnmarshalOptions{DiscardUnknown: true}

// DecodeObject decodes one flat resource from the server. It is tolerant of
// what it does not understand (unknown spec fields, unknown types) but
// insists on an object with a name.
func DecodeObject(raw []byte) (*Object, error) {
	fields, err := decodeFields(raw)
	if err != nil {
		return nil, err
	}
	return objectFromFields(raw, fields)
}

func decodeFields(raw []byte) (map[string]json.RawMessage, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, fmt.Errorf("resource is not a JSON object: %w", err)
	}
	if fields == nil {
		return nil, errors.New("resource is null")
	}
	return fields, nil
}

func objectFromFields(raw []byte, fields map[string]json.RawMessage) (*Object, error) {
	meta, err := decodeMeta(fields)
	if err != nil {
		return nil, err
	}
	o := &Object{Resource: &resource.Resource{Meta: meta}, Raw: append(json.RawMessage(nil), raw...)}
	t, ok := resource.ByName(meta.GetType())
	if !ok {
		o.SpecErr = fmt.Errorf("type %q is not known to this weftctl", meta.GetType())
		return o, nil
	}
	meta.Type = t.Name
	spec := t.NewSpec()
	if err := decodeSpec(fields, spec); err != nil {
		o.SpecErr = err
		return o, nil
	}
	o.Spec = spec
	return o, nil
}

// decodeSpec decodes the non-metadata keys of a flat object into msg.
func decodeSpec(fields map[string]json.RawMessage, msg proto.Message) error {
	spec := make(map[string]json.RawMessage, len(fields))
	for k, v := range fields {
		if !resource.IsMetaKey(k) && k != "insight" {
			spec[k] = v
		}
	}
	js, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	if err := lenient.Unmarshal(js, msg); err != nil {
		return fmt.Errorf("decode %s: %w", proto.MessageName(msg).Name(), err)
	}
	return nil
}

func decodeMeta(fields map[string]json.RawMessage) (*meshv1.Meta, error) {
	m := &meshv1.Meta{}
	var err error
	str := func(k string) string {
		raw, ok := fields[k]
		if !ok || err != nil || string(raw) == "null" {
			return ""
		}
		var s string
		if e := json.Unmarshal(raw, &s); e != nil {
			err = fmt.Errorf("resource field %q must be a string", k)
		}
		return s
	}
	m.Type = str("type")
	m.Mesh = str("mesh")
	m.Name = str("name")
	m.Origin = str("origin")
	ct := str("creationTime")
	mt := str("modificationTime")
	if err != nil {
		return nil, err
	}
	if m.Name == "" {
		return nil, errors.New("resource has no name")
	}
	m.CreationTime = parseTime(ct)
	m.ModificationTime = parseTime(mt)
	if raw, ok := fields["version"]; ok {
		s := strings.Trim(string(raw), `"`)
		if v, e := strconv.ParseInt(s, 10, 64); e == nil && v >= 0 {
			m.Version = v
		}
	}
	if raw, ok := fields["labels"]; ok && string(raw) != "null" {
		if e := json.Unmarshal(raw, &m.Labels); e != nil {
			return nil, errors.New(`resource field "labels" must be a map of strings`)
		}
	}
	return m, nil
}

// parseTime reads an RFC 3339 time; anything else is treated as absent, as
// a display field is not worth failing a listing over.
func parseTime(s string) *timestamppb.Timestamp {
	if s == "" {
		return nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil
	}
	return timestamppb.New(t)
}

// InsightObject is one item of a "+insights" listing: the resource and its
// insight, absent when the proxy or zone is not connected.
type InsightObject struct {
	*Object
	// Insight is the insight's JSON, or nil.
	Insight json.RawMessage
	// Item is the whole item as received, insight included.
	Item json.RawMessage
}

// DecodeInsightObject decodes one item of a "+insights" listing.
func DecodeInsightObject(raw []byte) (*InsightObject, error) {
	fields, err := decodeFields(raw)
	if err != nil {
		return nil, err
	}
	ins := fields["insight"]
	if bytes.Equal(bytes.TrimSpace(ins), []byte("null")) {
		ins = nil
	}
	delete(fields, "insight")
	// Raw without the insight keeps -o yaml of the resource part honest.
	stripped, err := json.Marshal(fields)
	if err != nil {
		return nil, err
	}
	o, err := objectFromFields(stripped, fields)
	if err != nil {
		return nil, err
	}
	return &InsightObject{Object: o, Insight: ins, Item: append(json.RawMessage(nil), raw...)}, nil
}

// DecodeInsight decodes an insight into msg. It accepts the insight's spec
// alone ({"subscriptions": ...}) or a flat resource ({"type":
// "DataplaneInsight", "mesh": ..., "subscriptions": ...}), and ignores
// fields it does not know. A nil insight leaves msg empty.
func DecodeInsight(raw json.RawMessage, msg proto.Message) error {
	if len(raw) == 0 {
		return nil
	}
	fields, err := decodeFields(raw)
	if err != nil {
		return fmt.Errorf("insight: %w", err)
	}
	return decodeSpec(fields, msg)
}
