package app_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/weftmesh/weft/api-server/app"
	"github.com/weftmesh/weft/pkg/ca"
	"github.com/weftmesh/weft/pkg/etcdembed"
	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	apiv1 "github.com/weftmesh/weft/proto/gen/go/weft/api/v1"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

func caPair(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	c, k, err := ca.GenerateRoot(ca.RootOptions{CommonName: "corp", Validity: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func jsonString(s string) string { return fmt.Sprintf("%q", s) }

// TestInlineCAKeyRefused: a provided CA key given inline in a Mesh is
// refused with a field-path error naming the Secret alternative, nothing is
// stored; an inline certificate with a Secret key is accepted.
func TestInlineCAKeyRefused(t *testing.T) {
	c := start(t, "standalone", "")
	certPEM, keyPEM := caPair(t)
	c.must("PUT", "/meshes/default", `{"type":"Mesh"}`, 201)
	for field, key := range map[string]string{
		"inlineString": `{"inlineString":` + jsonString(string(keyPEM)) + `}`,
		"inline":       `{"inline":"` + b64(keyPEM) + `"}`,
	} {
		mesh := `{"type":"Mesh","mtls":{"enabledBackend":"ca-1","backends":[{"name":"ca-1","type":"provided","provided":{"cert":{"inlineString":` +
			jsonString(string(certPEM)) + `},"key":` + key + `}}]}}`
		r := c.must("PUT", "/meshes/default", mesh, 400)
		msg := causes(r)["mtls.backends[0].provided.key."+field]
		if !strings.Contains(msg, "Secret") || !strings.Contains(msg, "provided.key.secret") {
			t.Fatalf("%s: no cause naming the Secret alternative at mtls.backends[0].provided.key.%s: %s", field, field, r.raw)
		}
		if got := c.must("GET", "/meshes/default", "", 200); strings.Contains(got.raw, "ca-1") || strings.Contains(got.raw, "PRIVATE KEY") {
			t.Fatalf("%s: refused mesh was stored: %s", field, got.raw)
		}
	}
	c.must("PUT", "/meshes/default/secrets/corp-key", `{"type":"Secret","data":"`+b64(keyPEM)+`"}`, 201)
	ok := `{"type":"Mesh","mtls":{"enabledBackend":"ca-1","backends":[{"name":"ca-1","type":"provided","provided":{"cert":{"inlineString":` +
		jsonString(string(certPEM)) + `},"key":{"secret":"corp-key"}}}]}}`
	c.must("PUT", "/meshes/default", ok, 200)
}

// TestStoredInlineKeyNeverReturned: a Mesh stored by an older version with
// an inline key is readable, but no read (GET, list, gRPC get, watch)
// returns the key.
func TestStoredInlineKeyNeverReturned(t *testing.T) {
	c := start(t, "standalone", "")
	certPEM, keyPEM := caPair(t)
	m := resource.New(resource.MeshType, "", "legacy")
	m.Spec = &meshv1.Mesh{Mtls: &meshv1.Mesh_Mtls{EnabledBackend: "ca-1", Backends: []*meshv1.CertificateAuthorityBackend{{
		Name: "ca-1", Type: "provided", Provided: &meshv1.CertificateAuthorityBackend_ProvidedConfig{
			Cert: &meshv1.DataSource{Type: &meshv1.DataSource_InlineString{InlineString: string(certPEM)}},
			Key:  &meshv1.DataSource{Type: &meshv1.DataSource_InlineString{InlineString: string(keyPEM)}},
		}}}}}
	if _, err := c.st.Create(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	m2 := resource.New(resource.MeshType, "", "legacy-bytes")
	m2.Spec = &meshv1.Mesh{Mtls: &meshv1.Mesh_Mtls{Backends: []*meshv1.CertificateAuthorityBackend{{
		Name: "ca-1", Type: "provided", Provided: &meshv1.CertificateAuthorityBackend_ProvidedConfig{
			Cert: &meshv1.DataSource{Type: &meshv1.DataSource_Inline{Inline: certPEM}},
			Key:  &meshv1.DataSource{Type: &meshv1.DataSource_Inline{Inline: keyPEM}},
		}}}}}
	if _, err := c.st.Create(context.Background(), m2); err != nil {
		t.Fatal(err)
	}
	leaks := func(what, body string) {
		t.Helper()
		if strings.Contains(body, "PRIVATE KEY") || strings.Contains(body, b64(keyPEM)[:40]) {
			t.Fatalf("%s returns the key: %s", what, body)
		}
	}
	r := c.must("GET", "/meshes/legacy", "", 200)
	leaks("GET /meshes/legacy", r.raw)
	if !strings.Contains(r.raw, "CERTIFICATE") || !strings.Contains(r.raw, resource.Redacted) {
		t.Fatalf("certificate should stay and the key show as redacted: %s", r.raw)
	}
	leaks("GET /meshes/legacy-bytes", c.must("GET", "/meshes/legacy-bytes", "", 200).raw)
	leaks("GET /meshes", c.must("GET", "/meshes", "", 200).raw)

	conn, err := grpc.NewClient(c.app.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+c.admin), 30*time.Second)
	defer cancel()
	rc := apiv1.NewResourceServiceClient(conn)
	got, err := rc.Get(ctx, &apiv1.GetRequest{Collection: "meshes", Name: "legacy"})
	if err != nil {
		t.Fatal(err)
	}
	leaks("gRPC Get", got.String())
	w, err := rc.Watch(ctx, &apiv1.WatchRequest{Collection: "meshes"})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := w.Recv()
	if err != nil || ev.Kind != apiv1.WatchEvent_SYNC || len(ev.Resources) != 2 {
		t.Fatalf("sync: %v %v", ev, err)
	}
	leaks("watch SYNC", ev.String())
	// A change to the stored mesh (by an older writer) comes as a PUT event.
	m.Meta.Labels = map[string]string{"touched": "yes"}
	if _, err := c.st.Update(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	ev, err = w.Recv()
	if err != nil || ev.Kind != apiv1.WatchEvent_PUT {
		t.Fatalf("put: %v %v", ev, err)
	}
	leaks("watch PUT", ev.String())
	// The stored value itself is unchanged (ca-service still reads it).
	stored, err := c.st.Get(context.Background(), resource.MeshType, "", "legacy")
	if err != nil || !strings.Contains(stored.Spec.(*meshv1.Mesh).GetMtls().GetBackends()[0].GetProvided().GetKey().GetInlineString(), "PRIVATE KEY") {
		t.Fatalf("stored mesh changed by a read: %v", err)
	}
}

// TestDeleteSecretUsedByProvidedCA: deleting a Secret that the enabled
// provided CA reads is 409 naming the mesh; once the mesh stops using it,
// the delete goes through.
func TestDeleteSecretUsedByProvidedCA(t *testing.T) {
	c := start(t, "standalone", "")
	certPEM, keyPEM := caPair(t)
	c.must("PUT", "/meshes/default", `{"type":"Mesh"}`, 201)
	c.must("PUT", "/meshes/default/secrets/corp-key", `{"type":"Secret","data":"`+b64(keyPEM)+`"}`, 201)
	c.must("PUT", "/meshes/default/secrets/corp-cert", `{"type":"Secret","data":"`+b64(certPEM)+`"}`, 201)
	c.must("PUT", "/meshes/default", `{"type":"Mesh","mtls":{"enabledBackend":"ca-1","backends":[{"name":"ca-1","type":"provided","provided":{"cert":{"secret":"corp-cert"},"key":{"secret":"corp-key"}}},{"name":"b","type":"builtin"}]}}`, 200)
	for _, name := range []string{"corp-key", "corp-cert"} {
		r := c.must("DELETE", "/meshes/default/secrets/"+name, "", 409)
		if !strings.Contains(r.raw, `mesh \"default\"`) || r.body["title"] != "Conflict" {
			t.Fatalf("409 should name the mesh: %s", r.raw)
		}
		c.must("GET", "/meshes/default/secrets/"+name, "", 200)
	}
	// Another backend enabled: the secrets are no longer in use.
	c.must("PUT", "/meshes/default", `{"type":"Mesh","mtls":{"enabledBackend":"b","backends":[{"name":"ca-1","type":"provided","provided":{"cert":{"secret":"corp-cert"},"key":{"secret":"corp-key"}}},{"name":"b","type":"builtin"}]}}`, 200)
	c.must("DELETE", "/meshes/default/secrets/corp-key", "", 200)
}

// TestUndecodableValueDegradesOneRecord: a value sealed with a removed key
// and a corrupt one, put directly in etcd, are skipped by lists and watches
// (which stay available), a GET of one is a clean error, and an admin can
// delete them through the API, on a zone too for global-owned types.
func TestUndecodableValueDegradesOneRecord(t *testing.T) {
	for _, mode := range []string{"standalone", "zone"} {
		t.Run(mode, func(t *testing.T) {
			zone := ""
			if mode == "zone" {
				zone = "z1"
			}
			c := start(t, mode, zone)
			ctx := context.Background()
			for _, n := range []string{"default", "other"} {
				m := resource.New(resource.MeshType, "", n)
				m.Spec = &meshv1.Mesh{}
				if _, err := c.st.Create(ctx, m); err != nil {
					t.Fatal(err)
				}
			}
			for _, n := range []string{"good", "old-key"} {
				sec := resource.New(resource.SecretType, "default", n)
				sec.Spec = &meshv1.Secret{Data: []byte("s3cr3t-" + n)}
				if _, err := c.st.Create(ctx, sec); err != nil {
					t.Fatal(err)
				}
			}
			// Re-seal "old-key" with a key the server does not have (an
			// unconditional update replaces a value it cannot read), and
			// corrupt the Mesh "other".
			other, _ := seal.New(seal.Key{ID: "gone", Bytes: bytes.Repeat([]byte{9}, 32)})
			sec := resource.New(resource.SecretType, "default", "old-key")
			sec.Spec = &meshv1.Secret{Data: []byte("s3cr3t-old-key")}
			if _, err := store.New(c.st.Client(), store.WithKeyring(other)).Update(ctx, sec, store.WithoutMeshCheck()); err != nil {
				t.Fatal(err)
			}
			raw := c.st.Client()
			if _, err := raw.Put(ctx, c.st.Key(resource.MeshType, "", "other"), "\xff\xfe not a protobuf"); err != nil {
				t.Fatal(err)
			}

			r := c.must("GET", "/meshes/default/secrets", "", 200)
			if items := r.body["items"].([]any); len(items) != 1 || !strings.Contains(r.raw, `"good"`) {
				t.Fatalf("list should hold the one good secret: %s", r.raw)
			}
			r = c.must("GET", "/meshes", "", 200)
			if items := r.body["items"].([]any); len(items) != 1 {
				t.Fatalf("list should hold the one good mesh: %s", r.raw)
			}
			r = c.must("GET", "/meshes/default/secrets/old-key", "", 500)
			if !strings.Contains(r.raw, "cannot be decoded") || strings.Contains(r.raw, "s3cr3t") {
				t.Fatalf("GET of an undecodable value: %s", r.raw)
			}
			// The watch snapshot skips them too.
			conn, err := grpc.NewClient(c.app.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			wctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.admin), 30*time.Second)
			defer cancel()
			w, err := apiv1.NewResourceServiceClient(conn).Watch(wctx, &apiv1.WatchRequest{Collection: "secrets", Mesh: "default"})
			if err != nil {
				t.Fatal(err)
			}
			ev, err := w.Recv()
			if err != nil || ev.Kind != apiv1.WatchEvent_SYNC || len(ev.Resources) != 1 || ev.Resources[0].Meta.Name != "good" {
				t.Fatalf("watch snapshot: %v %v", ev, err)
			}
			// Repair through the API: delete both (on a zone, Meshes are
			// global-owned; a broken synced copy can still be removed).
			c.must("DELETE", "/meshes/default/secrets/old-key", "", 200)
			c.must("DELETE", "/meshes/other", "", 200)
			ev, err = w.Recv()
			if err != nil || ev.Kind != apiv1.WatchEvent_DELETE || ev.Resource.Meta.Name != "old-key" {
				t.Fatalf("watch delete: %v %v", ev, err)
			}
			if mode == "zone" {
				// A readable global-owned Mesh still cannot be deleted on a zone.
				c.must("DELETE", "/meshes/default", "", 405)
			}
		})
	}
}

// TestEtcdDownAnswers503: with etcd stopped, REST reads and writes answer
// 503 with Retry-After within the store deadline (not a hang, not a bare
// 500), and say whether a write may have been applied.
func TestEtcdDownAnswers503(t *testing.T) {
	sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
	defer scancel()
	srv, err := etcdembed.Start(sctx, etcdembed.Config{Dir: t.TempDir(), AutoCompactionRetention: "0"})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			srv.Close()
		}
	})
	cli := etcdtest.Client(t, srv)
	keys, _ := seal.New(seal.Key{ID: "k", Bytes: bytes.Repeat([]byte{3}, 32)})
	cfg := app.Default()
	cfg.GRPCAddress, cfg.HTTPAddress, cfg.AdminAddress = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Etcd.Client = cli
	cfg.Encryption.Keyring = keys
	cfg.Logging.Level = "error"
	cfg.StoreTimeout = time.Second
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	tok, err := a.IssueAdminToken(ctx, "admin", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := &cp{t: t, app: a, base: "http://" + a.HTTPAddr(), admin: tok}
	c.must("PUT", "/meshes/default", `{"type":"Mesh"}`, 201)
	c.must("GET", "/meshes", "", 200) // the token's key is now cached

	srv.Close()
	stopped = true
	for _, tc := range []struct{ method, path, body, says string }{
		{"GET", "/meshes", "", "not applied"},
		{"GET", "/meshes/default", "", "not applied"},
		{"PUT", "/meshes/default/dataplanes/web-1", dp, ""},
		{"PUT", "/meshes/other", `{"type":"Mesh"}`, ""},
		{"DELETE", "/meshes/default", "", ""},
	} {
		start := time.Now()
		req, _ := http.NewRequest(tc.method, c.base+tc.path, strings.NewReader(tc.body))
		req.Header.Set("Authorization", "Bearer "+tok)
		hc := &http.Client{Timeout: 30 * time.Second}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: no answer: %v", tc.method, tc.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("%s %s: %d Retry-After=%q: %s", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
		if strings.Contains(string(body), "etcd") || strings.Contains(string(body), "context") {
			t.Fatalf("%s %s leaks internals: %s", tc.method, tc.path, body)
		}
		if tc.method != "GET" && !strings.Contains(string(body), "applied") {
			t.Fatalf("%s %s does not say whether it was applied: %s", tc.method, tc.path, body)
		}
		if took > 15*time.Second {
			t.Fatalf("%s %s took %v", tc.method, tc.path, took)
		}
		t.Logf("%s %s: %d in %v: %s", tc.method, tc.path, resp.StatusCode, took.Round(time.Millisecond), bytes.TrimSpace(body))
	}
}

// TestChunkedBodyOverLimit: a chunked body over the limit is 413 like a
// sized one.
func TestChunkedBodyOverLimit(t *testing.T) {
	c := start(t, "standalone", "")
	big := `{"type":"Mesh","labels":{"pad":"` + strings.Repeat("x", 2<<20) + `"}}`
	for _, chunked := range []bool{false, true} {
		var body io.Reader = strings.NewReader(big)
		if chunked {
			body = io.MultiReader(strings.NewReader(big)) // unknown length: sent chunked
		}
		req, _ := http.NewRequest("PUT", c.base+"/meshes/big", body)
		req.Header.Set("Authorization", "Bearer "+c.admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("chunked=%v: %d %s", chunked, resp.StatusCode, raw)
		}
	}
	// A small chunked body still works.
	req, _ := http.NewRequest("PUT", c.base+"/meshes/small", io.MultiReader(strings.NewReader(`{"type":"Mesh"}`)))
	req.Header.Set("Authorization", "Bearer "+c.admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("small chunked PUT: %d", resp.StatusCode)
	}
}
