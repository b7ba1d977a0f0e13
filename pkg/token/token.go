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
	"slices"
	"sort"
	"strconv"
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
	// KindIngress is a zone ingress's token: bound to one zone (Zone) and
	// one ZoneIngress name (Subject). It lets the ingress fetch its own
	// configuration over ADS and nothing else: no dataplane's, no other
	// ingress's, never a workload certificate.
	KindIngress = "ingress"
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
	// Dataplane tokens: the weft.io/service values the dataplane may be (its
	// identity binding; see BoundServices). Unbound marks a token issued
	// explicitly without a binding.
	Services []string `json:"services,omitempty"`
	Unbound  bool     `json:"unbound,omitempty"`
	// Zone tokens: the zone (also Subject). Ingress tokens: the zone of
	// the ingress (whose name is Subject).
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

// BoundServices returns the services a dataplane token may claim: its
// services claim plus a weft.io/service in its tags. unbound is true only
// for a token issued explicitly unbound. A dataplane token with neither
// (issued before tokens were bound) is bound to nothing: it can still
// connect, but no identity can be derived from it.
func (c *Claims) BoundServices() (services []string, unbound bool) {
	if c.Unbound {
		return nil, true
	}
	services = append(services, c.Services...)
	if s := c.Tags[resource.ServiceTag]; s != "" && !slices.Contains(services, s) {
		services = append(services, s)
	}
	return services, false
}

// BindingError is an identity a token is not bound to.
type BindingError struct {
	Mesh, Dataplane string
	Service         string
	Bound           []string
}

func (e *BindingError) Error() string {
	bound := "no service (a token issued before tokens were bound to services: issue a new one)"
	if len(e.Bound) > 0 {
		bound = "services [" + strings.Join(e.Bound, ", ") + "]"
	}
	return fmt.Sprintf("the token of dataplane %s/%s is bound to %s, not to %s %q: "+
		"issue a token for this service (weftctl generate dataplane-token --service %s)",
		e.Mesh, e.Dataplane, bound, resource.ServiceTag, e.Service, e.Service)
}

// CheckServices is the identity binding, the one check every place that
// derives an identity from a dataplane token applies (api-server on writes
// of the token's Dataplane, xds-server before it asks for a certificate,
// ca-service before it signs): every service must be one the token is
// bound to. services come from resource.DataplaneServices.
func (c *Claims) CheckServices(services []string) error {
	if c.Kind != KindDataplane {
		return &Error{Reason: fmt.Sprintf("a %s token is not a dataplane token", c.Kind)}
	}
	bound, unbound := c.BoundServices()
	if unbound {
		return nil
	}
	for _, s := range services {
		if !slices.Contains(bound, s) {
			b := slices.Clone(bound)
			sort.Strings(b)
			return &BindingError{Mesh: c.Mesh, Dataplane: c.Subject, Service: s, Bound: b}
		}
	}
	return nil
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
//
// Verification costs no etcd read per request: the signing key and the
// revocation list are held in memory and refreshed at most every
// RefreshInterval (each refresh under a RefreshTimeout deadline), and a
// token naming an unknown key id reloads the key at most once per
// RefreshInterval. A bad signature under the current key reloads nothing.
type Keys struct {
	st  *store.Store
	now func() time.Time
	// get reads a GlobalSecret (the store; tests count the reads).
	get func(ctx context.Context, name string) (*resource.Resource, error)

	mu   sync.RWMutex
	priv *ecdsa.PrivateKey
	kid  string
	gen  uint64
	// revoked maps a revoked token id to when the entry may be dropped.
	revoked map[string]time.Time

	// refreshMu serialises refreshes; lastRefresh is when the last one was
	// attempted (successful or not) and lastKidReload when an unknown key
	// id last caused one.
	refreshMu     sync.Mutex
	refreshing    bool
	loadMu        sync.Mutex
	lastRefresh   time.Time
	lastKidReload time.Time
	refreshErr    string

	// verified caches tokens whose signature checked out, so the ECDSA
	// verification (the largest cost of an API request) runs once per token,
	// not once per request. Expiry and revocation are still checked on every
	// use; a new signing key empties it.
	cacheMu  sync.Mutex
	verified map[string]*Claims

	// changed is closed (and replaced) when the signing key or the
	// revocation list changes: long-lived sessions re-verify then, not on
	// a timer each.
	changedMu sync.Mutex
	changed   chan struct{}
}

// Changed returns a channel closed at the next change of the signing key or
// of the revocation list this verifier holds. Holders of long-lived
// sessions (xDS streams) verify their token again when it closes; Poll (or
// any Verify) is what reads those changes from the store.
func (k *Keys) Changed() <-chan struct{} {
	k.changedMu.Lock()
	defer k.changedMu.Unlock()
	if k.changed == nil {
		k.changed = make(chan struct{})
	}
	return k.changed
}

func (k *Keys) notifyChanged() {
	k.changedMu.Lock()
	defer k.changedMu.Unlock()
	if k.changed != nil {
		close(k.changed)
		k.changed = nil
	}
}

// Poll re-reads the signing key and the revocation list in the background
// when RefreshInterval has passed since the last read, as a Verify does: a
// process whose sessions outlive their Verify calls runs it periodically
// (RunPoller) so a revocation reaches Changed within about RefreshInterval.
func (k *Keys) Poll(ctx context.Context) { k.refresh(ctx, false) }

// RunPoller calls Poll every RefreshInterval until ctx ends.
func (k *Keys) RunPoller(ctx context.Context) error {
	t := time.NewTicker(RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			k.Poll(ctx)
		}
	}
}

