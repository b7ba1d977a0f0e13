package chartstest

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"testing"

	"sigs.k8s.io/yaml"
)

// chartMeta is the part of a Chart.yaml the library checks read.
type chartMeta struct {
	Name         string `json:"name"`
	Type         string `json:"type"`
	Version      string `json:"version"`
	Dependencies []struct {
		Name       string `json:"name"`
		Version    string `json:"version"`
		Repository string `json:"repository"`
	} `json:"dependencies"`
}

func readChartMeta(t *testing.T, chart string) chartMeta {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(chartsDir(t), chart, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var m chartMeta
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s/Chart.yaml: %v", chart, err)
	}
	return m
}

var defineRE = regexp.MustCompile(`define\s+"(weft\.[^"]*)"`)

// TestLibraryChart: the weft.* helpers are defined once, in the weft-lib
// library chart, which every service chart depends on through
// file://../weft-lib (vendored offline by helm dependency build); no chart
// defines a weft.* template of its own, and weft-lib passes helm lint.
func TestLibraryChart(t *testing.T) {
	lib := readChartMeta(t, library)
	if lib.Name != library || lib.Type != "library" {
		t.Errorf("%s/Chart.yaml: name %q type %q, want %s, library", library, lib.Name, lib.Type, library)
	}
	defs, err := filepath.Glob(filepath.Join(chartsDir(t), library, "templates", "*.tpl"))
	if err != nil || len(defs) == 0 {
		t.Fatalf("%s/templates/*.tpl: %v %v", library, defs, err)
	}
	for _, c := range allCharts() {
		m := readChartMeta(t, c)
		deps := 0
		for _, d := range m.Dependencies {
			if d.Name != library {
				continue
			}
			deps++
			if d.Repository != "file://../"+library || d.Version != lib.Version {
				t.Errorf("%s/Chart.yaml: %s %s from %s, want %s from file://../%s", c, d.Name, d.Version, d.Repository, lib.Version, library)
			}
		}
		isService := slices.Contains(serviceCharts, c)
		if isService && deps != 1 {
			t.Errorf("%s/Chart.yaml: %d dependencies on %s, want 1", c, deps, library)
		}
		if !isService && deps != 0 {
			t.Errorf("%s/Chart.yaml: depends on %s; only the service charts do (it reaches the umbrella through them)", c, library)
		}
		err := filepath.WalkDir(filepath.Join(chartsDir(t), c, "templates"), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			src, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range defineRE.FindAllStringSubmatch(string(src), -1) {
				t.Errorf("%s defines %q: weft.* helpers live in charts/%s only", p, m[1], library)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if helmPath() == "" {
		t.Skip("helm not found: weft-lib not linted")
	}
	if out, err := helmLint(t, library); err != nil {
		t.Errorf("helm lint --strict %s: %v\n%s", library, err, out)
	}
}

// TestSharedSchemaDefs: every chart schema holds the canonical $defs of
// charts/weft-lib/schema-defs.json (it may add its own); UPDATE=1 re-syncs.
// Helm validates each chart's values against that chart's own
// values.schema.json and resolves no $ref across charts, so the shared
// definitions are copies, kept equal here.
func TestSharedSchemaDefs(t *testing.T) {
	var defs map[string]json.RawMessage
	readJSON(t, filepath.Join(chartsDir(t), library, "schema-defs.json"), &defs)
	for _, c := range allCharts() {
		p := filepath.Join(chartsDir(t), c, "values.schema.json")
		var schema map[string]any
		readJSON(t, p, &schema)
		got, _ := schema["$defs"].(map[string]any)
		if got == nil {
			got = map[string]any{}
		}
		stale := false
		for k, raw := range defs {
			var want any
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got[k], want) {
				stale = true
				if !*update {
					t.Errorf("%s: $defs.%s differs from charts/weft-lib/schema-defs.json (UPDATE=1 re-syncs)", p, k)
				}
				got[k] = want
			}
		}
		if stale && *update {
			schema["$defs"] = got
			writeJSONKeepOrder(t, p, schema)
		}
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// writeJSONKeepOrder writes the schema with "$schema", "title", ... first
// and "$defs" last, the way the files are laid out.
func writeJSONKeepOrder(t *testing.T, path string, schema map[string]any) {
	t.Helper()
	order := []string{"$schema", "title", "type", "additionalProperties", "required", "properties", "$defs"}
	var buf bytes.Buffer
	buf.WriteString("{\n")
	first := true
	emit := func(k string, v any) {
		b, err := json.MarshalIndent(v, "  ", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if !first {
			buf.WriteString(",\n")
		}
		first = false
		kb, _ := json.Marshal(k)
		buf.WriteString("  " + string(kb) + ": " + string(b))
	}
	done := map[string]bool{}
	for _, k := range order {
		if v, ok := schema[k]; ok {
			emit(k, v)
			done[k] = true
		}
	}
	for k, v := range schema {
		if !done[k] {
			emit(k, v)
		}
	}
	buf.WriteString("\n}\n")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
