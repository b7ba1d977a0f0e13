// Command crdgen writes the Weft CRDs (k8s-controller/crd) into a
// directory, by default charts/k8s-controller/crds (run from the repo root:
// go run ./k8s-controller/cmd/crdgen).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/weftmesh/weft/k8s-controller/crd"
)

func main() {
	out := flag.String("out", "charts/k8s-controller/crds", "directory to write the CRD files into (stale weft.io_*.yaml files there are removed)")
	flag.Parse()
	if err := write(*out); err != nil {
		fmt.Fprintln(os.Stderr, "crdgen:", err)
		os.Exit(1)
	}
}

func write(dir string) error {
	files, err := crd.Files()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	old, _ := filepath.Glob(filepath.Join(dir, crd.Group+"_*.yaml"))
	for _, p := range old {
		if _, keep := files[filepath.Base(p)]; !keep {
			if err := os.Remove(p); err != nil {
				return err
			}
		}
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("wrote %d CRDs to %s: %s\n", len(files), dir, strings.Join(keys(files), " "))
	return nil
}

func keys(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
