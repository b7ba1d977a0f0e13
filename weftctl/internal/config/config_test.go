package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftmesh/weft/weftctl/internal/config"
)

func TestDefaultPath(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	env["HOME"] = "/home/u"
	if p, err := config.DefaultPath(getenv); err != nil || p != "/home/u/.weft/weftctl.yaml" {
		t.Fatalf("path = %q, %v", p, err)
	}
	env[config.EnvPath] = "/etc/w.yaml"
	if p, _ := config.DefaultPath(getenv); p != "/etc/w.yaml" {
		t.Fatalf("path = %q", p)
	}
}

func TestAddUseRemoveRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "weftctl.yaml")
	if f, err := config.Load(path); err != nil || len(f.ControlPlanes) != 0 {
		t.Fatalf("missing file: %v %v", f, err)
	}
	// The first one added becomes current even without use.
	if err := config.AddControlPlaneAt(path, "local", "http://127.0.0.1:5681", "t1", false); err != nil {
		t.Fatal(err)
	}
	if err := config.AddControlPlaneAt(path, "prod", "https://weft.example.com", "t2", false); err != nil {
		t.Fatal(err)
	}
	f, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Current != "local" || len(f.ControlPlanes) != 2 {
		t.Fatalf("file = %+v", f)
	}
	// Re-adding replaces in place (what `weftctl up` does on every start).
	if err := config.AddControlPlaneAt(path, "local", "http://127.0.0.1:6681", "t3", true); err != nil {
		t.Fatal(err)
	}
	f, _ = config.Load(path)
	if cp := f.CurrentControlPlane(); cp == nil || cp.Address != "http://127.0.0.1:6681" || cp.Token != "t3" || len(f.ControlPlanes) != 2 {
		t.Fatalf("after replace: %+v", f)
	}
	if cp := f.FindByAddress("https://weft.example.com/"); cp == nil || cp.Name != "prod" {
		t.Fatalf("FindByAddress = %v", cp)
	}
	if err := f.Use("nope"); err == nil {
		t.Fatal("use of unknown control plane succeeded")
	}
	if err := f.Use("prod"); err != nil {
		t.Fatal(err)
	}
	if err := f.Remove("prod"); err != nil || f.Current != "" {
		t.Fatalf("remove current: %v, current %q", err, f.Current)
	}
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, want 0600", st.Mode().Perm())
	}
	if st, _ := os.Stat(filepath.Dir(path)); st.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode = %v, want 0700", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temp files left behind: %v", entries)
	}
}

func TestSaveTightensPermissions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.yaml")
	if err := os.WriteFile(path, []byte("controlPlanes: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := config.AddControlPlaneAt(path, "a", "http://x:1", "secret", true); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v", st.Mode().Perm())
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"unknown field", "controlPlane: []\n", "not valid"},
		{"bad address", "controlPlanes:\n- name: a\n  address: 127.0.0.1:5681\n", "address"},
		{"bad name", "controlPlanes:\n- name: A_B\n  address: http://x\n", "name"},
		{"duplicate", "controlPlanes:\n- {name: a, address: 'http://x'}\n- {name: a, address: 'http://y'}\n", "twice"},
		{"dangling current", "currentControlPlane: b\ncontrolPlanes:\n- {name: a, address: 'http://x'}\n", "not in controlPlanes"},
		{"null entry", "controlPlanes:\n- null\n", "empty"},
		{"credentials in URL", "controlPlanes:\n- {name: a, address: 'http://u:p@x'}\n", "credentials"},
		{"too big", strings.Repeat("#", config.MaxFileSize+1), "limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestAddRejectsBadInputWithoutWriting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.yaml")
	for _, tc := range []struct{ name, addr string }{{"", "http://x"}, {"a", "x:1"}, {"Bad", "http://x"}} {
		if err := config.AddControlPlaneAt(path, tc.name, tc.addr, "", true); err == nil {
			t.Errorf("add %q %q succeeded", tc.name, tc.addr)
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("file written: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("currentControlPlane: a\ncontrolPlanes:\n- name: a\n  address: http://127.0.0.1:5681\n  token: t\n"))
	f.Add([]byte("{}"))
	f.Add([]byte("controlPlanes: [null]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cf, err := config.Parse(data)
		if err != nil {
			return
		}
		if cf.Current != "" && cf.CurrentControlPlane() == nil {
			t.Fatalf("accepted a dangling current: %q", data)
		}
		for _, cp := range cf.ControlPlanes {
			if config.ValidateAddress(cp.Address) != nil {
				t.Fatalf("accepted a bad address %q", cp.Address)
			}
		}
	})
}

// An entry for an address another name already has replaces it: a stale
// local-standalone next to local-global on the same URL would send the old
// control plane's token (401).
func TestPutReplacesSameAddress(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weftctl.yaml")
	if err := config.AddControlPlaneAt(path, "local-standalone", "http://127.0.0.1:5681", "old", true); err != nil {
		t.Fatal(err)
	}
	if err := config.AddControlPlaneAt(path, "prod", "https://weft.example.com", "p", false); err != nil {
		t.Fatal(err)
	}
	if err := config.AddControlPlaneAt(path, "local-global", "http://127.0.0.1:5681/", "new", false); err != nil {
		t.Fatal(err)
	}
	f, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Find("local-standalone") != nil || len(f.ControlPlanes) != 2 {
		t.Fatalf("stale entry kept: %+v", f.ControlPlanes)
	}
	// The removed entry was current: its replacement is.
	if cp := f.CurrentControlPlane(); cp == nil || cp.Name != "local-global" || cp.Token != "new" {
		t.Fatalf("current = %+v", cp)
	}
	if cp := f.FindByAddress("http://127.0.0.1:5681"); cp == nil || cp.Token != "new" {
		t.Fatalf("FindByAddress = %+v", cp)
	}
	replaced, err := f.Put(config.ControlPlane{Name: "prod2", Address: "https://weft.example.com"}, false)
	if err != nil || len(replaced) != 1 || replaced[0] != "prod" || f.Current != "local-global" {
		t.Fatalf("replaced = %v, %v, current %q", replaced, err, f.Current)
	}
}