// maxCached bounds the verified-token cache; when full it starts over.
const maxCached = 10000

// Revocation and key refresh timing.
var (
	// RefreshInterval is how often a verifier re-reads the signing key and
	// the revocation list (so a revocation or rotation is honoured within
	// about this long), and the least time between reloads caused by
	// tokens naming unknown key ids.
	RefreshInterval = 2 * time.Second
	// RefreshTimeout bounds one refresh: with etcd down verification goes
	// on with what is held instead of hanging.
	RefreshTimeout = 2 * time.Second
)

// New returns token keys backed by the store (which must have a keyring).
func New(st *store.Store) *Keys {
	k := &Keys{st: st, now: time.Now}
	k.get = func(ctx context.Context, name string) (*resource.Resource, error) {
		return st.Get(ctx, resource.GlobalSecretType, "", name)
	}
	return k
}

// WithClock sets the clock (tests).
func (k *Keys) WithClock(now func() time.Time) *Keys { k.now = now; return k }

// WithReadHook wraps the store reads (tests count them).
func (k *Keys) WithReadHook(hook func(name string)) *Keys {
	get := k.get
	k.get = func(ctx context.Context, name string) (*resource.Resource, error) {
		hook(name)
		return get(ctx, name)
	}
	return k
}

func (k *Keys) current() (*ecdsa.PrivateKey, string) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.priv, k.kid
}

// KeyGeneration is the PEM header carrying a signing key's generation.
const keyGenerationHeader = "Generation"

func keyID(priv *ecdsa.PrivateKey) string {
	pub, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

func encodeKey(priv *ecdsa.PrivateKey, gen uint64) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{keyGenerationHeader: strconv.FormatUint(gen, 10)}, Bytes: der}), nil
}

func decodeKey(data []byte) (*ecdsa.PrivateKey, uint64, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, 0, errors.New("token signing key: not PEM")
	}
	priv, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, 0, fmt.Errorf("token signing key: %w", err)
	}
	gen := uint64(1) // keys written before generations were recorded
	if g := block.Headers[keyGenerationHeader]; g != "" {
		if gen, err = strconv.ParseUint(g, 10, 64); err != nil {
			return nil, 0, fmt.Errorf("token signing key: generation %q: %w", g, err)
		}
	}
	return priv, gen, nil
}

// setKey installs a signing key; a different key empties the cache of
// verified tokens (they may have been signed by the old one).
func (k *Keys) setKey(priv *ecdsa.PrivateKey, gen uint64) {
	kid := keyID(priv)
	k.mu.Lock()
	if gen < k.gen {
		// A refresh that read the key before a rotation finished: keep
		// the newer generation.
		k.mu.Unlock()
		return
	}
	changed := k.kid != kid
	k.priv, k.kid, k.gen = priv, kid, gen
	k.mu.Unlock()
	if changed {
		k.cacheMu.Lock()
		k.verified = nil
		k.cacheMu.Unlock()
		k.notifyChanged()
	}
}

// load reads the signing key, creating it when absent.
func (k *Keys) load(ctx context.Context) (*ecdsa.PrivateKey, string, error) {
	for attempt := 0; attempt < 3; attempt++ {
		r, err := k.get(ctx, SigningKeySecret)
		if store.IsNotFound(err) {
			priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return nil, "", err
			}
			data, err := encodeKey(priv, 1)
			if err != nil {
				return nil, "", err
			}
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
		priv, gen, err := decodeKey(r.Spec.(*meshv1.GlobalSecret).GetData())
		if err != nil {
			return nil, "", err
		}
		k.setKey(priv, gen)
		priv, kid := k.current()
		return priv, kid, nil
	}
	return nil, "", errors.New("token signing key: could not create or read")
}

func (k *Keys) key(ctx context.Context) (*ecdsa.PrivateKey, string, error) {
	if priv, kid := k.current(); priv != nil {
		return priv, kid, nil
	}
	k.loadMu.Lock()
	defer k.loadMu.Unlock()
	if priv, kid := k.current(); priv != nil {
		return priv, kid, nil
	}
	ctx, cancel := context.WithTimeout(ctx, RefreshTimeout)
	defer cancel()
	priv, kid, err := k.load(ctx)
	if err != nil {
		return nil, "", err
	}
	if err := k.loadRevocations(ctx); err != nil {
		return nil, "", err
	}
	k.refreshMu.Lock()
	k.lastRefresh = k.now()
	k.refreshMu.Unlock()
	return priv, kid, nil
}

