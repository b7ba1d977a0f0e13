package app_test

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/weftmesh/weft/pkg/config"
	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/token"

	"github.com/weftmesh/weft/zone-sync/app"
	"github.com/weftmesh/weft/zone-sync/apptest"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*app.Config)
		want string
	}{
		{"global needs TLS", func(c *app.Config) {}, "tls-cert-file and tls-key-file are required"},
		{"bad mode", func(c *app.Config) { c.Mode = "both" }, "mode"},
		{"zone needs a name", func(c *app.Config) { c.Mode, c.GlobalAddress, c.Token = "zone", "g:5685", "t" }, "zone:"},
		{"zone name is a label", func(c *app.Config) { c.Mode, c.Zone, c.GlobalAddress, c.Token = "zone", "a.b", "g:5685", "t" }, "not a valid zone name"},
		{"zone needs global", func(c *app.Config) { c.Mode, c.Zone, c.Token = "zone", "z1", "t" }, "global-address"},
		{"zone needs a token", func(c *app.Config) { c.Mode, c.Zone, c.GlobalAddress = "zone", "z1", "g:5685" }, "token-file"},
		{"cert without key", func(c *app.Config) { c.TLSCertFile = "x" }, "go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := app.Default()
			tc.mut(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	ok := app.Default()
	ok.InsecureDev = true
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestFlagsAndEnvironment(t *testing.T) {
	c := app.Default()
	fs := flag.NewFlagSet("zone-sync", flag.ContinueOnError)
	c.RegisterFlags(fs)
	env := map[string]string{"WEFT_ZONE_SYNC_ZONE": "z1", "WEFT_ZONE_SYNC_MODE": "global"}
	err := config.Parse(fs, app.Service, []string{"--mode=zone", "--global-address=g:5685", "--token-file=/t", "--zone-lease-ttl=3s"},
		func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != "zone" || c.Zone != "z1" || c.GlobalAddress != "g:5685" || c.LeaseTTL != 3*time.Second {
		t.Fatalf("parsed %+v", c)
	}
}

// --insecure-dev links a zone over plaintext gRPC; --tls-cert-file,
// --tls-key-file and --tls-ca-file over TLS. The zone reads its token from
// --token-file.
func TestInsecureDevWithTokenFile(t *testing.T) { linkWithFiles(t, false) }

func TestTLSFiles(t *testing.T) { linkWithFiles(t, true) }

func linkWithFiles(t *testing.T, useTLS bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func(cfg app.Config) (*app.App, *store.Store) {
		cli := etcdtest.Client(t, nil)
		kr, _ := seal.New(seal.Key{ID: "k", Bytes: make([]byte, seal.KeySize)})
		cfg.Etcd.Client, cfg.Encryption.Keyring, cfg.Logger, cfg.AdminAddress, cfg.InsecureDev = cli, kr, log, "127.0.0.1:0", !useTLS
		a, err := app.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
		return a, store.New(cli, store.WithKeyring(kr))
	}
	dir := t.TempDir()
	gcfg := app.Default()
	gcfg.Address = "127.0.0.1:0"
	if useTLS {
		cert, key := apptest.SelfSignedPEM(t)
		gcfg.TLSCertFile, gcfg.TLSKeyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		if err := errors.Join(os.WriteFile(gcfg.TLSCertFile, cert, 0o600), os.WriteFile(gcfg.TLSKeyFile, key, 0o600)); err != nil {
			t.Fatal(err)
		}
	}
	g, gst := start(gcfg)
	if _, err := gst.Create(ctx, resource.New(resource.ZoneType, "", "z1")); err != nil {
		t.Fatal(err)
	}
	if _, err := gst.Create(ctx, resource.New(resource.MeshType, "", "default")); err != nil {
		t.Fatal(err)
	}
	tok, _, err := token.New(gst).Issue(ctx, token.Claims{Kind: token.KindZone, Zone: "z1", RegisteredClaims: jwt.RegisteredClaims{Subject: "z1"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "zone-token")
	if err := os.WriteFile(file, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	zcfg := app.Default()
	zcfg.Mode, zcfg.Zone, zcfg.GlobalAddress, zcfg.TokenFile = app.ModeZone, "z1", g.Addr(), file
	if useTLS {
		zcfg.TLSCAFile = gcfg.TLSCertFile
	}
	z, zst := start(zcfg)
	if z.Addr() != "" {
		t.Errorf("a zone listens on %q", z.Addr())
	}
	apptest.Eventually(t, wait, func() error {
		if _, err := zst.Get(ctx, resource.MeshType, "", "default"); err != nil {
			return errors.Join(err, z.LastError())
		}
		return nil
	})
}
