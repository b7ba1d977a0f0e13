package cmd_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	"github.com/weftmesh/weft/weftctl/internal/cmd"
)

func keyLine(id string, b byte) string {
	return id + ":" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32))
}

func runCmd(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cmd.Main(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String() + errb.String()
}

// TestAdminResealAndRepair: `weftctl admin reseal` re-seals every value with
// the first key while another writer keeps updating secrets (no write is
// lost), so the old key can be dropped; `weftctl admin repair` lists an
// undecodable value and removes it with --delete.
func TestAdminResealAndRepair(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	k1, _ := seal.Parse(keyLine("k1", 1))
	k21, _ := seal.Parse(keyLine("k2", 2) + "\n" + keyLine("k1", 1))
	s1 := store.New(cli, store.WithKeyring(k1))
	m := resource.New(resource.MeshType, "", "m")
	m.Spec = &meshv1.Mesh{}
	if _, err := s1.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	const n = 60
	for i := 0; i < n; i++ {
		s := resource.New(resource.SecretType, "m", fmt.Sprintf("s-%02d", i))
		s.Spec = &meshv1.Secret{Data: []byte("v0")}
		if _, err := s1.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	g := resource.New(resource.GlobalSecretType, "", "cp-signing-key")
	g.Spec = &meshv1.GlobalSecret{Data: []byte("key")}
	if _, err := s1.Create(ctx, g); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "keys")
	if err := os.WriteFile(keyFile, []byte(keyLine("k2", 2)+"\n"+keyLine("k1", 1)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A service with the new keyring keeps writing while reseal runs.
	writer := store.New(cli, store.WithKeyring(k21))
	last := make([]string, n)
	var wg sync.WaitGroup
	stopWrites := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for round := 1; ; round++ {
			for i := 0; i < n; i++ {
				select {
				case <-stopWrites:
					return
				default:
				}
				s := resource.New(resource.SecretType, "m", fmt.Sprintf("s-%02d", i))
				v := fmt.Sprintf("v%d", round)
				s.Spec = &meshv1.Secret{Data: []byte(v)}
				if _, err := writer.Update(ctx, s); err != nil {
					t.Errorf("concurrent write: %v", err)
					return
				}
				last[i] = v
			}
		}
	}()
	code, out := runCmd(t, "admin", "reseal", "--etcd-endpoints", srv.Endpoint(), "--encryption-key-file", keyFile)
	close(stopWrites)
	wg.Wait()
	if code != 0 || !strings.Contains(out, "unreadable 0") {
		t.Fatalf("reseal: exit %d: %s", code, out)
	}
	t.Logf("reseal: %s", strings.TrimSpace(out))
	// Values written with k1 before the writer reached them were re-sealed;
	// run again to be sure nothing is left on k1, then drop k1.
	if code, out := runCmd(t, "admin", "reseal", "--etcd-endpoints", srv.Endpoint(), "--encryption-key-file", keyFile); code != 0 || !strings.Contains(out, "resealed 0,") {
		t.Fatalf("second reseal: exit %d: %s", code, out)
	}
	if err := os.WriteFile(keyFile, []byte(keyLine("k2", 2)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k2, _ := seal.Parse(keyLine("k2", 2))
	s2 := store.New(cli, store.WithKeyring(k2))
	for i := 0; i < n; i++ {
		r, err := s2.Get(ctx, resource.SecretType, "m", fmt.Sprintf("s-%02d", i))
		if err != nil {
			t.Fatalf("after dropping k1: %v", err)
		}
		want := last[i]
		if want == "" {
			want = "v0"
		}
		if got := string(r.Spec.(*meshv1.Secret).GetData()); got != want {
			t.Fatalf("s-%02d: %q, want the last write %q (a concurrent write was lost)", i, got, want)
		}
	}
	if _, err := s2.Get(ctx, resource.GlobalSecretType, "", "cp-signing-key"); err != nil {
		t.Fatalf("cp-signing-key after rotation: %v", err)
	}

	// Repair: clean, then one corrupt value found and deleted.
	if code, out := runCmd(t, "admin", "repair", "--etcd-endpoints", srv.Endpoint(), "--encryption-key-file", keyFile); code != 0 || !strings.Contains(out, "every stored value decodes") {
		t.Fatalf("repair on a clean store: exit %d: %s", code, out)
	}
	if _, err := cli.Put(ctx, s2.Key(resource.SecretType, "m", "s-07"), "\xff corrupt"); err != nil {
		t.Fatal(err)
	}
	code, out = runCmd(t, "admin", "repair", "--etcd-endpoints", srv.Endpoint(), "--encryption-key-file", keyFile)
	if code != 1 || !strings.Contains(out, "Secret/m/s-07: unreadable") {
		t.Fatalf("repair listing: exit %d: %s", code, out)
	}
	code, out = runCmd(t, "admin", "repair", "--etcd-endpoints", srv.Endpoint(), "--encryption-key-file", keyFile, "--delete")
	if code != 0 || !strings.Contains(out, "Secret/m/s-07: deleted") {
		t.Fatalf("repair --delete: exit %d: %s", code, out)
	}
	if _, err := s2.Get(ctx, resource.SecretType, "m", "s-07"); !store.IsNotFound(err) {
		t.Fatalf("s-07 after repair: %v", err)
	}
	if _, err := s2.Get(ctx, resource.SecretType, "m", "s-08"); err != nil {
		t.Fatalf("repair removed more than the bad value: %v", err)
	}
}
