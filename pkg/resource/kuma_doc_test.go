package resource_test

import (
	"os"
	"strings"
	"testing"

	"github.com/weftmesh/weft/pkg/resource"
)

// docs/kuma-compatibility.md has a section for every type a user writes
// and names every Kuma type Weft refuses.
func TestKumaCompatibilityDocCoversEveryType(t *testing.T) {
	doc, err := os.ReadFile("../../docs/kuma-compatibility.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	for _, typ := range resource.Types() {
		if typ.System {
			continue
		}
		found := false
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, "### ") && strings.Contains(line, typ.Name) {
				found = true
			}
		}
		if !found {
			t.Errorf("no '### ' section names %s", typ.Name)
		}
	}
	for name := range resource.KumaOnlyTypes {
		if !strings.Contains(text, "`"+name+"`") {
			t.Errorf("the doc does not name the unsupported Kuma type %s", name)
		}
	}
	for _, want := range []string{"weftctl convert --from-kuma", "weftctl apply --from-kuma", "/zone-ingresses"} {
		if !strings.Contains(text, want) {
			t.Errorf("the doc does not mention %q", want)
		}
	}
}
