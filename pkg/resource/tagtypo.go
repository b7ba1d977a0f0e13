package resource

import (
	"fmt"
	"sort"
	"strconv"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// WellKnownTags are the tags Weft itself defines.
var WellKnownTags = []string{ServiceTag, ZoneTag, ProtocolTag}

// SelectorTag is one tag key of a selector in a spec, with its field path
// (sources[0].match["weft.io/servce"], the key quoted in ASCII).
type SelectorTag struct {
	Field, Key string
}

// maxSelectorTags bounds what SelectorTags returns (a spec is at most 1 MiB
// anyway).
const maxSelectorTags = 1000

// SelectorTags returns the tag keys of every Selector in spec, in field
// order, with their field paths.
func SelectorTags(spec proto.Message) []SelectorTag {
	var out []SelectorTag
	walkSelectors(spec.ProtoReflect(), "", &out)
	return out
}

var selectorName = (&meshv1.Selector{}).ProtoReflect().Descriptor().FullName()

func walkSelectors(m protoreflect.Message, path string, out *[]SelectorTag) {
	if m.Descriptor().FullName() == selectorName {
		keys := make([]string, 0)
		for k := range m.Interface().(*meshv1.Selector).GetMatch() {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if len(*out) < maxSelectorTags {
				*out = append(*out, SelectorTag{Field: fmt.Sprintf("%s.match[%s]", path, strconv.QuoteToASCII(k)), Key: k})
			}
		}
		return
	}
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ { // declaration order, not Range's
		fd := fields.Get(i)
		if fd.Message() == nil || fd.IsMap() || !m.Has(fd) {
			continue
		}
		v := m.Get(fd)
		p := fd.JSONName()
		if path != "" {
			p = path + "." + p
		}
		if fd.IsList() {
			for j := 0; j < v.List().Len(); j++ {
				walkSelectors(v.List().Get(j).Message(), fmt.Sprintf("%s[%d]", p, j), out)
			}
			continue
		}
		walkSelectors(v.Message(), p, out)
	}
}

// LikelyTypo returns the key of known that key is most likely a typo of:
// a different key at most 2 edits away (the closest, then the first in
// sorted order), or "" when there is none.
func LikelyTypo(key string, known []string) string {
	best, bestD := "", 3
	sorted := append([]string(nil), known...)
	sort.Strings(sorted)
	for _, k := range sorted {
		if k == key {
			return ""
		}
		if d := editDistance(key, k, bestD); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b, or max when it is
// at least max (tag keys are short; the cap keeps long hostile keys cheap).
func editDistance(a, b string, max int) int {
	if d := len(a) - len(b); d >= max || -d >= max {
		return max
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			c = min(c, prev[j]+1, cur[j-1]+1)
			cur[j] = c
			rowMin = min(rowMin, c)
		}
		if rowMin >= max {
			return max
		}
		prev, cur = cur, prev
	}
	return min(prev[len(b)], max)
}
