package config

import (
	"bytes"
	"context"
	"encoding/base64"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/seal"
)

func TestEnvName(t *testing.T) {
	for _, c := range [][3]string{
		{"api-server", "etcd-endpoints", "WEFT_API_SERVER_ETCD_ENDPOINTS"},
		{"xds-server", "log.level", "WEFT_XDS_SERVER_LOG_LEVEL"},
		{"dns", "address", "WEFT_DNS_ADDRESS"},
	} {
		if got := EnvName(c[0], c[1]); got != c[2] {
			t.Errorf("EnvName(%q, %q) = %q, want %q", c[0], c[1], got, c[2])
		}
	}
}

func newFlags() (*flag.FlagSet, *string, *int, *StringList) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addr := fs.String("address", ":1", "")
	n := fs.Int("count", 3, "")
	list := &StringList{"a"}
	fs.Var(list, "list", "")
	return fs, addr, n, list
}

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// TestParsePrecedence: a flag on the command line wins over the
// environment, the environment over the default.
func TestParsePrecedence(t *testing.T) {
	fs, addr, n, list := newFlags()
	e := env(map[string]string{"WEFT_SVC_ADDRESS": ":2", "WEFT_SVC_COUNT": "7", "WEFT_SVC_LIST": "x, y,,z"})
	if err := Parse(fs, "svc", []string{"--address", ":9"}, e); err != nil {
		t.Fatal(err)
	}
	if *addr != ":9" || *n != 7 || strings.Join(*list, ",") != "x,y,z" {
		t.Fatalf("address %q count %d list %q", *addr, *n, *list)
	}
	// No environment: defaults.
	fs, addr, n, list = newFlags()
	if err := Parse(fs, "svc", nil, env(nil)); err != nil {
		t.Fatal(err)
	}
	if *addr != ":1" || *n != 3 || list.String() != "a" {
		t.Fatalf("defaults: %q %d %q", *addr, *n, *list)
	}
	// Another service's variables do not apply.
	fs, addr, _, _ = newFlags()
	if err := Parse(fs, "svc", nil, env(map[string]string{"WEFT_OTHER_ADDRESS": ":5"})); err != nil || *addr != ":1" {
		t.Fatalf("other service's env applied: %q %v", *addr, err)
	}
}

// TestParseErrors: a bad environment value is an error naming the variable;
// bad flags are errors too.
func TestParseErrors(t *testing.T) {
	fs, _, _, _ := newFlags()
	err := Parse(fs, "svc", nil, env(map[string]string{"WEFT_SVC_COUNT": "many"}))
	if err == nil || !strings.Contains(err.Error(), "WEFT_SVC_COUNT") {
		t.Fatalf("bad env value: %v", err)
	}
	fs, _, _, _ = newFlags()
	if err := Parse(fs, "svc", []string{"--nope"}, env(nil)); err == nil {
		t.Fatal("unknown flag accepted")
	}
	fs, _, _, _ = newFlags()
	if err := Parse(fs, "svc", []string{"--count", "x"}, env(nil)); err == nil {
		t.Fatal("bad flag value accepted")
	}
}

func TestStringList(t *testing.T) {
	var l StringList
	if err := l.Set(" a ,b,, c "); err != nil || l.String() != "a,b,c" {
		t.Fatalf("%q %v", l, err)
	}
	// Set replaces: an override does not append to the default.
	if err := l.Set("z"); err != nil || l.String() != "z" {
		t.Fatalf("%q", l)
	}
	if err := l.Set(""); err != nil || len(l) != 0 {
		t.Fatalf("empty: %q", l)
	}
}

func TestEtcdFlagsAndValidate(t *testing.T) {
	var e Etcd
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	e.RegisterFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if e.Endpoints.String() != "127.0.0.1:2379" {
		t.Fatalf("default endpoints %q", e.Endpoints)
	}
	for _, name := range []string{"etcd-endpoints", "etcd-ca-file", "etcd-cert-file", "etcd-key-file"} {
		if fs.Lookup(name) == nil {
			t.Errorf("flag --%s not registered", name)
		}
	}
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		e    Etcd
		want string
	}{
		"no endpoints":  {Etcd{}, "etcd-endpoints"},
		"cert, no key":  {Etcd{Endpoints: StringList{"x:1"}, CertFile: "c"}, "go together"},
		"key, no cert":  {Etcd{Endpoints: StringList{"x:1"}, KeyFile: "k"}, "go together"},
		"both, fine":    {Etcd{Endpoints: StringList{"x:1"}, CertFile: "c", KeyFile: "k"}, ""},
		"client, fine":  {Etcd{Client: etcdtest.Client(t, nil)}, ""},
		"empty endless": {Etcd{Endpoints: StringList{}}, "at least one"},
	} {
		err := c.e.Validate()
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}

// TestEtcdConnect dials a real etcd from its endpoints, and reports file
// errors by flag name.
func TestEtcdConnect(t *testing.T) {
	given := etcdtest.Client(t, nil)
	// A configured client is returned as is, not owned by the caller.
	if c, owned, err := (&Etcd{Client: given}).Connect(); err != nil || c != given || owned {
		t.Fatalf("given client: %v owned=%v", err, owned)
	}
	e := &Etcd{Endpoints: StringList(given.Endpoints())}
	cli, owned, err := e.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if !owned {
		t.Error("a dialled client must be owned by the caller")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "/config-test", "v"); err != nil {
		t.Fatal(err)
	}
	if r, err := given.Get(ctx, "/config-test"); err != nil || len(r.Kvs) != 1 {
		t.Fatalf("written through the dialled client, not seen: %v", err)
	}

	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		e    Etcd
		want string
	}{
		"missing CA":     {Etcd{Endpoints: StringList{"127.0.0.1:1"}, CAFile: filepath.Join(dir, "nope")}, "etcd-ca-file"},
		"CA not PEM":     {Etcd{Endpoints: StringList{"127.0.0.1:1"}, CAFile: garbage}, "no certificates"},
		"bad client key": {Etcd{Endpoints: StringList{"127.0.0.1:1"}, CertFile: garbage, KeyFile: garbage}, "etcd client certificate"},
	} {
		if _, _, err := c.e.Connect(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}

func TestEncryption(t *testing.T) {
	line := "k1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, seal.KeySize))
	var e Encryption
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	e.RegisterFlags(fs)
	path := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(path, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"--encryption-key-file", path}); err != nil {
		t.Fatal(err)
	}
	k, err := e.Load()
	if err != nil || k.ActiveKeyID() != "k1" {
		t.Fatalf("from file: %v", err)
	}
	// A given keyring wins.
	if got, err := (&Encryption{Keyring: k, KeyFile: "/nonexistent"}).Load(); err != nil || got != k {
		t.Fatalf("given keyring: %v", err)
	}
	// Without a file, the environment; without both, an error naming it.
	t.Setenv(EncryptionKeysEnv, line)
	if _, err := (&Encryption{}).Load(); err != nil {
		t.Fatalf("from env: %v", err)
	}
	t.Setenv(EncryptionKeysEnv, "")
	if _, err := (&Encryption{}).Load(); err == nil || !strings.Contains(err.Error(), EncryptionKeysEnv) {
		t.Fatalf("nothing configured: %v", err)
	}
}
