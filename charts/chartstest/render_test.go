package chartstest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCharts lints and renders every chart with every values case, compares
// the render with charts/<chart>/testdata/<case>.golden.yaml, decodes it
// strictly into k8s.io/api types and checks the deployment policy.
func TestCharts(t *testing.T) {
	needHelm(t)
	for _, chart := range allCharts() {
		for _, vc := range valuesCases(t, chart) {
			t.Run(chart+"/"+vc.name, func(t *testing.T) {
				var files []string
				if vc.file != "" {
					files = append(files, vc.file)
				}
				if out, err := helmLint(t, chart, files...); err != nil {
					t.Fatalf("helm lint --strict: %v\n%s", err, out)
				}
				render, err := helmTemplate(t, chart, files...)
				if err != nil {
					t.Fatalf("helm template: %v\n%s", err, render)
				}
				checkGolden(t, filepath.Join(chartsDir(t), chart, "testdata", vc.name+".golden.yaml"), render)
				objs, err := decodeStrict(render)
				if err != nil {
					t.Fatal(err)
				}
				checkPolicy(t, objs)
			})
		}
	}
}

func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file: %v (run with UPDATE=1 to create it)", err)
	}
	if string(want) != got {
		t.Errorf("render differs from %s (UPDATE=1 rewrites it):\n%s", path, diffLines(string(want), got))
	}
}

// diffLines is a small line diff: the first differing lines with context.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	i := 0
	for i < len(w) && i < len(g) && w[i] == g[i] {
		i++
	}
	var b strings.Builder
	from := max(0, i-3)
	for j := from; j < i; j++ {
		b.WriteString("  " + w[j] + "\n")
	}
	for j := i; j < min(len(w), i+8); j++ {
		b.WriteString("- " + w[j] + "\n")
	}
	for j := i; j < min(len(g), i+8); j++ {
		b.WriteString("+ " + g[j] + "\n")
	}
	return b.String()
}
