// Package ca owns certificate-authority material shared by the control
// plane: generating self-signed roots (mesh builtin CAs, the control-plane
// CA), parsing and checking a CA certificate with its key, signing leaves,
// and the deep validation of a Mesh's provided CA backends that the
// api-server runs before it stores a Mesh.
package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // RFC 5280 subject key identifier method 1
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// Key types for generated keys.
const (
	KeyECDSAP256 = "ecdsa-p256"
	KeyRSA       = "rsa"
)

// MaxPEMSize bounds CA certificate and key input.
const MaxPEMSize = 256 << 10

// DefaultRootValidity is the validity of generated roots when none is set.
const DefaultRootValidity = 10 * 365 * 24 * time.Hour

// Sentinel errors of Parse; each has its own message so an operator knows
// what to fix.
var (
	ErrNoCertificate  = errors.New("no PEM CERTIFICATE block found")
	ErrBadCertificate = errors.New("certificate does not parse")
	ErrNoKey          = errors.New("no PEM private key block found")
	ErrBadKey         = errors.New("private key does not parse")
	ErrNotCA          = errors.New("certificate is not a CA (basicConstraints CA:TRUE and keyCertSign are required)")
	ErrKeyMismatch    = errors.New("private key does not match the certificate's public key")
	ErrExpired        = errors.New("certificate has expired")
	ErrNotYetValid    = errors.New("certificate is not valid yet")
	ErrTooLarge       = errors.New("input too large")
)

// Authority is a CA certificate with its signing key.
type Authority struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// CertPEM is the CA certificate alone.
	CertPEM []byte
	// ChainPEM is what follows the CA certificate in its PEM input
	// (intermediates up to a root), sent after leaves it signs.
	ChainPEM []byte
}

// RootOptions describes a self-signed root.
type RootOptions struct {
	KeyType      string // KeyECDSAP256 (default) or KeyRSA
	RSABits      int    // 2048 (default) or 4096
	Validity     time.Duration
	CommonName   string
	Organization string
	// Now is the issue time (default time.Now).
	Now time.Time
}

// GenerateKey makes a private key of the given type.
func GenerateKey(keyType string, rsaBits int) (crypto.Signer, error) {
	switch keyType {
	case "", KeyECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyRSA:
		if rsaBits == 0 {
			rsaBits = 2048
		}
		if rsaBits != 2048 && rsaBits != 3072 && rsaBits != 4096 {
			return nil, fmt.Errorf("rsa key size %d: must be 2048 or 4096", rsaBits)
		}
		return rsa.GenerateKey(rand.Reader, rsaBits)
	}
	return nil, fmt.Errorf("unknown key type %q (ecdsa-p256 or rsa)", keyType)
}

// GenerateRoot creates a self-signed CA and returns its certificate and
// PKCS#8 key, PEM encoded.
func GenerateRoot(o RootOptions) (certPEM, keyPEM []byte, err error) {
	key, err := GenerateKey(o.KeyType, o.RSABits)
	if err != nil {
		return nil, nil, err
	}
	if o.Validity <= 0 {
		o.Validity = DefaultRootValidity
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	ski, err := SubjectKeyID(key.Public())
	if err != nil {
		return nil, nil, err
	}
	subj := pkix.Name{CommonName: o.CommonName}
	if o.Organization != "" {
		subj.Organization = []string{o.Organization}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          RandomSerial(),
		Subject:               subj,
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(o.Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("create root certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// RandomSerial returns a random positive 128-bit serial number.
func RandomSerial() *big.Int {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[0] &= 0x7f
	n := new(big.Int).SetBytes(b)
	if n.Sign() == 0 {
		n.SetInt64(1)
	}
	return n
}

// SubjectKeyID computes an RFC 5280 method-1 key identifier.
func SubjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	// Hash the subjectPublicKey BIT STRING contents is the RFC's method;
	// hashing the whole SPKI is what most CAs do and is equally unique.
	sum := sha1.Sum(der) //nolint:gosec
	return sum[:], nil
}

// Parse reads a CA certificate (first CERTIFICATE block of certPEM; any
// further blocks are its chain) and its private key, and checks that the
// certificate is a CA, valid at now, and matches the key.
func Parse(certPEM, keyPEM []byte, now time.Time) (*Authority, error) {
	cert, rest, err := ParseCertificate(certPEM)
	if err != nil {
		return nil, err
	}
	key, err := ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, err
	}
	if err := CheckCA(cert, now); err != nil {
		return nil, err
	}
	if !KeyMatches(cert.PublicKey, key.Public()) {
		return nil, ErrKeyMismatch
	}
	var chain []byte
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return nil, fmt.Errorf("chain: %w: %v", ErrBadCertificate, err)
		}
		chain = append(chain, pem.EncodeToMemory(b)...)
	}
	return &Authority{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), ChainPEM: chain}, nil
}

