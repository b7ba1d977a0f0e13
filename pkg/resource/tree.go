package resource

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"

	yaml "go.yaml.in/yaml/v3"
)

// The decoder reads a document into a small tree that keeps each value's
// YAML line, so that every problem it finds (unknown field, wrong type,
// null, a Kuma shape that cannot be normalised) is reported with its field
// path and line, all at once, before protojson ever sees the document.

type nodeKind uint8

const (
	kindNull nodeKind = iota
	kindBool
	kindNumber
	kindString
	kindList
	kindObject
)

func (k nodeKind) String() string {
	return [...]string{"null", "a boolean", "a number", "a string", "a list", "an object"}[k]
}

type node struct {
	kind nodeKind
	// line is the 1-based YAML line of the value; 0 when unknown (JSON
	// read by the fast path).
	line int
	// text is a scalar's value: "true"/"false", a JSON number, or a string.
	text  string
	items []*node
	keys  []string
	vals  []*node
}

// maxNodes bounds the values one document may expand to: YAML aliases can
// make a small document name a huge tree ("billion laughs").
const maxNodes = 200_000

func str(s string, line int) *node { return &node{kind: kindString, text: s, line: line} }

func obj(line int) *node { return &node{kind: kindObject, line: line} }

// get returns the value of key k, or nil.
func (n *node) get(k string) *node {
	if n == nil || n.kind != kindObject {
		return nil
	}
	for i, key := range n.keys {
		if key == k {
			return n.vals[i]
		}
	}
	return nil
}

// set replaces the value of k, or appends k.
func (n *node) set(k string, v *node) {
	for i, key := range n.keys {
		if key == k {
			n.vals[i] = v
			return
		}
	}
	n.keys = append(n.keys, k)
	n.vals = append(n.vals, v)
}

// del removes k and returns its value, or nil.
func (n *node) del(k string) *node {
	if n == nil || n.kind != kindObject {
		return nil
	}
	for i, key := range n.keys {
		if key == k {
			v := n.vals[i]
			n.keys = append(n.keys[:i], n.keys[i+1:]...)
			n.vals = append(n.vals[:i], n.vals[i+1:]...)
			return v
		}
	}
	return nil
}

// rename moves key from to key to, keeping its place; false when from is
// absent.
func (n *node) rename(from, to string) bool {
	for i, key := range n.keys {
		if key == from {
			n.keys[i] = to
			return true
		}
	}
	return false
}

func (n *node) isObject() bool { return n != nil && n.kind == kindObject }

// maxDepth bounds how deeply values nest.
const maxDepth = 64

// yamlReader converts a parsed YAML document within the bounds.
type yamlReader struct {
	budget    int
	depth     int
	expanding map[*yaml.Node]bool
}

