package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"time"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// RevocationsSecret names the GlobalSecret holding the deny-list of token
// ids (jti). Like the signing key it is internal to one control plane
// (cp-*): never served by the API and never synced between zones.
const RevocationsSecret = "cp-token-revocations"

// MaxRevoked bounds the deny-list. Entries are dropped once the token they
// name has expired; past this many live entries, rotate the signing key
// instead (which invalidates every token at once).
const MaxRevoked = 10000

// revocations is the stored form of the deny-list: token id → when the
// entry may be dropped (the token's expiry, or issue time + MaxValidity
// when unknown).
type revocations struct {
	Tokens map[string]time.Time `json:"tokens"`
}

func (k *Keys) loadRevocations(ctx context.Context) error {
	r, err := k.get(ctx, RevocationsSecret)
	if store.IsNotFound(err) {
		k.setRevoked(nil)
		return nil
	}
	if err != nil {
		return fmt.Errorf("read token revocations: %w", err)
	}
	var rv revocations
	if err := json.Unmarshal(r.Spec.(*meshv1.GlobalSecret).GetData(), &rv); err != nil {
		return fmt.Errorf("token revocations: %w", err)
	}
	k.setRevoked(rv.Tokens)
	return nil
}

// setRevoked installs a revocation list, telling Changed's holders when a
// token id was added (a removed one only ever names an expired token).
func (k *Keys) setRevoked(m map[string]time.Time) {
	k.mu.Lock()
	added := false
	for id := range m {
		if _, ok := k.revoked[id]; !ok {
			added = true
			break
		}
	}
	k.revoked = m
	k.mu.Unlock()
	if added {
		k.notifyChanged()
	}
}

func (k *Keys) checkRevoked(c *Claims) error {
	k.mu.RLock()
	_, revoked := k.revoked[c.ID]
	k.mu.RUnlock()
	if revoked && c.ID != "" {
		return &Error{Reason: fmt.Sprintf("token %s was revoked", c.ID)}
	}
	return nil
}

// Revoke adds a token id to the deny-list until until (zero: MaxValidity
// from now). Every verifier of this control plane refuses the token within
// RefreshInterval; this one at once.
func (k *Keys) Revoke(ctx context.Context, id string, until time.Time) (time.Time, error) {
	if id == "" || len(id) > 64 {
		return time.Time{}, fmt.Errorf("token id must be 1 to 64 characters")
	}
	now := k.now()
	if until.IsZero() {
		until = now.Add(MaxValidity)
	}
	// Keep the entry a little past expiry (verifiers allow 30s of skew).
	until = until.Add(time.Minute).UTC().Truncate(time.Second)
	for attempt := 0; attempt < 10; attempt++ {
		r, err := k.st.Get(ctx, resource.GlobalSecretType, "", RevocationsSecret)
		rv := revocations{}
		var version int64
		switch {
		case store.IsNotFound(err):
		case err != nil:
			return time.Time{}, fmt.Errorf("read token revocations: %w", err)
		default:
			version = r.Meta.GetVersion()
			if err := json.Unmarshal(r.Spec.(*meshv1.GlobalSecret).GetData(), &rv); err != nil {
				return time.Time{}, fmt.Errorf("token revocations: %w", err)
			}
		}
		if rv.Tokens == nil {
			rv.Tokens = map[string]time.Time{}
		}
		for t, u := range rv.Tokens {
			if u.Before(now) {
				delete(rv.Tokens, t)
			}
		}
		if u, ok := rv.Tokens[id]; !ok || u.Before(until) {
			rv.Tokens[id] = until
		}
		if len(rv.Tokens) > MaxRevoked {
			return time.Time{}, fmt.Errorf("%d tokens are already revoked: rotate the signing key instead (weftctl revoke signing-key)", MaxRevoked)
		}
		data, err := json.Marshal(rv)
		if err != nil {
			return time.Time{}, err
		}
		sec := resource.New(resource.GlobalSecretType, "", RevocationsSecret)
		sec.Spec = &meshv1.GlobalSecret{Data: data}
		if version == 0 {
			_, err = k.st.Create(ctx, sec)
		} else {
			sec.Meta.Version = version
			_, err = k.st.Update(ctx, sec)
		}
		if store.IsAlreadyExists(err) || store.IsConflict(err) {
			continue // another writer: read again
		}
		if err != nil {
			return time.Time{}, fmt.Errorf("store token revocations: %w", err)
		}
		k.setRevoked(rv.Tokens)
		return until, nil
	}
	return time.Time{}, fmt.Errorf("store token revocations: too many concurrent writers, try again")
}

// Rotate replaces the signing key with a new generation. Every token
// signed by an older one (all tokens issued so far: admin, dataplane,
// zone and service tokens) stops verifying on every verifier within
// RefreshInterval; this one at once. It returns the new generation and
// key id.
func (k *Keys) Rotate(ctx context.Context) (uint64, string, error) {
	if _, _, err := k.key(ctx); err != nil {
		return 0, "", err
	}
	r, err := k.st.Get(ctx, resource.GlobalSecretType, "", SigningKeySecret)
	if err != nil {
		return 0, "", fmt.Errorf("read token signing key: %w", err)
	}
	_, gen, err := decodeKey(r.Spec.(*meshv1.GlobalSecret).GetData())
	if err != nil {
		return 0, "", err
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return 0, "", err
	}
	data, err := encodeKey(priv, gen+1)
	if err != nil {
		return 0, "", err
	}
	sec := resource.New(resource.GlobalSecretType, "", SigningKeySecret)
	sec.Spec = &meshv1.GlobalSecret{Data: data}
	sec.Meta.Version = r.Meta.GetVersion()
	if _, err := k.st.Update(ctx, sec); err != nil {
		if store.IsConflict(err) {
			return 0, "", fmt.Errorf("the signing key changed meanwhile (another rotation): %w", err)
		}
		return 0, "", fmt.Errorf("store token signing key: %w", err)
	}
	k.setKey(priv, gen+1)
	_, kid := k.current()
	return gen + 1, kid, nil
}

// Generation is the generation of the signing key held (1 for the first).
func (k *Keys) Generation() uint64 {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.gen
}

// ParseUnverified reads a token's id and expiry without checking its
// signature: for revoking a token this control plane may no longer verify.
func ParseUnverified(tok string) (id string, exp time.Time, err error) {
	if len(tok) > MaxTokenSize {
		return "", time.Time{}, &Error{Reason: "token too large"}
	}
	c := &Claims{}
	if _, _, err := jwtParser.ParseUnverified(tok, c); err != nil {
		return "", time.Time{}, &Error{Reason: "malformed token"}
	}
	if c.ExpiresAt != nil {
		exp = c.ExpiresAt.Time
	}
	return c.ID, exp, nil
}