// ParseCertificate reads the first CERTIFICATE block and returns what
// follows it.
func ParseCertificate(data []byte) (*x509.Certificate, []byte, error) {
	if len(data) > MaxPEMSize {
		return nil, nil, fmt.Errorf("certificate: %w (%d bytes, limit %d)", ErrTooLarge, len(data), MaxPEMSize)
	}
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, nil, ErrNoCertificate
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrBadCertificate, err)
		}
		return c, rest, nil
	}
}

// ParsePrivateKey reads the first private key block (PKCS#8, PKCS#1 or SEC 1).
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	if len(data) > MaxPEMSize {
		return nil, fmt.Errorf("private key: %w (%d bytes, limit %d)", ErrTooLarge, len(data), MaxPEMSize)
	}
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, ErrNoKey
		}
		var k any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w: unsupported key type %T", ErrBadKey, k)
		}
		return s, nil
	}
}

// CheckCA checks that c may sign certificates at now.
func CheckCA(c *x509.Certificate, now time.Time) error {
	if !c.BasicConstraintsValid || !c.IsCA || (c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0) {
		return ErrNotCA
	}
	if now.After(c.NotAfter) {
		return fmt.Errorf("%w (not after %s)", ErrExpired, c.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(c.NotBefore) {
		return fmt.Errorf("%w (not before %s)", ErrNotYetValid, c.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// KeyMatches reports whether two public keys are the same.
func KeyMatches(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if e, ok := a.(equaler); ok {
		return e.Equal(b)
	}
	return false
}

// CheckPublicKey accepts the key types and sizes workloads may use.
func CheckPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return errors.New("unsupported ECDSA curve")
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 || n > 8192 {
			return fmt.Errorf("RSA key of %d bits: must be 2048 to 8192", n)
		}
		return nil
	case ed25519.PublicKey:
		return nil
	}
	return fmt.Errorf("unsupported public key type %T", pub)
}

// Sign issues a certificate from tmpl for pub, signed by the authority.
// The serial number and key identifiers are filled in when unset.
func (a *Authority) Sign(tmpl *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, []byte, error) {
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = RandomSerial()
	}
	if tmpl.NotAfter.After(a.Cert.NotAfter) {
		tmpl.NotAfter = a.Cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, pub, a.Key)
	if err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return c, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// EncodeKey returns a PKCS#8 PEM private key.
func EncodeKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// SplitPEM separates CERTIFICATE blocks from private-key blocks of a PEM
// bundle (the storage form of generated roots: cert followed by key).
func SplitPEM(data []byte) (certs, keys []byte) {
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return certs, keys
		}
		enc := pem.EncodeToMemory(b)
		if b.Type == "CERTIFICATE" {
			certs = append(certs, enc...)
		} else if bytes.HasSuffix([]byte(b.Type), []byte("PRIVATE KEY")) {
			keys = append(keys, enc...)
		}
	}
}
