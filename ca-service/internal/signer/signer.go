// Package signer turns a workload's public key (or CSR) and identity into
// a short-lived SPIFFE leaf certificate signed by a mesh CA.
package signer

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"time"

	"github.com/weftmesh/weft/pkg/ca"
)

// MaxKeyInput bounds a CSR or public key in a request.
const MaxKeyInput = 16 << 10

// Backdate is how far before the issue time a certificate becomes valid,
// for clocks that run behind.
const Backdate = 10 * time.Second

// DefaultValidity is the workload certificate validity when the backend
// sets none.
const DefaultValidity = 24 * time.Hour

// MinValidity is the shortest validity a caller may ask for.
const MinValidity = time.Second

// SPIFFEID is the identity of a service in a mesh.
// (pkg/ca defines it for ca-service and the xds-server alike).
func SPIFFEID(mesh, service string) string { return ca.SPIFFEID(mesh, service) }

// p256SPKIPrefix is the DER SubjectPublicKeyInfo header of an
// uncompressed P-256 key (id-ecPublicKey, prime256v1, BIT STRING of 66).
var p256SPKIPrefix = []byte{0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
	0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00}

// PublicKey is a workload key and its DER SubjectPublicKeyInfo.
type PublicKey struct {
	Key  crypto.PublicKey
	SPKI []byte
}

// ParsePublicKey extracts the public key from a PKCS#10 CSR or a PKIX
// public key, DER or PEM. A CSR's signature is checked (proof that the
// caller holds the private key); its requested names are ignored: identity
// comes from the Dataplane.
func ParsePublicKey(csr, pub []byte) (*PublicKey, error) {
	switch {
	case len(csr) > 0 && len(pub) > 0:
		return nil, errors.New("set csr or public_key, not both")
	case len(csr) > MaxKeyInput || len(pub) > MaxKeyInput:
		return nil, fmt.Errorf("csr/public_key larger than %d bytes", MaxKeyInput)
	case len(csr) > 0:
		der, err := pemOrDER(csr, "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST")
		if err != nil {
			return nil, fmt.Errorf("csr: %w", err)
		}
		r, err := x509.ParseCertificateRequest(der)
		if err != nil {
			return nil, fmt.Errorf("csr: %w", err)
		}
		if err := r.CheckSignature(); err != nil {
			return nil, fmt.Errorf("csr: signature does not verify: %w", err)
		}
		if err := ca.CheckPublicKey(r.PublicKey); err != nil {
			return nil, fmt.Errorf("csr: %w", err)
		}
		return &PublicKey{Key: r.PublicKey, SPKI: r.RawSubjectPublicKeyInfo}, nil
	case len(pub) > 0:
		der, err := pemOrDER(pub, "PUBLIC KEY")
		if err != nil {
			return nil, fmt.Errorf("public_key: %w", err)
		}
		// Fast path for the common P-256 key: the SPKI is a fixed header
		// and an uncompressed point (which is checked to be on the curve).
		if len(der) == len(p256SPKIPrefix)+65 && bytes.HasPrefix(der, p256SPKIPrefix) {
			k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), der[len(p256SPKIPrefix):])
			if err != nil {
				return nil, fmt.Errorf("public_key: %w", err)
			}
			return &PublicKey{Key: k, SPKI: der}, nil
		}
		k, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			return nil, fmt.Errorf("public_key: %w", err)
		}
		if err := ca.CheckPublicKey(k); err != nil {
			return nil, fmt.Errorf("public_key: %w", err)
		}
		return &PublicKey{Key: k, SPKI: der}, nil
	}
	return nil, errors.New("csr or public_key is required")
}

func pemOrDER(b []byte, types ...string) ([]byte, error) {
	if len(b) > 0 && b[0] == 0x30 { // DER SEQUENCE
		return b, nil
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("neither DER nor PEM")
	}
	for _, t := range types {
		if blk.Type == t {
			return blk.Bytes, nil
		}
	}
	return nil, fmt.Errorf("PEM block %q, want %q", blk.Type, types[0])
}

// Request is what a leaf is issued for.
type Request struct {
	// SPIFFEIDs become URI SANs.
	SPIFFEIDs []string
	PublicKey *PublicKey
	Validity  time.Duration
	Now       time.Time
}

// Leaf is an issued certificate.
type Leaf struct {
	DER, PEM            []byte
	NotBefore, NotAfter time.Time
}

// Sign issues the leaf: URI SANs for every identity (sorted), EKU
// server+client, key usage digitalSignature (+keyEncipherment for RSA
// keys), valid from Now-Backdate to Now+Validity capped by the CA's expiry.
func Sign(a *ca.Authority, r Request) (*Leaf, error) {
	if len(r.SPIFFEIDs) == 0 {
		return nil, errors.New("no identity to certify")
	}
	ids := append([]string(nil), r.SPIFFEIDs...)
	sort.Strings(ids)
	for _, id := range ids {
		if _, err := url.Parse(id); err != nil {
			return nil, fmt.Errorf("identity %q: %w", id, err)
		}
	}
	notBefore := r.Now.Add(-Backdate).UTC().Truncate(time.Second)
	notAfter := r.Now.Add(r.Validity).UTC().Truncate(time.Second)
	if notAfter.After(a.Cert.NotAfter) {
		notAfter = a.Cert.NotAfter.UTC()
	}
	_, isRSA := r.PublicKey.Key.(*rsa.PublicKey)
	der, err := encodeLeaf(a, r.PublicKey.SPKI, isRSA, ids, notBefore, notAfter)
	if errors.Is(err, errUnsupportedCA) {
		der, err = signWithX509(a, r.PublicKey.Key, isRSA, ids, notBefore, notAfter)
	}
	if err != nil {
		return nil, err
	}
	return &Leaf{DER: der, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), NotBefore: notBefore, NotAfter: notAfter}, nil
}

// signWithX509 is the general path, for CA keys the encoder does not know.
func signWithX509(a *ca.Authority, pub crypto.PublicKey, isRSA bool, ids []string, notBefore, notAfter time.Time) ([]byte, error) {
	uris := make([]*url.URL, 0, len(ids))
	for _, id := range ids {
		u, err := url.Parse(id)
		if err != nil {
			return nil, err
		}
		uris = append(uris, u)
	}
	ku := x509.KeyUsageDigitalSignature
	if isRSA {
		ku |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              ku,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  uris,
	}
	c, _, err := a.Sign(tmpl, pub)
	if err != nil {
		return nil, err
	}
	return c.Raw, nil
}