// treeFromYAML converts a parsed YAML document.
func treeFromYAML(y *yaml.Node, r *yamlReader) (*node, error) {
	r.budget--
	if r.budget < 0 {
		return nil, fmt.Errorf("the document expands to more than %d values", maxNodes)
	}
	r.depth++
	defer func() { r.depth-- }()
	if r.depth > maxDepth {
		return nil, fmt.Errorf("line %d: values nest more than %d levels deep", y.Line, maxDepth)
	}
	budget := r
	switch y.Kind {
	case yaml.DocumentNode:
		if len(y.Content) == 0 {
			return &node{kind: kindNull, line: y.Line}, nil
		}
		return treeFromYAML(y.Content[0], budget)
	case yaml.AliasNode:
		if y.Alias == nil {
			return nil, fmt.Errorf("line %d: unknown alias", y.Line)
		}
		if r.expanding[y.Alias] {
			return nil, fmt.Errorf("line %d: alias *%s refers to itself", y.Line, y.Value)
		}
		r.expanding[y.Alias] = true
		defer delete(r.expanding, y.Alias)
		n, err := treeFromYAML(y.Alias, budget)
		if err != nil {
			return nil, err
		}
		return n, nil
	case yaml.SequenceNode:
		n := &node{kind: kindList, line: y.Line}
		for _, c := range y.Content {
			cn, err := treeFromYAML(c, budget)
			if err != nil {
				return nil, err
			}
			n.items = append(n.items, cn)
		}
		return n, nil
	case yaml.MappingNode:
		n := obj(y.Line)
		seen := map[string]bool{}
		for i := 0; i+1 < len(y.Content); i += 2 {
			k := y.Content[i]
			if k.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: a key must be a string", k.Line)
			}
			if k.Tag == "!!merge" {
				return nil, fmt.Errorf("line %d: YAML merge keys (<<) are not supported", k.Line)
			}
			if seen[k.Value] {
				return nil, fmt.Errorf("line %d: key %q is given twice", k.Line, k.Value)
			}
			seen[k.Value] = true
			v, err := treeFromYAML(y.Content[i+1], budget)
			if err != nil {
				return nil, err
			}
			// A value's problems are reported on its key's line (a block
			// list or object starts on the next one).
			v.line = k.Line
			n.keys = append(n.keys, k.Value)
			n.vals = append(n.vals, v)
		}
		return n, nil
	case yaml.ScalarNode:
		switch y.ShortTag() {
		case "!!null":
			return &node{kind: kindNull, line: y.Line}, nil
		case "!!bool":
			var b bool
			if err := y.Decode(&b); err != nil {
				return nil, fmt.Errorf("line %d: %q is not a boolean", y.Line, y.Value)
			}
			return &node{kind: kindBool, text: strconv.FormatBool(b), line: y.Line}, nil
		case "!!int":
			var i int64
			if err := y.Decode(&i); err == nil {
				return &node{kind: kindNumber, text: strconv.FormatInt(i, 10), line: y.Line}, nil
			}
			var u uint64
			if err := y.Decode(&u); err == nil {
				return &node{kind: kindNumber, text: strconv.FormatUint(u, 10), line: y.Line}, nil
			}
			return &node{kind: kindNumber, text: y.Value, line: y.Line}, nil
		case "!!float":
			var f float64
			if err := y.Decode(&f); err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
				return nil, fmt.Errorf("line %d: %q is not a finite number", y.Line, y.Value)
			}
			text := y.Value // as written ("1.0"), when JSON can carry it so
			if !json.Valid([]byte(text)) {
				text = strconv.FormatFloat(f, 'g', -1, 64)
			}
			return &node{kind: kindNumber, text: text, line: y.Line}, nil
		default:
			return str(y.Value, y.Line), nil
		}
	}
	return nil, fmt.Errorf("line %d: unsupported YAML value", y.Line)
}

// parseYAML reads one YAML (or JSON) document into a tree.
func parseYAML(doc []byte) (*node, error) {
	var y yaml.Node
	if err := yaml.Unmarshal(doc, &y); err != nil {
		return nil, errors.New(cleanYAMLError(err))
	}
	return treeFromYAML(&y, &yamlReader{budget: maxNodes, expanding: map[*yaml.Node]bool{}})
}

func cleanYAMLError(err error) string {
	s := err.Error()
	s = string(bytes.TrimPrefix([]byte(s), []byte("yaml: ")))
	return s
}

// parseJSON reads a JSON document into a tree without lines: the fast path
// for what REST clients send.
func parseJSON(js []byte) (*node, error) {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return treeFromJSON(v), nil
}

func treeFromJSON(v any) *node {
	switch t := v.(type) {
	case nil:
		return &node{kind: kindNull}
	case bool:
		return &node{kind: kindBool, text: strconv.FormatBool(t)}
	case json.Number:
		return &node{kind: kindNumber, text: t.String()}
	case string:
		return str(t, 0)
	case []any:
		n := &node{kind: kindList}
		for _, it := range t {
			n.items = append(n.items, treeFromJSON(it))
		}
		return n
	case map[string]any:
		n := obj(0)
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			n.keys = append(n.keys, k)
			n.vals = append(n.vals, treeFromJSON(t[k]))
		}
		return n
	}
	return &node{kind: kindNull}
}

// appendJSON writes the tree as JSON.
func (n *node) appendJSON(b []byte) []byte {
	switch n.kind {
	case kindNull:
		return append(b, "null"...)
	case kindBool, kindNumber:
		return append(b, n.text...)
	case kindString:
		s, _ := json.Marshal(n.text)
		return append(b, s...)
	case kindList:
		b = append(b, '[')
		for i, it := range n.items {
			if i > 0 {
				b = append(b, ',')
			}
			b = it.appendJSON(b)
		}
		return append(b, ']')
	default:
		b = append(b, '{')
		for i, k := range n.keys {
			if i > 0 {
				b = append(b, ',')
			}
			ks, _ := json.Marshal(k)
			b = append(b, ks...)
			b = append(b, ':')
			b = n.vals[i].appendJSON(b)
		}
		return append(b, '}')
	}
}
