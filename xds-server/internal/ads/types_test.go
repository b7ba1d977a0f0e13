package ads

import (
	"testing"

	"github.com/weftmesh/weft/xds-server/internal/generator"
)

// TestTypeCount pins the per-stream arrays to the served types.
func TestTypeCount(t *testing.T) {
	if typeCount != len(generator.TypeURLs) {
		t.Fatalf("typeCount = %d, generator.TypeURLs has %d", typeCount, len(generator.TypeURLs))
	}
	for i, u := range generator.TypeURLs {
		if typeIndex(u) != i {
			t.Fatalf("typeIndex(%s) = %d, want %d", u, typeIndex(u), i)
		}
	}
	if typeIndex("type.googleapis.com/other") != -1 {
		t.Fatal("typeIndex of an unserved type")
	}
}
