// Package cptls owns TLS between control-plane components: the
// control-plane CA (created once, sealed in the GlobalSecret "cp-ca"),
// serving and client certificates it issues in memory and renews before
// they expire, configs trusting it, operator-supplied certificate files,
// and self-signed certificates for `weftctl generate tls-certificate`.
//
// Every control-plane process has the store and the encryption keyring, so
// each issues its own short-lived leaf from the shared CA; only the CA is
// stored.
package cptls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/weftmesh/weft/pkg/ca"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// SecretName is the GlobalSecret holding the control-plane CA (cert then
// key, PEM). The "cp-" prefix keeps it local to one control plane.
const SecretName = "cp-ca"

// Validities.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	LeafValidity = 30 * 24 * time.Hour
)

// ServiceURIPrefix is the URI SAN prefix naming a control-plane service in
// certificates the CA issues: spiffe://weft.control-plane/<service>.
const ServiceURIPrefix = "spiffe://weft.control-plane/"

// LoadCA returns the control-plane CA, creating it the first time (once,
// even when replicas race: the losers read the winner's).
func LoadCA(ctx context.Context, st *store.Store) (*ca.Authority, error) {
	for attempt := 0; attempt < 3; attempt++ {
		r, err := st.Get(ctx, resource.GlobalSecretType, "", SecretName)
		if store.IsNotFound(err) {
			certPEM, keyPEM, err := ca.GenerateRoot(ca.RootOptions{CommonName: "Weft control-plane CA", Organization: "weft", Validity: CAValidity})
			if err != nil {
				return nil, err
			}
			sec := resource.New(resource.GlobalSecretType, "", SecretName)
			sec.Spec = &meshv1.GlobalSecret{Data: append(certPEM, keyPEM...)}
			if _, err := st.Create(ctx, sec); err != nil && !store.IsAlreadyExists(err) {
				return nil, fmt.Errorf("store control-plane CA: %w", err)
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read control-plane CA: %w", err)
		}
		data := r.Spec.(*meshv1.GlobalSecret).GetData()
		certs, keys := ca.SplitPEM(data)
		a, err := ca.Parse(certs, keys, time.Now())
		if err != nil {
			return nil, fmt.Errorf("control-plane CA (GlobalSecret %s): %w", SecretName, err)
		}
		return a, nil
	}
	return nil, errors.New("control-plane CA: could not create or read")
}

// RootPEM returns the control-plane CA certificate, PEM.
func RootPEM(ctx context.Context, st *store.Store) ([]byte, error) {
	a, err := LoadCA(ctx, st)
	if err != nil {
		return nil, err
	}
	return a.CertPEM, nil
}

// Pool returns a pool holding the control-plane CA.
func Pool(ctx context.Context, st *store.Store) (*x509.CertPool, error) {
	a, err := LoadCA(ctx, st)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	p.AddCert(a.Cert)
	return p, nil
}

// Issuer issues leaves from the control-plane CA and keeps them fresh.
type Issuer struct {
	st       *store.Store
	validity time.Duration
	now      func() time.Time

	mu     sync.Mutex
	ca     *ca.Authority
	leaves map[string]*tls.Certificate
}

// Option tunes an Issuer or a config.
type Option func(*options)

type options struct {
	validity time.Duration
	now      func() time.Time
	service  string
}

// WithValidity sets the validity of issued leaves (default 30 days).
func WithValidity(d time.Duration) Option { return func(o *options) { o.validity = d } }

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithService names the service in the certificate (URI SAN
// spiffe://weft.control-plane/<service>, CN). Client configs present a
// client certificate only when a service is named.
func WithService(name string) Option { return func(o *options) { o.service = name } }

func applyOpts(opts []Option) options {
	o := options{validity: LeafValidity, now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	return o
}

func newIssuer(st *store.Store, o options) *Issuer {
	return &Issuer{st: st, validity: o.validity, now: o.now, leaves: map[string]*tls.Certificate{}}
}

// leaf returns a cached certificate for (kind, names), issuing a new one
// when none is cached or two thirds of its lifetime have passed.
func (i *Issuer) leaf(ctx context.Context, service string, hostnames []string, server bool) (*tls.Certificate, error) {
	key := fmt.Sprintf("%t|%s|%s", server, service, strings.Join(hostnames, ","))
	now := i.now()
	i.mu.Lock()
	defer i.mu.Unlock()
	if c, ok := i.leaves[key]; ok {
		l := c.Leaf
		if now.Before(l.NotBefore.Add(l.NotAfter.Sub(l.NotBefore) * 2 / 3)) {
			return c, nil
		}
	}
	if i.ca == nil || now.After(i.ca.Cert.NotAfter.Add(-i.validity)) {
		a, err := LoadCA(ctx, i.st)
		if err != nil {
			return nil, err
		}
		i.ca = a
	}
	c, err := issue(i.ca, service, hostnames, server, now, i.validity)
	if err != nil {
		return nil, err
	}
	i.leaves[key] = c
	return c, nil
}

func issue(a *ca.Authority, service string, hostnames []string, server bool, now time.Time, validity time.Duration) (*tls.Certificate, error) {
	key, err := ca.GenerateKey(ca.KeyECDSAP256, 0)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: service, Organization: []string{"weft"}},
		NotBefore:   now.Add(-time.Minute),
		NotAfter:    now.Add(validity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if service != "" {
		u, err := parseURI(ServiceURIPrefix + service)
		if err != nil {
			return nil, err
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	if server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		addHosts(tmpl, hostnames, true)
	}
	leaf, _, err := a.Sign(tmpl, key.Public())
	if err != nil {
		return nil, fmt.Errorf("issue control-plane certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// addHosts puts hostnames (and always the loopback names, so local
// clients and tests verify) into DNS and IP SANs.
func addHosts(tmpl *x509.Certificate, hostnames []string, loopback bool) {
	seen := map[string]bool{}
	all := append([]string(nil), hostnames...)
	if loopback {
		all = append(all, "localhost", "127.0.0.1", "::1")
	}
	for _, h := range all {
		h = strings.TrimSpace(h)
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
}

// ServerConfig returns a TLS config serving a certificate from the
// control-plane CA for hostnames (loopback names are always included),
// renewed on the fly before it expires. Clients presenting a certificate
// from the same CA are verified (tls.VerifyClientCertIfGiven), so a server
// can authenticate control-plane peers by their certificate.
func ServerConfig(ctx context.Context, st *store.Store, hostnames []string, opts ...Option) (*tls.Config, error) {
	o := applyOpts(opts)
	iss := newIssuer(st, o)
	hosts := append([]string(nil), hostnames...)
	sort.Strings(hosts)
	if _, err := iss.leaf(ctx, o.service, hosts, true); err != nil {
		return nil, err
	}
	pool, err := Pool(ctx, st)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			c := hello.Context()
			if c == nil {
				c = context.Background()
			}
			return iss.leaf(c, o.service, hosts, true)
		},
		ClientCAs:  pool,
		ClientAuth: tls.VerifyClientCertIfGiven,
	}, nil
}

// ClientConfig returns a TLS config trusting the control-plane CA. With
// WithService it also presents a client certificate naming the service.
func ClientConfig(ctx context.Context, st *store.Store, opts ...Option) (*tls.Config, error) {
	o := applyOpts(opts)
	pool, err := Pool(ctx, st)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	if o.service != "" {
		iss := newIssuer(st, o)
		if _, err := iss.leaf(ctx, o.service, nil, false); err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(info *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c := info.Context()
			if c == nil {
				c = context.Background()
			}
			return iss.leaf(c, o.service, nil, false)
		}
	}
	return cfg, nil
}

// ServiceName returns the control-plane service a verified peer
// certificate names (its spiffe://weft.control-plane/<service> URI SAN).
func ServiceName(c *x509.Certificate) (string, bool) {
	for _, u := range c.URIs {
		if s, ok := strings.CutPrefix(u.String(), ServiceURIPrefix); ok && s != "" {
			return s, true
		}
	}
	return "", false
}

// FromFiles returns a serving config from operator-supplied files: the
// certificate (with chain) and key are re-read when either file changes;
// caFile, when set, verifies client certificates that are presented.
func FromFiles(certFile, keyFile, caFile string) (*tls.Config, error) {
	r := &fileReloader{cert: certFile, key: keyFile}
	if _, err := r.get(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.get() }}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("tls client CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("tls client CA file %s: no certificates found", caFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

type fileReloader struct {
	cert, key string
	mu        sync.Mutex
	mod       time.Time
	cur       *tls.Certificate
}

func (r *fileReloader) get() (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var mod time.Time
	for _, f := range []string{r.cert, r.key} {
		fi, err := os.Stat(f)
		if err != nil {
			if r.cur != nil {
				return r.cur, nil // keep serving while files are replaced
			}
			return nil, fmt.Errorf("tls certificate: %w", err)
		}
		if fi.ModTime().After(mod) {
			mod = fi.ModTime()
		}
	}
	if r.cur != nil && !mod.After(r.mod) {
		return r.cur, nil
	}
	c, err := tls.LoadX509KeyPair(r.cert, r.key)
	if err != nil {
		if r.cur != nil {
			return r.cur, nil
		}
		return nil, fmt.Errorf("tls certificate %s / key %s: %w", r.cert, r.key, err)
	}
	r.cur, r.mod = &c, mod
	return r.cur, nil
}
