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
	"math/big"
	"time"

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

type tbsCertificate struct {
	Version            int `asn1:"explicit,tag:0"`
	SerialNumber       *big.Int
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Issuer             asn1.RawValue
	Validity           validity
	Subject            asn1.RawValue
	PublicKey          asn1.RawValue
	Extensions         []pkix.Extension `asn1:"explicit,tag:3"`
}

type validity struct {
	NotBefore, NotAfter time.Time
}

type certificate struct {
	TBSCertificate     asn1.RawValue
	SignatureAlgorithm pkix.AlgorithmIdentifier
	SignatureValue     asn1.BitString
}

type authKeyID struct {
	ID []byte `asn1:"optional,tag:0"`
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
	names := make([]asn1.RawValue, len(uris))
	for i, u := range uris {
		names[i] = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(u)}
	}
	san, err := asn1.Marshal(names)
	if err != nil {
		return nil, err
	}
	ku := keyUsageDigitalSignature
	if rsaKey {
		ku = keyUsageDSAndKE
	}
	exts := []pkix.Extension{
		{Id: oidKeyUsage, Critical: true, Value: ku},
		{Id: oidExtKeyUsage, Value: extKeyUsageValue},
		{Id: oidBasicConstraints, Critical: true, Value: basicConstraintsValue},
	}
	if len(a.Cert.SubjectKeyId) > 0 {
		akid, err := asn1.Marshal(authKeyID{ID: a.Cert.SubjectKeyId})
		if err != nil {
			return nil, err
		}
		exts = append(exts, pkix.Extension{Id: oidAuthorityKeyID, Value: akid})
	}
	// The subject is empty, so the SAN extension is critical (RFC 5280 4.2.1.6).
	exts = append(exts, pkix.Extension{Id: oidSubjectAltName, Critical: true, Value: san})
	tbs := tbsCertificate{
		Version:            2,
		SerialNumber:       ca.RandomSerial(),
		SignatureAlgorithm: alg,
		Issuer:             asn1.RawValue{FullBytes: a.Cert.RawSubject},
		Validity:           validity{notBefore.UTC().Truncate(time.Second), notAfter.UTC().Truncate(time.Second)},
		Subject:            asn1.RawValue{FullBytes: emptyName},
		PublicKey:          asn1.RawValue{FullBytes: spki},
		Extensions:         exts,
	}
	tbsDER, err := asn1.Marshal(tbs)
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
	return asn1.Marshal(certificate{
		TBSCertificate:     asn1.RawValue{FullBytes: tbsDER},
		SignatureAlgorithm: alg,
		SignatureValue:     asn1.BitString{Bytes: sig, BitLength: len(sig) * 8},
	})
}
