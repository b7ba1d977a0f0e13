package signer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"slices"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/ca"
)

func authority(t testing.TB, keyType string) *ca.Authority {
	c, k, err := ca.GenerateRoot(ca.RootOptions{KeyType: keyType, CommonName: "root"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := ca.Parse(c, k, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestSignMatchesX509(t *testing.T) {
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	for _, caType := range []string{"ecdsa-p256", "rsa"} {
		a := authority(t, caType)
		pool := x509.NewCertPool()
		pool.AddCert(a.Cert)
		for _, k := range []crypto.Signer{ecKey, rsaKey, edKey} {
			spki, _ := x509.MarshalPKIXPublicKey(k.Public())
			pub, err := ParsePublicKey(nil, spki)
			if err != nil {
				t.Fatal(err)
			}
			ids := []string{"spiffe://m/web", "spiffe://m/api"}
			leaf, err := Sign(a, Request{SPIFFEIDs: ids, PublicKey: pub, Validity: time.Hour, Now: now})
			if err != nil {
				t.Fatalf("%s/%T: %v", caType, k, err)
			}
			fast, err := x509.ParseCertificate(leaf.DER)
			if err != nil {
				t.Fatalf("%s/%T: parse: %v", caType, k, err)
			}
			if _, err := fast.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: now}); err != nil {
				t.Fatalf("%s/%T: verify: %v", caType, k, err)
			}
			slowDER, err := signWithX509(a, k.Public(), caType != "" && isRSA(k), []string{"spiffe://m/api", "spiffe://m/web"}, leaf.NotBefore, leaf.NotAfter)
			if err != nil {
				t.Fatal(err)
			}
			slow, _ := x509.ParseCertificate(slowDER)
			// Same certificate but for serial and signature.
			if fast.KeyUsage != slow.KeyUsage || !slices.Equal(fast.ExtKeyUsage, slow.ExtKeyUsage) ||
				fast.IsCA || !fast.BasicConstraintsValid || !fast.NotBefore.Equal(slow.NotBefore) || !fast.NotAfter.Equal(slow.NotAfter) ||
				fast.SignatureAlgorithm != slow.SignatureAlgorithm || string(fast.AuthorityKeyId) != string(slow.AuthorityKeyId) ||
				string(fast.RawIssuer) != string(slow.RawIssuer) || string(fast.RawSubject) != string(slow.RawSubject) ||
				len(fast.Extensions) != len(slow.Extensions) {
				t.Errorf("%s/%T: fast and x509 leaves differ:\nfast %+v\nslow %+v", caType, k, fast, slow)
			}
			for i := range fast.Extensions {
				fe, se := fast.Extensions[i], slow.Extensions[i]
				if !fe.Id.Equal(se.Id) || fe.Critical != se.Critical || string(fe.Value) != string(se.Value) {
					t.Errorf("%s/%T: extension %v differs: %x vs %x (critical %t/%t)", caType, k, fe.Id, fe.Value, se.Value, fe.Critical, se.Critical)
				}
			}
			if got := []string{fast.URIs[0].String(), fast.URIs[1].String()}; !slices.Equal(got, []string{"spiffe://m/api", "spiffe://m/web"}) {
				t.Errorf("URIs %v", got)
			}
		}
	}
}

func isRSA(k crypto.Signer) bool { _, ok := k.Public().(*rsa.PublicKey); return ok }

func BenchmarkSignP256(b *testing.B) {
	a := authority(b, "ecdsa-p256")
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	spki, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	b.ReportAllocs()
	for b.Loop() {
		pub, _ := ParsePublicKey(nil, spki)
		if _, err := Sign(a, Request{SPIFFEIDs: []string{"spiffe://m/web"}, PublicKey: pub, Validity: time.Hour, Now: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
}
