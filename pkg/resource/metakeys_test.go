package resource

import (
	"encoding/json"
	"sort"
	"testing"
	"time"

	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// TestMetaKeysAreWhatTheEncoderWrites pins the flat form's metadata keys to
// the encoder: a resource with every Meta field set and an empty spec
// encodes to exactly the meta keys, so a key added to one and not the other
// (and to weftctl, which splits documents with IsMetaKey) fails here.
func TestMetaKeysAreWhatTheEncoderWrites(t *testing.T) {
	now := Timestamp(time.Unix(1700000000, 0))
	r := &Resource{
		Meta: &meshv1.Meta{Type: DataplaneType.Name, Mesh: "m", Name: "d", Version: 3, CreationTime: now,
			ModificationTime: now, Origin: "zone-1", Labels: map[string]string{"a": "b"}},
		Spec: &meshv1.Dataplane{},
	}
	js, err := MarshalJSON(r)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(js, &fields); err != nil {
		t.Fatal(err)
	}
	var written, table []string
	for k := range fields {
		written = append(written, k)
		if !IsMetaKey(k) {
			t.Errorf("encoder writes %q, which IsMetaKey calls a spec field", k)
		}
	}
	for k := range metaKeys {
		table = append(table, k)
	}
	sort.Strings(written)
	sort.Strings(table)
	if len(written) != len(table) {
		t.Errorf("encoder writes %v, meta keys are %v", written, table)
	}
	for _, k := range []string{"networking", "insight", "spec", ""} {
		if IsMetaKey(k) {
			t.Errorf("IsMetaKey(%q) = true", k)
		}
	}
}
