package up_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/weftctl/internal/up"
)

func put(t *testing.T, url, tok, body string) int {
	t.Helper()
	req, _ := http.NewRequest("PUT", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// secretsOf reads every Secret of a mesh (name → data) through the API.
func secretsOf(t *testing.T, api, tok, mesh string) map[string]string {
	t.Helper()
	code, body := get(t, api+"/meshes/"+mesh+"/secrets", tok)
	if code != 200 {
		t.Fatalf("list secrets: %d %s", code, body)
	}
	var list struct {
		Items []struct {
			Name string `json:"name"`
			Data string `json:"data"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, it := range list.Items {
		code, one := get(t, api+"/meshes/"+mesh+"/secrets/"+it.Name, tok)
		if code != 200 {
			t.Fatalf("get secret %s: %d %s", it.Name, code, one)
		}
		out[it.Name] = it.Data
	}
	return out
}

// TestUpKeyRotation rotates the sealing key of a `weftctl up` control
// plane: a new key is put first, up restarts (and re-seals everything:
// Secrets, the builtin CA root, the control plane's cp-* secrets), the old
// key is removed, up restarts again and every secret reads back the same;
// the admin token (signed with a cp-* secret) still works.
func TestUpKeyRotation(t *testing.T) {
	dir := t.TempDir()
	eps, stop := startUp(t, up.Options{DataDir: dir, Demo: true})
	cp := eps.ControlPlanes[0]
	if code := put(t, cp.APIURL+"/meshes/demo/secrets/mine", cp.AdminToken, `{"type":"Secret","data":"`+base64.StdEncoding.EncodeToString([]byte("my secret"))+`"}`); code != 201 {
		t.Fatalf("put secret: %d", code)
	}
	var before map[string]string
	deadline := time.Now().Add(60 * time.Second)
	for {
		before = secretsOf(t, cp.APIURL, cp.AdminToken, "demo")
		if len(before) >= 2 { // mine + the builtin CA root ca-service made
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("builtin CA root secret not created: %v", before)
		}
		time.Sleep(200 * time.Millisecond)
	}
	stop()

	keyFile := filepath.Join(dir, "standalone", "encryption.key")
	old, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	newLine := "k2:" + base64.StdEncoding.EncodeToString(raw) + "\n"
	var oldLines []string
	for _, l := range strings.Split(string(old), "\n") {
		if strings.HasPrefix(l, "k1:") {
			oldLines = append(oldLines, l)
		}
	}
	if len(oldLines) != 1 {
		t.Fatalf("key file: %s", old)
	}
	// 1. The new key first, the old one still there: up re-seals on start.
	if err := os.WriteFile(keyFile, []byte(newLine+oldLines[0]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stop = startUp(t, up.Options{DataDir: dir})
	stop()
	// 2. The old key dropped: up still starts and every secret reads.
	if err := os.WriteFile(keyFile, []byte(newLine), 0o600); err != nil {
		t.Fatal(err)
	}
	eps, stop = startUp(t, up.Options{DataDir: dir})
	defer stop()
	after := secretsOf(t, eps.ControlPlanes[0].APIURL, cp.AdminToken, "demo")
	if len(after) != len(before) {
		t.Fatalf("after rotation: %d secrets, before %d", len(after), len(before))
	}
	for name, data := range before {
		if !bytes.Equal([]byte(after[name]), []byte(data)) {
			t.Fatalf("secret %s changed across rotation", name)
		}
	}
	if code, body := get(t, eps.ControlPlanes[0].APIURL+"/meshes/demo", cp.AdminToken); code != 200 {
		t.Fatalf("mesh after rotation: %d %s", code, body)
	}
}
