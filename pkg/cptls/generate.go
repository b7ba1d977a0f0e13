package cptls

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/weftmesh/weft/pkg/ca"
)

// Certificate types for GenerateSelfSigned.
const (
	TypeServer = "server"
	TypeClient = "client"
)

// GenerateOptions describes a self-signed certificate for operators who
// bring their own control-plane TLS (`weftctl generate tls-certificate`).
type GenerateOptions struct {
	// Type is TypeServer (serverAuth EKU, hostnames as SANs) or TypeClient
	// (clientAuth EKU).
	Type string
	// Hostnames are DNS names or IP addresses (server: at least one).
	Hostnames []string
	// Validity defaults to one year.
	Validity time.Duration
	// KeyType is "ecdsa-p256" (default) or "rsa" (2048 bits).
	KeyType string
	// CommonName defaults to the first hostname.
	CommonName string
	Now        time.Time
}

// GenerateSelfSigned returns a self-signed certificate and its PKCS#8 key,
// PEM encoded.
func GenerateSelfSigned(o GenerateOptions) (certPEM, keyPEM []byte, err error) {
	if o.Type != TypeServer && o.Type != TypeClient {
		return nil, nil, fmt.Errorf("type %q: must be server or client", o.Type)
	}
	if o.Type == TypeServer && len(o.Hostnames) == 0 {
		return nil, nil, errors.New("a server certificate needs at least one --hostname")
	}
	if o.Validity == 0 {
		o.Validity = 365 * 24 * time.Hour
	}
	if o.Validity < 0 {
		return nil, nil, errors.New("validity must be positive")
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	key, err := ca.GenerateKey(o.KeyType, 0)
	if err != nil {
		return nil, nil, err
	}
	cn := o.CommonName
	if cn == "" && len(o.Hostnames) > 0 {
		cn = o.Hostnames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber:          ca.RandomSerial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             o.Now.Add(-time.Minute),
		NotAfter:              o.Now.Add(o.Validity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
	}
	if o.Type == TypeServer {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		for _, h := range o.Hostnames {
			if strings.TrimSpace(h) == "" {
				return nil, nil, errors.New("empty hostname")
			}
		}
		addHosts(tmpl, o.Hostnames, false)
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	self := &ca.Authority{Cert: tmpl, Key: key}
	_, certPEM, err = self.Sign(tmpl, key.Public())
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = ca.EncodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

func parseURI(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("uri %q: %w", s, err)
	}
	return u, nil
}
