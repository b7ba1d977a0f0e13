package signer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"testing"
)

func FuzzParsePublicKey(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
	f.Add([]byte(nil), pub)
	f.Add(csr, []byte(nil))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), []byte(nil))
	f.Add([]byte(nil), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
	f.Add([]byte("-----BEGIN"), []byte{0x30, 0x82})
	f.Fuzz(func(t *testing.T, csr, pub []byte) {
		k, err := ParsePublicKey(csr, pub)
		if err == nil && k == nil {
			t.Fatal("nil key without error")
		}
	})
}
