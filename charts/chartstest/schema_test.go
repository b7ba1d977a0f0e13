package chartstest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWrongValues: values a user gets wrong must fail helm template and helm
// lint with a message naming the field.
func TestWrongValues(t *testing.T) {
	needHelm(t)
	cases := []struct {
		name, chart, values string
		want                []string
		// tmplCheck: a fail in the templates, not the schema. helm lint
		// only logs those ("[INFO] Fail: ...") and exits 0; install and
		// template fail.
		tmplCheck bool
	}{
		{"umbrella mode typo", umbrella, "global:\n  mode: glob\n",
			[]string{"at '/global/mode'", "value must be one of 'standalone', 'global', 'zone'"}, false},
		{"umbrella mode at top level", umbrella, "mode: zone\n",
			[]string{"additional properties 'mode' not allowed"}, false},
		{"api-server mode typo", "api-server", "mode: glob\n",
			[]string{"at '/mode'", "value must be one of '', 'standalone', 'global', 'zone'"}, false},
		{"zone-sync mode typo", "zone-sync", "mode: glob\n",
			[]string{"at '/mode'", "value must be one of '', 'global', 'zone'"}, false},
		{"service chart inherits a bad global mode", "xds-server", "global:\n  mode: glob\n",
			[]string{"at '/global/mode'", "value must be one of"}, false},
		{"subchart value checked through the umbrella", umbrella, "xds-server:\n  replicaCount: two\n",
			[]string{"xds-server:", "at '/replicaCount'", "got string, want integer"}, false},
		{"misspelt key", "xds-server", "replicas: 3\n",
			[]string{"additional properties 'replicas' not allowed"}, false},
		{"bad duration", "xds-server", "ads:\n  maxConnectionAge: 30 minutes\n",
			[]string{"at '/ads/maxConnectionAge'", "does not match pattern"}, false},
		{"negative handshake bound", "xds-server", "ads:\n  maxConcurrentHandshakes: -1\n",
			[]string{"at '/ads/maxConcurrentHandshakes'", "minimum: got -1, want 0"}, false},
		{"etcd endpoint without port", "api-server", "etcd:\n  endpoints: [etcd.example.com]\n",
			[]string{"at '/etcd/endpoints/0'", "does not match pattern"}, false},
		{"bad log level", umbrella, "global:\n  mode: standalone\n  log:\n    level: verbose\n",
			[]string{"at '/global/log/level'", "value must be one of"}, false},
		{"zone name not a DNS label", umbrella, "global:\n  mode: zone\n  zone: East_1\n",
			[]string{"at '/global/zone'", "does not match pattern"}, false},
		{"root user", "ca-service", "podSecurityContext:\n  runAsNonRoot: false\n",
			[]string{"at '/podSecurityContext/runAsNonRoot'", "value must be true"}, false},
		// Checks a schema cannot express fail from the templates.
		{"zone mode without zone name", umbrella, "global:\n  mode: zone\n",
			[]string{"global.zone"}, true},
		{"zone without global address", umbrella, "global:\n  mode: zone\n  zone: east\n",
			[]string{"zone-sync: mode zone needs globalAddress"}, true},
		{"zone without token", umbrella, "global:\n  mode: zone\n  zone: east\nzone-sync:\n  globalAddress: g.example.com:5685\n",
			[]string{"zone-sync: mode zone needs token.secretName"}, true},
		{"no etcd at all", umbrella, "global:\n  mode: global\netcd:\n  enabled: false\n",
			[]string{"no etcd: set global.etcd.endpoints (production) or etcd.enabled=true (evaluation)"}, true},
		{"external and evaluation etcd", umbrella, "global:\n  mode: global\n  etcd:\n    endpoints: [etcd:2379]\n",
			[]string{"global.etcd.endpoints is set (external etcd): set etcd.enabled=false too"}, true},
	}
	dir := t.TempDir()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if err := os.WriteFile(f, []byte(tc.values), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, cmd := range []struct {
				name string
				run  func(testing.TB, string, ...string) (string, error)
			}{{"template", helmTemplate}, {"lint", helmLint}} {
				out, err := cmd.run(t, tc.chart, f)
				if err == nil && !(tc.tmplCheck && cmd.name == "lint") {
					t.Errorf("helm %s %s with %q: no error", cmd.name, tc.chart, tc.values)
					continue
				}
				for _, w := range tc.want {
					if !strings.Contains(out, w) {
						t.Errorf("helm %s %s: output lacks %q:\n%s", cmd.name, tc.chart, w, out)
					}
				}
			}
		})
	}
}
