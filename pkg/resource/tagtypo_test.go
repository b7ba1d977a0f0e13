package resource_test

import (
	"testing"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

func TestSelectorTagsAndLikelyTypo(t *testing.T) {
	tp := &meshv1.TrafficPermission{
		Sources:      []*meshv1.Selector{{Match: map[string]string{"weft.io/servce": "web", "team": "a"}}},
		Destinations: []*meshv1.Selector{{Match: map[string]string{resource.ServiceTag: "*"}}},
	}
	got := resource.SelectorTags(tp)
	want := []resource.SelectorTag{
		{`sources[0].match["team"]`, "team"},
		{`sources[0].match["weft.io/servce"]`, "weft.io/servce"},
		{`destinations[0].match["weft.io/service"]`, "weft.io/service"},
	}
	if len(got) != len(want) {
		t.Fatalf("SelectorTags = %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("SelectorTags[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	known := append([]string{"version", "team"}, resource.WellKnownTags...)
	for key, typo := range map[string]string{
		"weft.io/servce":   resource.ServiceTag,
		"weft.io/Service":  resource.ServiceTag,
		"weft.io/protocl":  resource.ProtocolTag,
		"weft.io/service":  "", // known
		"teem":             "team",
		"datacenter":       "", // nothing close
		"weft.io/zone-xyz": "",
	} {
		if got := resource.LikelyTypo(key, known); got != typo {
			t.Errorf("LikelyTypo(%q) = %q, want %q", key, got, typo)
		}
	}
}
