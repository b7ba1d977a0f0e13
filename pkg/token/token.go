// Package token issues and verifies Weft's signed bearer tokens: user
// (admin) tokens for the API, dataplane tokens for proxies, zone tokens for
// zone control planes and service tokens for control-plane services. Tokens
// are ES256 JWTs signed with a key kept as a GlobalSecret (sealed at rest)
// in the control plane's own etcd.
package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// Token kinds.
const (
	KindUser      = "user"
	KindDataplane = "dataplane"
	KindZone      = "zone"
	KindService   = "service"
)

// AdminGroup is the user group with full access to the API.
const AdminGroup = "weft:admin"

// SigningKeySecret names the GlobalSecret holding the signing key. GlobalSecrets
// whose names start with "cp-" belong to one control plane and are never
// synced between zones.
const SigningKeySecret = "cp-token-signing-key"

// MaxValidity bounds every token's lifetime.
const MaxValidity = 10 * 365 * 24 * time.Hour

const issuer = "weft"

// MaxTokenSize bounds a token before it is parsed.
const MaxTokenSize = 8 << 10

// Claims are the contents of a token.
type Claims struct {
	jwt.RegisteredClaims
	Kind string `json:"kind"`
	// Dataplane tokens: the mesh and dataplane name (Subject) and optional
	// tags the dataplane must carry.
	Mesh string            `json:"mesh,omitempty"`
	Tags map[string]string `json:"tags,omitempty"`
	// Zone tokens: the zone (also Subject).
	Zone string `json:"zone,omitempty"`
	// User tokens: groups (AdminGroup for admins).
	Groups []string `json:"groups,omitempty"`
}

// Name is the token's subject: user, dataplane, zone or service name.
func (c *Claims) Name() string { return c.Subject }

// IsAdmin reports whether a user token is in the admin group.
func (c *Claims) IsAdmin() bool {
	if c.Kind != KindUser {
		return false
	}
	for _, g := range c.Groups {
		if g == AdminGroup {
			return true
		}
	}
	return false
}

// Error is a token that does not verify; Reason says why in words an
// operator can act on.
type Error struct{ Reason string }

func (e *Error) Error() string { return "invalid token: " + e.Reason }

// IsInvalid reports whether err is a token that did not verify.
func IsInvalid(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// Keys issues and verifies tokens with the control plane's signing key,
// creating the key on first use (once, even with racing replicas).
type Keys struct {
	st  *store.Store
	now func() time.Time

	mu   sync.RWMutex
	priv *ecdsa.PrivateKey
	kid  string

	// verified caches tokens whose signature checked out, so the ECDSA
	// verification (the largest cost of an API request) runs once per token,
	// not once per request. Expiry is still checked on every use.
	cacheMu  sync.Mutex
	verified map[string]*Claims
}

// maxCached bounds the verified-token cache; when full it starts over.
const maxCached = 10000

// New returns token keys backed by the store (which must have a keyring).
func New(st *store.Store) *Keys { return &Keys{st: st, now: time.Now} }

// WithClock sets the clock (tests).
func (k *Keys) WithClock(now func() time.Time) *Keys { k.now = now; return k }

func (k *Keys) current() (*ecdsa.PrivateKey, string) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.priv, k.kid
}

// load reads the signing key, creating it when absent.
func (k *Keys) load(ctx context.Context) (*ecdsa.PrivateKey, string, error) {
	for attempt := 0; attempt < 3; attempt++ {
		r, err := k.st.Get(ctx, resource.GlobalSecretType, "", SigningKeySecret)
		if store.IsNotFound(err) {
			priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return nil, "", err
			}
			der, err := x509.MarshalECPrivateKey(priv)
			if err != nil {
				return nil, "", err
			}
			data := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
			sec := resource.New(resource.GlobalSecretType, "", SigningKeySecret)
			sec.Spec = &meshv1.GlobalSecret{Data: data}
			if _, err := k.st.Create(ctx, sec); err != nil && !store.IsAlreadyExists(err) {
				return nil, "", fmt.Errorf("store token signing key: %w", err)
			}
			continue // read back whichever replica's key won
		}
		if err != nil {
			return nil, "", fmt.Errorf("read token signing key: %w", err)
		}
		block, _ := pem.Decode(r.Spec.(*meshv1.GlobalSecret).GetData())
		if block == nil {
			return nil, "", errors.New("token signing key: not PEM")
		}
		priv, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, "", fmt.Errorf("token signing key: %w", err)
		}
		pub, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
		sum := sha256.Sum256(pub)
		kid := hex.EncodeToString(sum[:8])
		k.mu.Lock()
		k.priv, k.kid = priv, kid
		k.mu.Unlock()
		return priv, kid, nil
	}
	return nil, "", errors.New("token signing key: could not create or read")
}

