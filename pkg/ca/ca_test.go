package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/ca"
	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// selfSigned makes a certificate with the given shape.
func selfSigned(t *testing.T, isCA bool, notBefore, notAfter time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: ca.RandomSerial(), Subject: pkix.Name{CommonName: "x"},
		NotBefore: notBefore, NotAfter: notAfter, BasicConstraintsValid: true, IsCA: isCA,
		KeyUsage: x509.KeyUsageDigitalSignature}
	if isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(k)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}

func provided(cert, key *meshv1.DataSource) *resource.Resource {
	r := resource.New(resource.MeshType, "", "default")
	r.Spec = &meshv1.Mesh{Mtls: &meshv1.Mesh_Mtls{EnabledBackend: "p", Backends: []*meshv1.CertificateAuthorityBackend{
		{Name: "b", Type: "builtin"},
		{Name: "p", Type: "provided", Provided: &meshv1.CertificateAuthorityBackend_ProvidedConfig{Cert: cert, Key: key}},
	}}}
	return r
}

func inline(b []byte) *meshv1.DataSource {
	return &meshv1.DataSource{Type: &meshv1.DataSource_Inline{Inline: b}}
}

func TestValidateMeshCAEachBadInput(t *testing.T) {
	now := time.Now()
	good, goodKey := selfSigned(t, true, now.Add(-time.Hour), now.Add(time.Hour))
	_, otherKey := selfSigned(t, true, now.Add(-time.Hour), now.Add(time.Hour))
	leaf, leafKey := selfSigned(t, false, now.Add(-time.Hour), now.Add(time.Hour))
	expired, expiredKey := selfSigned(t, true, now.Add(-2*time.Hour), now.Add(-time.Hour))
	future, futureKey := selfSigned(t, true, now.Add(time.Hour), now.Add(2*time.Hour))
	secrets := map[string][]byte{"key": goodKey}
	get := func(_ context.Context, mesh, name string) ([]byte, error) {
		if b, ok := secrets[name]; ok && mesh == "default" {
			return b, nil
		}
		return nil, errors.New("not found")
	}
	for _, tc := range []struct {
		name      string
		cert, key *meshv1.DataSource
		field     string
		msg       string
	}{
		{"not a CA", inline(leaf), inline(leafKey), "mtls.backends[1].provided.cert", "not a CA"},
		{"key mismatch", inline(good), inline(otherKey), "mtls.backends[1].provided.key", "does not match"},
		{"expired", inline(expired), inline(expiredKey), "mtls.backends[1].provided.cert", "expired"},
		{"not yet valid", inline(future), inline(futureKey), "mtls.backends[1].provided.cert", "not valid yet"},
		{"garbage cert PEM", inline([]byte("hello")), inline(goodKey), "mtls.backends[1].provided.cert", "no PEM CERTIFICATE"},
		{"corrupt cert DER", inline(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}})), inline(goodKey), "mtls.backends[1].provided.cert", "does not parse"},
		{"garbage key PEM", inline(good), inline([]byte("junk")), "mtls.backends[1].provided.key", "no PEM private key"},
		{"missing secret", inline(good), &meshv1.DataSource{Type: &meshv1.DataSource_Secret{Secret: "nope"}}, "mtls.backends[1].provided.key", `secret "nope"`},
	} {
		err := ca.ValidateMeshCA(context.Background(), get, provided(tc.cert, tc.key))
		var ve *resource.ValidationError
		if !errors.As(err, &ve) || len(ve.Causes) != 1 {
			t.Errorf("%s: got %v, want one validation cause", tc.name, err)
			continue
		}
		if c := ve.Causes[0]; c.Field != tc.field || !strings.Contains(c.Message, tc.msg) {
			t.Errorf("%s: got %s: %s; want %s: ...%s...", tc.name, c.Field, c.Message, tc.field, tc.msg)
		}
	}
	// Valid: from a Secret and inline; file sources are ca-service's.
	ok := []*resource.Resource{
		provided(inline(good), &meshv1.DataSource{Type: &meshv1.DataSource_Secret{Secret: "key"}}),
		provided(&meshv1.DataSource{Type: &meshv1.DataSource_File{File: "/etc/ca.pem"}}, inline(goodKey)),
	}
	for i, r := range ok {
		if err := ca.ValidateMeshCA(context.Background(), get, r); err != nil {
			t.Errorf("valid mesh %d rejected: %v", i, err)
		}
	}
}

func TestGenerateRoot(t *testing.T) {
	for _, o := range []ca.RootOptions{{}, {KeyType: "rsa"}, {KeyType: "rsa", RSABits: 4096, Validity: time.Hour}} {
		c, k, err := ca.GenerateRoot(o)
		if err != nil {
			t.Fatal(err)
		}
		a, err := ca.Parse(c, k, time.Now())
		if err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		want := ca.DefaultRootValidity
		if o.Validity != 0 {
			want = o.Validity
		}
		if d := a.Cert.NotAfter.Sub(a.Cert.NotBefore); d != want+time.Minute {
			t.Errorf("%+v: validity %v", o, d)
		}
		if o.KeyType == "rsa" {
			bits := o.RSABits
			if bits == 0 {
				bits = 2048
			}
			if got := a.Cert.PublicKey.(interface{ Size() int }).Size() * 8; got != bits {
				t.Errorf("rsa bits %d, want %d", got, bits)
			}
		}
	}
	if _, _, err := ca.GenerateRoot(ca.RootOptions{KeyType: "dsa"}); err == nil {
		t.Error("unknown key type accepted")
	}
}

func FuzzParse(f *testing.F) {
	c, k, _ := ca.GenerateRoot(ca.RootOptions{})
	f.Add(c, k)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), []byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"))
	f.Add(append(c, c...), append(k, k...))
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		a, err := ca.Parse(certPEM, keyPEM, time.Now())
		if err == nil && (a.Cert == nil || a.Key == nil) {
			t.Fatal("nil authority without error")
		}
	})
}
