package signer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/weftmesh/weft/pkg/ca"
)

// The workload leaf has one fixed shape, so it is encoded directly rather
// than through x509.CreateCertificate, which re-verifies every signature it
// makes (to catch faulty hardware signers) and so costs a second public-key
// operation per certificate. Tests parse and verify the output with
// crypto/x509 and compare it with CreateCertificate's.

var (
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidAuthorityKeyID   = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidSubjectAltName   = asn1.ObjectIdentifier{2, 5, 29, 17}

	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}

	// serverAuth, clientAuth
	extKeyUsageValue = mustMarshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 1}, {1, 3, 6, 1, 5, 5, 7, 3, 2}})
	// cA FALSE (the default, so an empty SEQUENCE)
	basicConstraintsValue = []byte{0x30, 0x00}
	// digitalSignature; digitalSignature|keyEncipherment
	keyUsageDigitalSignature = mustMarshal(asn1.BitString{Bytes: []byte{0x80}, BitLength: 1})
	keyUsageDSAndKE          = mustMarshal(asn1.BitString{Bytes: []byte{0xa0}, BitLength: 3})
	emptyName                = []byte{0x30, 0x00}
)

func mustMarshal(v any) []byte {
	b, err := asn1.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

var errUnsupportedCA = errors.New("CA key type not supported by the fast encoder")

// sigAlg picks the signature algorithm for a CA key.
func sigAlg(k crypto.Signer) (pkix.AlgorithmIdentifier, crypto.Hash, error) {
	switch pub := k.Public().(type) {
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			return pkix.AlgorithmIdentifier{Algorithm: oidECDSAWithSHA256}, crypto.SHA256, nil
		case elliptic.P384():
			return pkix.AlgorithmIdentifier{Algorithm: oidECDSAWithSHA384}, crypto.SHA384, nil
		}
	case *rsa.PublicKey:
		return pkix.AlgorithmIdentifier{Algorithm: oidSHA256WithRSA, Parameters: asn1.NullRawValue}, crypto.SHA256, nil
	}
	return pkix.AlgorithmIdentifier{}, 0, errUnsupportedCA
}

// encodeLeaf builds and signs the leaf DER.
func encodeLeaf(a *ca.Authority, spki []byte, rsaKey bool, uris []string, notBefore, notAfter time.Time) ([]byte, error) {
	alg, hash, err := sigAlg(a.Key)
	if err != nil {
		return nil, err
	}
	algDER, err := asn1.Marshal(alg)
	if err != nil {
		return nil, err
	}
	ku := keyUsageDigitalSignature
	if rsaKey {
		ku = keyUsageDSAndKE
	}
	ext := func(b *cryptobyte.Builder, id asn1.ObjectIdentifier, critical bool, value func(*cryptobyte.Builder)) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(id)
			if critical {
				b.AddASN1Boolean(true)
			}
			b.AddASN1(cbasn1.OCTET_STRING, value)
		})
	}
	raw := func(v []byte) func(*cryptobyte.Builder) { return func(b *cryptobyte.Builder) { b.AddBytes(v) } }
	tb := cryptobyte.NewBuilder(make([]byte, 0, 512+len(spki)))
	tb.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { b.AddASN1Int64(2) })
		b.AddASN1BigInt(ca.RandomSerial())
		b.AddBytes(algDER)
		b.AddBytes(a.Cert.RawSubject)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			addTime(b, notBefore)
			addTime(b, notAfter)
		})
		b.AddBytes(emptyName)
		b.AddBytes(spki)
		b.AddASN1(cbasn1.Tag(3).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				ext(b, oidKeyUsage, true, raw(ku))
				ext(b, oidExtKeyUsage, false, raw(extKeyUsageValue))
				ext(b, oidBasicConstraints, true, raw(basicConstraintsValue))
				if id := a.Cert.SubjectKeyId; len(id) > 0 {
					ext(b, oidAuthorityKeyID, false, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(id) })
						})
					})
				}
				// The subject is empty, so the SAN extension is critical
				// (RFC 5280 4.2.1.6).
				ext(b, oidSubjectAltName, true, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						for _, u := range uris {
							b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(u)) })
						}
					})
				})
			})
		})
	})
	tbsDER, err := tb.Bytes()
	if err != nil {
		return nil, err
	}
	var digest []byte
	switch hash {
	case crypto.SHA384:
		s := sha512.Sum384(tbsDER)
		digest = s[:]
	default:
		s := sha256.Sum256(tbsDER)
		digest = s[:]
	}
	sig, err := a.Key.Sign(rand.Reader, digest, hash)
	if err != nil {
		return nil, err
	}
	cb := cryptobyte.NewBuilder(make([]byte, 0, len(tbsDER)+len(sig)+32))
	cb.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbsDER)
		b.AddBytes(algDER)
		b.AddASN1BitString(sig)
	})
	return cb.Bytes()
}

// addTime encodes a certificate time as RFC 5280 4.1.2.5 asks: UTCTime
// through 2049, GeneralizedTime after.
func addTime(b *cryptobyte.Builder, t time.Time) {
	t = t.UTC()
	if t.Year() >= 1950 && t.Year() < 2050 {
		b.AddASN1UTCTime(t)
	} else {
		b.AddASN1GeneralizedTime(t)
	}
}
