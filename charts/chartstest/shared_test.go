package chartstest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestSharedHelpers: every service chart carries the canonical
// charts/_shared/_weft.tpl byte for byte (UPDATE=1 copies it).
func TestSharedHelpers(t *testing.T) {
	want, err := os.ReadFile(filepath.Join(chartsDir(t), "_shared", "_weft.tpl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range serviceCharts {
		p := filepath.Join(chartsDir(t), c, "templates", "_weft.tpl")
		got, err := os.ReadFile(p)
		if *update && (err != nil || !bytes.Equal(got, want)) {
			if err := os.WriteFile(p, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from charts/_shared/_weft.tpl (edit the shared copy, then UPDATE=1)", p)
		}
	}
}

// TestSharedSchemaDefs: every chart schema holds the canonical $defs of
// charts/_shared/schema-defs.json (it may add its own); UPDATE=1 re-syncs.
func TestSharedSchemaDefs(t *testing.T) {
	var defs map[string]json.RawMessage
	readJSON(t, filepath.Join(chartsDir(t), "_shared", "schema-defs.json"), &defs)
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
					t.Errorf("%s: $defs.%s differs from charts/_shared/schema-defs.json (UPDATE=1 re-syncs)", p, k)
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
