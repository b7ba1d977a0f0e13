package seal

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	storev1 "github.com/weftmesh/weft/proto/gen/go/weft/store/v1"
)

func key(id string, b byte) Key { return Key{ID: id, Bytes: bytes.Repeat([]byte{b}, KeySize)} }

func keyLine(id string, b byte) string {
	return id + ":" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, KeySize))
}

func mustNew(t *testing.T, keys ...Key) *Keyring {
	t.Helper()
	k, err := New(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRoundTrip(t *testing.T) {
	k := mustNew(t, key("k1", 1))
	aad := []byte("/weft/secrets/m/s")
	for _, pt := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("secret"), 10000)} {
		s, err := k.Seal(pt, aad)
		if err != nil {
			t.Fatal(err)
		}
		if s.GetKeyId() != "k1" || len(s.GetNonce()) != 12 {
			t.Fatalf("sealed %v", s)
		}
		// A short plaintext can turn up in random bytes by chance (1 byte: about
		// one run in 15), so only a long one is looked for.
		if len(pt) >= 16 && bytes.Contains(s.GetCiphertext(), pt) {
			t.Fatal("plaintext visible in the ciphertext")
		}
		got, err := k.Open(s, aad)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("round trip: got %d bytes, want %d", len(got), len(pt))
		}
	}
	// Two seals of the same value differ (fresh nonce each time).
	a, _ := k.Seal([]byte("same"), aad)
	b, _ := k.Seal([]byte("same"), aad)
	if bytes.Equal(a.GetNonce(), b.GetNonce()) || bytes.Equal(a.GetCiphertext(), b.GetCiphertext()) {
		t.Fatal("nonce reused")
	}
}

func TestWrongKey(t *testing.T) {
	aad := []byte("/weft/a")
	s, err := mustNew(t, key("k1", 1)).Seal([]byte("secret"), aad)
	if err != nil {
		t.Fatal(err)
	}
	// Same id, different key material.
	if _, err := mustNew(t, key("k1", 2)).Open(s, aad); err == nil || !strings.Contains(err.Error(), "tampered or wrong key") {
		t.Fatalf("other key material: %v", err)
	}
	// A key id the keyring does not hold: the error names it.
	if _, err := mustNew(t, key("k2", 1)).Open(s, aad); err == nil || !strings.Contains(err.Error(), `"k1"`) {
		t.Fatalf("missing key: %v", err)
	}
}

func TestTamperedCiphertext(t *testing.T) {
	k := mustNew(t, key("k1", 1))
	aad := []byte("/weft/a")
	s, err := k.Seal([]byte("secret value"), aad)
	if err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*storev1.Sealed){
		"ciphertext bit": func(s *storev1.Sealed) { s.Ciphertext[0] ^= 1 },
		"tag bit":        func(s *storev1.Sealed) { s.Ciphertext[len(s.Ciphertext)-1] ^= 0x80 },
		"truncated":      func(s *storev1.Sealed) { s.Ciphertext = s.Ciphertext[:len(s.Ciphertext)-1] },
		"empty":          func(s *storev1.Sealed) { s.Ciphertext = nil },
		"nonce bit":      func(s *storev1.Sealed) { s.Nonce[0] ^= 1 },
		"short nonce":    func(s *storev1.Sealed) { s.Nonce = s.Nonce[:4] },
		"no nonce":       func(s *storev1.Sealed) { s.Nonce = nil },
		"no key id":      func(s *storev1.Sealed) { s.KeyId = "" },
	} {
		c := proto.Clone(s).(*storev1.Sealed)
		mutate(c)
		if pt, err := k.Open(c, aad); err == nil {
			t.Errorf("%s: opened to %q", name, pt)
		}
	}
	if _, err := k.Open(nil, aad); err == nil {
		t.Error("nil sealed value opened")
	}
	// The original still opens: Open does not mutate.
	if _, err := k.Open(s, aad); err != nil {
		t.Fatal(err)
	}
}