func (k *Keys) key(ctx context.Context) (*ecdsa.PrivateKey, string, error) {
	if priv, kid := k.current(); priv != nil {
		return priv, kid, nil
	}
	return k.load(ctx)
}

// Issue signs claims valid for d from now and returns the token and its
// expiry.
func (k *Keys) Issue(ctx context.Context, c Claims, d time.Duration) (string, time.Time, error) {
	if d <= 0 || d > MaxValidity {
		return "", time.Time{}, fmt.Errorf("validity must be between 0 and %s", MaxValidity)
	}
	switch c.Kind {
	case KindUser, KindDataplane, KindZone, KindService:
	default:
		return "", time.Time{}, fmt.Errorf("unknown token kind %q", c.Kind)
	}
	priv, kid, err := k.key(ctx)
	if err != nil {
		return "", time.Time{}, err
	}
	now := k.now()
	exp := now.Add(d)
	c.Issuer = issuer
	c.IssuedAt = jwt.NewNumericDate(now)
	c.NotBefore = jwt.NewNumericDate(now.Add(-30 * time.Second))
	c.ExpiresAt = jwt.NewNumericDate(exp)
	var jti [12]byte
	_, _ = rand.Read(jti[:])
	c.ID = hex.EncodeToString(jti[:])
	t := jwt.NewWithClaims(jwt.SigningMethodES256, &c)
	t.Header["kid"] = kid
	s, err := t.SignedString(priv)
	return s, exp, err
}

// Verify checks a token's signature, issuer and lifetime and returns its
// claims. A token signed by a key this control plane does not hold fails.
func (k *Keys) Verify(ctx context.Context, tok string) (*Claims, error) {
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return nil, &Error{Reason: "no token given"}
	}
	if len(tok) > MaxTokenSize {
		return nil, &Error{Reason: "token too large"}
	}
	priv, kid, err := k.key(ctx)
	if err != nil {
		return nil, err
	}
	k.cacheMu.Lock()
	cached, ok := k.verified[tok]
	k.cacheMu.Unlock()
	if ok {
		if !k.now().Before(cached.ExpiresAt.Add(30 * time.Second)) {
			return nil, &Error{Reason: "token expired"}
		}
		c := *cached
		return &c, nil
	}
	parse := func(pub *ecdsa.PublicKey) (*Claims, error) {
		c := &Claims{}
		_, err := jwt.ParseWithClaims(tok, c, func(*jwt.Token) (any, error) { return pub, nil },
			jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(issuer), jwt.WithExpirationRequired(),
			jwt.WithTimeFunc(k.now), jwt.WithLeeway(30*time.Second))
		return c, err
	}
	c, err := parse(&priv.PublicKey)
	if err != nil && errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		// The key may have been rotated by another replica: reload once.
		if priv2, kid2, lerr := k.load(ctx); lerr == nil && kid2 != kid {
			c, err = parse(&priv2.PublicKey)
		}
	}
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, &Error{Reason: "token expired"}
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return nil, &Error{Reason: "signature does not verify (token from another control plane, or forged)"}
	case errors.Is(err, jwt.ErrTokenMalformed):
		return nil, &Error{Reason: "malformed token"}
	default:
		return nil, &Error{Reason: err.Error()}
	}
	if c.Subject == "" {
		return nil, &Error{Reason: "token has no subject"}
	}
	k.cacheMu.Lock()
	if k.verified == nil || len(k.verified) >= maxCached {
		k.verified = map[string]*Claims{}
	}
	cc := *c
	k.verified[tok] = &cc
	k.cacheMu.Unlock()
	return c, nil
}

// VerifyDataplane verifies a dataplane token for mesh/name.
func (k *Keys) VerifyDataplane(ctx context.Context, tok, mesh, name string) (*Claims, error) {
	c, err := k.Verify(ctx, tok)
	if err != nil {
		return nil, err
	}
	if c.Kind != KindDataplane {
		return nil, &Error{Reason: fmt.Sprintf("a %s token is not a dataplane token", c.Kind)}
	}
	if c.Mesh != mesh || c.Subject != name {
		return nil, &Error{Reason: fmt.Sprintf("token is for dataplane %s/%s, not %s/%s", c.Mesh, c.Subject, mesh, name)}
	}
	return c, nil
}

// VerifyZone verifies a zone token for zone.
func (k *Keys) VerifyZone(ctx context.Context, tok, zone string) (*Claims, error) {
	c, err := k.Verify(ctx, tok)
	if err != nil {
		return nil, err
	}
	if c.Kind != KindZone {
		return nil, &Error{Reason: fmt.Sprintf("a %s token is not a zone token", c.Kind)}
	}
	if zone != "" && c.Zone != zone {
		return nil, &Error{Reason: fmt.Sprintf("token is for zone %q, not %q", c.Zone, zone)}
	}
	return c, nil
}
