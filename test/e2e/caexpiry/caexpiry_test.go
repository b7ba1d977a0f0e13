// Package caexpiry_test checks a mesh's CA expiry end to end: a real
// ca-service creates a builtin root in real etcd, and the api-server's
// GET /meshes/{mesh}/ca and GUI overview report that root's NotAfter,
// reading the certificate only.
package caexpiry_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	apiapp "github.com/weftmesh/weft/api-server/app"
	caapp "github.com/weftmesh/weft/ca-service/app"
	"github.com/weftmesh/weft/pkg/ca"
	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/run"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/token"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

type env struct {
	ctx  context.Context
	base string
	st   *store.Store
}

func (e *env) do(t *testing.T, method, path, tok, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(e.ctx, method, e.base+path, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type meshCA struct {
	Mesh           string
	EnabledBackend string
	Backends       []struct {
		Name, Type, Error string
		Enabled           bool
		NotAfter          *time.Time
	}
}

func TestMeshCAExpiryFromARealBuiltinRoot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cli := etcdtest.Client(t, nil)
	keys, err := seal.New(seal.Key{ID: "k", Bytes: bytes.Repeat([]byte{5}, seal.KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	discard := slog.New(slog.DiscardHandler)
	cfg := apiapp.Default()
	cfg.GRPCAddress, cfg.HTTPAddress, cfg.AdminAddress = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Mode, cfg.Etcd.Client, cfg.Encryption.Keyring, cfg.Logger = "standalone", cli, keys, discard
	api, err := apiapp.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	caCfg := caapp.Default()
	caCfg.Address, caCfg.AdminAddress, caCfg.InstanceID = "127.0.0.1:0", "127.0.0.1:0", "ca-1"
	caCfg.Etcd.Client, caCfg.Encryption.Keyring, caCfg.Logger = cli, keys, discard
	caSvc, err := caapp.New(caCfg)
	if err != nil {
		t.Fatal(err)
	}
	grp := run.New(discard)
	grp.Add("api-server", api.Run)
	grp.Add("ca-service", caSvc.Run)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- grp.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	admin, err := api.IssueAdminToken(ctx, "admin", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{ctx: ctx, base: "http://" + api.HTTPAddr(), st: store.New(cli, store.WithKeyring(keys))}

	// secure: a builtin root ca-service creates (1 year) and a provided CA;
	// soon: a builtin root that expires in 10 days; plain: mTLS off.
	provCert, provKey, err := ca.GenerateRoot(ca.RootOptions{Validity: 90 * 24 * time.Hour, CommonName: "provided"})
	if err != nil {
		t.Fatal(err)
	}
	secure, _ := json.Marshal(map[string]any{"type": "Mesh", "mtls": map[string]any{"enabledBackend": "ca-1", "backends": []any{
		map[string]any{"name": "ca-1", "type": "builtin", "builtin": map[string]any{"caCert": map[string]any{"expiration": "8760h"}}},
		map[string]any{"name": "ext", "type": "provided", "provided": map[string]any{
			"cert": map[string]any{"inlineString": string(provCert)}, "key": map[string]any{"secret": "ext-key"}}},
	}}})
	// The provided key lives in a Secret of the mesh.
	keySecret, _ := json.Marshal(map[string]any{"type": "Secret", "data": provKey})
	for _, put := range [][2]string{{"/meshes/secure", `{"type":"Mesh"}`}, {"/meshes/secure/secrets/ext-key", string(keySecret)}, {"/meshes/secure", string(secure)}} {
		if code, b := e.do(t, "PUT", put[0], admin, put[1]); code != 201 && code != 200 {
			t.Fatalf("PUT %s: %d %s", put[0], code, b)
		}
	}
	for path, body := range map[string]string{
		"/meshes/soon":  `{"type":"Mesh","mtls":{"enabledBackend":"b","backends":[{"name":"b","type":"builtin","builtin":{"caCert":{"expiration":"240h"}}}]}}`,
		"/meshes/plain": `{"type":"Mesh"}`,
	} {
		if code, b := e.do(t, "PUT", path, admin, body); code != 201 {
			t.Fatalf("PUT %s: %d %s", path, code, b)
		}
	}

	// What ca-service stored, read directly: the answer must be this
	// certificate's NotAfter.
	rootNotAfter := func(mesh, backend string) (time.Time, error) {
		sec, err := e.st.Get(ctx, resource.SecretType, mesh, ca.BuiltinSecretName(backend))
		if err != nil {
			return time.Time{}, err
		}
		blk, _ := pem.Decode(sec.Spec.(*meshv1.Secret).GetData())
		if blk == nil {
			return time.Time{}, fmt.Errorf("no PEM in the root Secret")
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return time.Time{}, err
		}
		return c.NotAfter.UTC(), nil
	}
	var want time.Time
	eventually(t, time.Minute, func() error { want, err = rootNotAfter("secure", "ca-1"); return err })
	if d := time.Until(want); d < 364*24*time.Hour || d > 366*24*time.Hour {
		t.Fatalf("ca-service's root expires in %v, want ~1 year (caCert.expiration 8760h)", d)
	}
	var got meshCA
	eventually(t, 30*time.Second, func() error {
		code, body := e.do(t, "GET", "/meshes/secure/ca", admin, "")
		if code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		if strings.Contains(body, "PRIVATE KEY") || strings.Contains(body, "BEGIN") {
			t.Fatalf("PEM in the answer: %s", body)
		}
		got = meshCA{}
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			return err
		}
		if len(got.Backends) != 2 || got.Backends[0].NotAfter == nil {
			return fmt.Errorf("not yet: %s", body)
		}
		return nil
	})
	b0, b1 := got.Backends[0], got.Backends[1]
	if got.Mesh != "secure" || got.EnabledBackend != "ca-1" || b0.Name != "ca-1" || b0.Type != "builtin" || !b0.Enabled || !b0.NotAfter.Equal(want) {
		t.Errorf("builtin backend: %+v (mesh %q), want notAfter %v", b0, got.Mesh, want)
	}
	provParsed, _ := ca.RootNotAfter(provCert)
	if b1.Name != "ext" || b1.Type != "provided" || b1.Enabled || b1.NotAfter == nil || !b1.NotAfter.Equal(provParsed) {
		t.Errorf("provided backend: %+v, want notAfter %v", b1, provParsed)
	}

	// Same authorisation as reading the Mesh: a read-only user may, a
	// forged or missing token may not; an unknown mesh is 404.
	code, body := e.do(t, "POST", "/tokens/user", admin, `{"name":"viewer","validFor":"1h"}`)
	if code != 200 {
		t.Fatalf("user token: %d %s", code, body)
	}
	var ut struct{ Token string }
	_ = json.Unmarshal([]byte(body), &ut)
	claims := token.Claims{Kind: token.KindDataplane, Mesh: "secure", Services: []string{"web"}}
	claims.Subject = "web-1"
	dpTok, _, err := token.New(e.st).Issue(ctx, claims, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	forged := admin[:len(admin)-4] + strings.Map(func(r rune) rune {
		if r == 'A' {
			return 'B'
		}
		return 'A'
	}, admin[len(admin)-4:])
	for who, tok := range map[string]string{"admin": admin, "viewer": ut.Token, "dataplane": dpTok, "forged": forged, "none": ""} {
		meshCode, _ := e.do(t, "GET", "/meshes/secure", tok, "")
		caCode, caBody := e.do(t, "GET", "/meshes/secure/ca", tok, "")
		if caCode != meshCode {
			t.Errorf("%s: GET /meshes/secure/ca %d, GET /meshes/secure %d: %s", who, caCode, meshCode, caBody)
		}
		if (who == "forged" || who == "none") && caCode != 401 {
			t.Errorf("%s token: %d, want 401", who, caCode)
		}
		if who == "viewer" && caCode != 200 {
			t.Errorf("read-only user: %d, want 200", caCode)
		}
	}
	if code, body := e.do(t, "GET", "/meshes/nope/ca", admin, ""); code != 404 {
		t.Errorf("unknown mesh: %d %s", code, body)
	}
	if code, body := e.do(t, "GET", "/meshes/plain/ca", admin, ""); code != 200 || !strings.Contains(body, `"backends":[]`) {
		t.Errorf("mesh without mTLS: %d %s", code, body)
	}

	// The GUI overview: soon's root (10 days) is a problem and listed
	// first; secure's CAs follow.
	eventually(t, time.Minute, func() error {
		var o struct {
			Problems []struct{ Kind, Message string }
			CAs      []struct {
				Mesh, Name, State string
				NotAfter          *time.Time
			}
		}
		code, body := e.do(t, "GET", "/gui/api/overview", admin, "")
		if code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		if err := json.Unmarshal([]byte(body), &o); err != nil {
			return err
		}
		if len(o.CAs) != 3 || o.CAs[0].Mesh != "soon" || o.CAs[0].State != "expiring" || o.CAs[0].NotAfter == nil {
			return fmt.Errorf("CAs: %+v", o.CAs)
		}
		soon, err := rootNotAfter("soon", "b")
		if err != nil || !o.CAs[0].NotAfter.Equal(soon) {
			return fmt.Errorf("soon's CA %v, stored root %v %v", o.CAs[0].NotAfter, soon, err)
		}
		var kinds []string
		for _, p := range o.Problems {
			kinds = append(kinds, p.Kind+": "+p.Message)
		}
		if len(o.Problems) == 0 || o.Problems[0].Kind != "CA expiry" || !strings.Contains(o.Problems[0].Message, "mesh soon") {
			return fmt.Errorf("problems: %v", kinds)
		}
		if o.CAs[1].Mesh != "secure" || o.CAs[1].Name != "ext" || o.CAs[2].Name != "ca-1" || o.CAs[2].State != "ok" {
			return fmt.Errorf("CAs after the problem: %+v", o.CAs)
		}
		return nil
	})
}
