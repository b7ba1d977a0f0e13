package ca_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/ca"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

func TestCertificatePEMSkipsTheKey(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	certPEM, keyPEM, err := ca.GenerateRoot(ca.RootOptions{Validity: 48 * time.Hour, CommonName: "r", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	data := append(append([]byte{}, certPEM...), keyPEM...)
	got := ca.CertificatePEM(data)
	if bytes.Contains(got, []byte("PRIVATE KEY")) || !bytes.Contains(got, []byte("BEGIN CERTIFICATE")) {
		t.Fatalf("certificate part: %s", got)
	}
	na, err := ca.RootNotAfter(data)
	if err != nil || !na.Equal(now.Add(48*time.Hour)) {
		t.Fatalf("NotAfter %v %v, want %v", na, err, now.Add(48*time.Hour))
	}
	// A key block that is not even valid base64 is never decoded.
	junk := append(append([]byte{}, certPEM...), "-----BEGIN EC PRIVATE KEY-----\n!!!not base64!!!\n-----END EC PRIVATE KEY-----\n"...)
	if _, err := ca.RootNotAfter(junk); err != nil {
		t.Fatalf("with an undecodable key block: %v", err)
	}
	for _, bad := range []string{"", string(keyPEM), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", pemCertBeginOnly} {
		if _, err := ca.RootNotAfter([]byte(bad)); err == nil {
			t.Errorf("RootNotAfter(%.40q) succeeded", bad)
		}
	}
}

const pemCertBeginOnly = "-----BEGIN CERTIFICATE-----\nMIIB"

func TestMeshExpiryPerBackend(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	builtinCert, builtinKey, _ := ca.GenerateRoot(ca.RootOptions{Validity: 24 * time.Hour, CommonName: "b", Now: now})
	providedCert, _, _ := ca.GenerateRoot(ca.RootOptions{Validity: 72 * time.Hour, CommonName: "p", Now: now})
	errNotFound := errors.New("not found")
	secrets := map[string][]byte{
		ca.BuiltinSecretName("ca-1"): append(append([]byte{}, builtinCert...), builtinKey...),
		"provided-cert":              providedCert,
	}
	get := func(_ context.Context, mesh, name string) ([]byte, error) {
		if mesh != "m" {
			t.Errorf("secret read in mesh %q", mesh)
		}
		if b, ok := secrets[name]; ok {
			return b, nil
		}
		return nil, errNotFound
	}
	mesh := &meshv1.Mesh{Mtls: &meshv1.Mesh_Mtls{EnabledBackend: "ca-2", Backends: []*meshv1.CertificateAuthorityBackend{
		{Name: "ca-1", Type: ca.TypeBuiltin},
		{Name: "ca-2", Type: ca.TypeProvided, Provided: &meshv1.CertificateAuthorityBackend_ProvidedConfig{
			Cert: &meshv1.DataSource{Type: &meshv1.DataSource_Secret{Secret: "provided-cert"}}}},
		{Name: "ca-3", Type: ca.TypeBuiltin},
		{Name: "ca-4", Type: ca.TypeProvided, Provided: &meshv1.CertificateAuthorityBackend_ProvidedConfig{
			Cert: &meshv1.DataSource{Type: &meshv1.DataSource_File{File: "/etc/ca.pem"}}}},
		{Name: "ca-5", Type: ca.TypeProvided, Provided: &meshv1.CertificateAuthorityBackend_ProvidedConfig{
			Cert: &meshv1.DataSource{Type: &meshv1.DataSource_InlineString{InlineString: string(providedCert)}}}},
	}}}
	got := ca.MeshExpiry(context.Background(), get, func(err error) bool { return errors.Is(err, errNotFound) }, "m", mesh)
	if len(got) != 5 {
		t.Fatalf("%d backends: %+v", len(got), got)
	}
	want := []struct {
		name     string
		enabled  bool
		notAfter time.Time
		err      string
	}{
		{"ca-1", false, now.Add(24 * time.Hour), ""},
		{"ca-2", true, now.Add(72 * time.Hour), ""},
		{"ca-3", false, time.Time{}, "not created yet"},
		{"ca-4", false, time.Time{}, "read by ca-service only"},
		{"ca-5", false, now.Add(72 * time.Hour), ""},
	}
	for i, w := range want {
		g := got[i]
		if g.Name != w.name || g.Enabled != w.enabled {
			t.Errorf("backend %d: %+v, want %s enabled=%v", i, g, w.name, w.enabled)
		}
		if w.err != "" {
			if g.NotAfter != nil || !strings.Contains(g.Error, w.err) {
				t.Errorf("%s: %+v, want an error containing %q", w.name, g, w.err)
			}
			continue
		}
		if g.NotAfter == nil || !g.NotAfter.Equal(w.notAfter) || g.Error != "" {
			t.Errorf("%s: %+v, want notAfter %v", w.name, g, w.notAfter)
		}
	}
}