// TestAADBindsToKey: a sealed value copied under another etcd key does not
// open there.
func TestAADBindsToKey(t *testing.T) {
	k := mustNew(t, key("k1", 1))
	s, err := k.Seal([]byte("token signing key"), []byte("/weft/secrets/m/a"))
	if err != nil {
		t.Fatal(err)
	}
	for _, other := range []string{"/weft/secrets/m/b", "/weft/secrets/m/a ", "", "/weft/secrets/m/"} {
		if _, err := k.Open(s, []byte(other)); err == nil {
			t.Errorf("opened under %q", other)
		}
	}
}

// TestRotation: the first key seals, every key opens; values sealed before
// a rotation open after it, and a dropped key's values fail with an error
// that names it.
func TestRotation(t *testing.T) {
	aad := []byte("/weft/k")
	old := mustNew(t, key("k1", 1))
	s1, _ := old.Seal([]byte("one"), aad)

	rotated := mustNew(t, key("k2", 2), key("k1", 1))
	if rotated.ActiveKeyID() != "k2" {
		t.Fatalf("active %q", rotated.ActiveKeyID())
	}
	s2, _ := rotated.Seal([]byte("two"), aad)
	if s2.GetKeyId() != "k2" {
		t.Fatalf("sealed with %q after rotation", s2.GetKeyId())
	}
	for _, c := range []struct {
		s    *storev1.Sealed
		want string
	}{{s1, "one"}, {s2, "two"}} {
		got, err := rotated.Open(c.s, aad)
		if err != nil || string(got) != c.want {
			t.Fatalf("open %s: %q %v", c.s.GetKeyId(), got, err)
		}
	}
	// Three keys, the middle one old.
	three := mustNew(t, key("k3", 3), key("k2", 2), key("k1", 1))
	if got, err := three.Open(s1, aad); err != nil || string(got) != "one" {
		t.Fatalf("k1 value with three keys: %q %v", got, err)
	}
	// The old keyring cannot open the new value.
	if _, err := old.Open(s2, aad); err == nil || !strings.Contains(err.Error(), `"k2"`) {
		t.Fatalf("old keyring, new value: %v", err)
	}
	// k1 retired: its values fail, naming it.
	retired := mustNew(t, key("k2", 2))
	if _, err := retired.Open(s1, aad); err == nil || !strings.Contains(err.Error(), `"k1"`) {
		t.Fatalf("retired key: %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	for name, c := range map[string]struct {
		keys []Key
		want string
	}{
		"none":       {nil, "no encryption key configured"},
		"empty id":   {[]Key{key("", 1)}, "must be non-empty"},
		"colon id":   {[]Key{key("a:b", 1)}, "must be non-empty"},
		"comma id":   {[]Key{key("a,b", 1)}, "must be non-empty"},
		"space id":   {[]Key{key("a b", 1)}, "must be non-empty"},
		"short key":  {[]Key{{ID: "k", Bytes: make([]byte, 16)}}, "is 16 bytes, want 32"},
		"long key":   {[]Key{{ID: "k", Bytes: make([]byte, 33)}}, "is 33 bytes, want 32"},
		"duplicate":  {[]Key{key("k", 1), key("k", 2)}, `key id "k" appears twice`},
		"second bad": {[]Key{key("k1", 1), {ID: "k2"}}, `key "k2" is 0 bytes`},
	} {
		_, err := New(c.keys...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}

func TestParse(t *testing.T) {
	text := "# keys\n\n" + keyLine("new", 2) + "\n  " + keyLine("old", 1) + "  \n# trailing comment\n"
	k, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	if k.ActiveKeyID() != "new" || len(k.aeads) != 2 {
		t.Fatalf("active %q, %d keys", k.ActiveKeyID(), len(k.aeads))
	}
	// Comma-separated (an environment variable) works the same.
	k, err = Parse(keyLine("a", 1) + "," + keyLine("b", 2))
	if err != nil || k.ActiveKeyID() != "a" || len(k.aeads) != 2 {
		t.Fatalf("comma form: %v", err)
	}
	// A value sealed by one parse opens with another of the same text.
	s, _ := mustParse(t, text).Seal([]byte("v"), nil)
	if _, err := mustParse(t, text).Open(s, nil); err != nil {
		t.Fatal(err)
	}
}

func mustParse(t *testing.T, text string) *Keyring {
	t.Helper()
	k, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestParseErrors(t *testing.T) {
	for name, c := range map[string]struct{ text, want string }{
		"empty":         {"", "no encryption key configured"},
		"only comments": {"# nothing\n\n", "no encryption key configured"},
		"no colon":      {"k1" + base64.StdEncoding.EncodeToString(make([]byte, 32)), "id:base64key"},
		"bad base64":    {"k1:not*base64", `key "k1" is not valid base64`},
		"short key":     {"k1:" + base64.StdEncoding.EncodeToString(make([]byte, 31)), "is 31 bytes, want 32"},
		"empty key":     {"k1:", "is 0 bytes"},
		"empty id":      {":" + base64.StdEncoding.EncodeToString(make([]byte, 32)), "must be non-empty"},
		"duplicate":     {keyLine("k", 1) + "\n" + keyLine("k", 2), "appears twice"},
		"bad second":    {keyLine("k", 1) + "\nk2:???", `key "k2" is not valid base64`},
	} {
		_, err := Parse(c.text)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
		// The key material never appears in an error.
		if err != nil && strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, KeySize))) {
			t.Errorf("%s: error leaks key material: %v", name, err)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.txt")
	if err := os.WriteFile(path, []byte(keyLine("f", 1)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const env = "WEFT_SEAL_TEST_KEYS"
	t.Setenv(env, keyLine("e", 2))
	// The file wins over the environment.
	if k, err := Load(path, env); err != nil || k.ActiveKeyID() != "f" {
		t.Fatalf("file: %v", err)
	}
	if k, err := Load("", env); err != nil || k.ActiveKeyID() != "e" {
		t.Fatalf("env: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing"), env); err == nil || !strings.Contains(err.Error(), "read key file") {
		t.Fatalf("missing file: %v", err)
	}
	t.Setenv(env, "")
	if _, err := Load("", env); err == nil || !strings.Contains(err.Error(), env) {
		t.Fatalf("nothing configured: %v (the error should name %s)", err, env)
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, env); err == nil {
		t.Fatal("garbage key file loaded")
	}
}

func TestGenerateKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.txt")
	k1, err := GenerateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	s, _ := k1.Seal([]byte("v"), nil)
	// A second call keeps the existing key.
	k2, err := GenerateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k2.Open(s, nil); err != nil {
		t.Fatalf("second GenerateKeyFile replaced the key: %v", err)
	}
	// Two fresh files hold different keys.
	k3, err := GenerateKeyFile(filepath.Join(t.TempDir(), "keys.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k3.Open(s, nil); err == nil {
		t.Fatal("two generated keys are equal")
	}
}

// TestGenerateKeyFileConcurrent: processes starting together on one data
// directory (weftctl up, several services) must end up with the same key:
// every keyring returned opens what every other one sealed.
func TestGenerateKeyFileConcurrent(t *testing.T) {
	for range 20 {
		path := filepath.Join(t.TempDir(), "keys.txt")
		const n = 8
		rings := make(chan *Keyring, n)
		errs := make(chan error, n)
		for range n {
			go func() {
				k, err := GenerateKeyFile(path)
				rings <- k
				errs <- err
			}()
		}
		var all []*Keyring
		for range n {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
			all = append(all, <-rings)
		}
		s, _ := all[0].Seal([]byte("v"), nil)
		for i, k := range all {
			if _, err := k.Open(s, nil); err != nil {
				t.Fatalf("keyring %d holds another key than keyring 0: %v", i, err)
			}
		}
	}
}