// refresh re-reads the key and the revocation list. A periodic refresh
// (unknownKid false) runs in the background once RefreshInterval has passed
// since the last one ended: no request waits for it. A token naming an
// unknown key id reloads synchronously, at most once per RefreshInterval.
// Each refresh is bounded by RefreshTimeout; on failure the held key and
// revocation list stay in use.
func (k *Keys) refresh(ctx context.Context, unknownKid bool) {
	k.refreshMu.Lock()
	now := k.now()
	last := &k.lastRefresh
	if unknownKid {
		last = &k.lastKidReload
	}
	if k.refreshing || now.Sub(*last) < RefreshInterval {
		k.refreshMu.Unlock()
		return
	}
	k.refreshing = true
	k.refreshMu.Unlock()
	run := func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), RefreshTimeout)
		defer cancel()
		var errs []string
		if _, _, err := k.load(ctx); err != nil {
			errs = append(errs, err.Error())
		}
		if err := k.loadRevocations(ctx); err != nil {
			errs = append(errs, err.Error())
		}
		k.refreshMu.Lock()
		*last = k.now()
		k.refreshing = false
		k.refreshErr = strings.Join(errs, "; ")
		k.refreshMu.Unlock()
	}
	if unknownKid {
		run()
	} else {
		go run()
	}
}

// RefreshError is the last refresh's failure ("" when it worked): a
// verifier that cannot reach etcd keeps verifying with the key and
// revocation list it holds.
func (k *Keys) RefreshError() string {
	k.refreshMu.Lock()
	defer k.refreshMu.Unlock()
	return k.refreshErr
}

// Issue signs claims valid for d from now and returns the token and its
// expiry.
func (k *Keys) Issue(ctx context.Context, c Claims, d time.Duration) (string, time.Time, error) {
	if d <= 0 || d > MaxValidity {
		return "", time.Time{}, fmt.Errorf("validity must be between 0 and %s", MaxValidity)
	}
	switch c.Kind {
	case KindUser, KindDataplane, KindZone, KindService:
	case KindIngress:
		if c.Zone == "" || c.Subject == "" {
			return "", time.Time{}, errors.New("an ingress token names a zone and an ingress")
		}
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

// IssueClaims is Issue returning the signed claims too (the token id).
func (k *Keys) IssueClaims(ctx context.Context, c Claims, d time.Duration) (string, *Claims, error) {
	tok, _, err := k.Issue(ctx, c, d)
	if err != nil {
		return "", nil, err
	}
	out, err := k.Verify(ctx, tok)
	return tok, out, err
}

// Verify checks a token's signature, issuer, lifetime and revocation and
// returns its claims. A token signed by a key this control plane does not
// hold (another control plane's, a rotated-out generation, or forged)
// fails.
func (k *Keys) Verify(ctx context.Context, tok string) (*Claims, error) {
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return nil, &Error{Reason: "no token given"}
	}
	if len(tok) > MaxTokenSize {
		return nil, &Error{Reason: "token too large"}
	}
	if _, _, err := k.key(ctx); err != nil {
		return nil, err
	}
	k.refresh(ctx, false)
	k.cacheMu.Lock()
	cached, ok := k.verified[tok]
	k.cacheMu.Unlock()
	if ok {
		if !k.now().Before(cached.ExpiresAt.Add(30 * time.Second)) {
			return nil, &Error{Reason: "token expired"}
		}
		if err := k.checkRevoked(cached); err != nil {
			return nil, err
		}
		c := *cached
		return &c, nil
	}
	c := &Claims{}
	_, err := jwt.ParseWithClaims(tok, c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		priv, cur := k.current()
		if kid != cur {
			// Perhaps a key another replica rotated to: reload, at most
			// once per RefreshInterval however many such tokens arrive.
			k.refresh(ctx, true)
			if priv, cur = k.current(); kid != cur {
				return nil, errUnknownKey
			}
		}
		return &priv.PublicKey, nil
	}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(issuer), jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(k.now), jwt.WithLeeway(30*time.Second))
	switch {
	case err == nil:
	case errors.Is(err, errUnknownKey):
		return nil, &Error{Reason: "signed by a key this control plane does not hold (token from another control plane, signed before the signing key was rotated, or forged)"}
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
	if err := k.checkRevoked(c); err != nil {
		return nil, err
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

var errUnknownKey = errors.New("unknown signing key")

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

// VerifyIngress verifies an ingress token for the ingress name of zone.
// Any other kind of token (a dataplane's, a zone control plane's, an
// admin's) is refused, as is an ingress token of another zone or name.
func (k *Keys) VerifyIngress(ctx context.Context, tok, zone, name string) (*Claims, error) {
	c, err := k.Verify(ctx, tok)
	if err != nil {
		return nil, err
	}
	if c.Kind != KindIngress {
		return nil, &Error{Reason: fmt.Sprintf("a %s token is not an ingress token", c.Kind)}
	}
	if c.Zone == "" || c.Zone != zone || c.Subject != name {
		return nil, &Error{Reason: fmt.Sprintf("token is for ingress %s/%s, not %s/%s", c.Zone, c.Subject, zone, name)}
	}
	return c, nil
}

var jwtParser = jwt.NewParser()
