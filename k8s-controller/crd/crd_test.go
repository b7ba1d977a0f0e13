package crd_test

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/weftmesh/weft/k8s-controller/crd"
	"github.com/weftmesh/weft/pkg/resource"
)

var committed = filepath.Join("..", "..", "charts", "k8s-controller", "crds")

// The CRDs under charts/ are what the generator makes from the current
// model: regenerate with `go run ./k8s-controller/cmd/crdgen`.
func TestCommittedCRDsAreCurrent(t *testing.T) {
	files, err := crd.Files()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(committed, name))
		if err != nil {
			t.Errorf("%s: %v (run: go run ./k8s-controller/cmd/crdgen)", name, err)
			continue
		}
		if string(got) != string(want) {
			t.Errorf("%s is stale: run go run ./k8s-controller/cmd/crdgen from the repo root and commit", name)
		}
	}
	onDisk, _ := filepath.Glob(filepath.Join(committed, crd.Group+"_*.yaml"))
	for _, p := range onDisk {
		if _, ok := files[filepath.Base(p)]; !ok {
			t.Errorf("%s is not generated any more: remove it (crdgen does)", p)
		}
	}
}

// Every type users write has a kind; system types have none.
func TestEveryWritableTypeHasAKind(t *testing.T) {
	var want, got []string
	for _, ty := range resource.Types() {
		if !ty.System {
			want = append(want, ty.Name)
		}
	}
	for _, k := range crd.Kinds() {
		got = append(got, k.Kind)
		if k.CRD().Spec.Names.Plural != k.Plural || k.CRD().Name != k.Plural+".weft.io" {
			t.Errorf("%s: names %+v", k.Kind, k.CRD().Spec.Names)
		}
	}
	sort.Strings(want)
	sort.Strings(got)
	if len(want) != len(got) || len(want) == 0 {
		t.Fatalf("kinds %v, want %v", got, want)
	}
	for i := range want {
		if want[i] != got[i] {
			t.Fatalf("kinds %v, want %v", got, want)
		}
	}
}
