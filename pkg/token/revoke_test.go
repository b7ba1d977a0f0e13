package token_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/etcdembed"
	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/token"
)

func dataplaneClaims(mesh, name string) token.Claims {
	return token.Claims{Kind: token.KindDataplane, Mesh: mesh, RegisteredClaims: jwtSubject(name)}
}

// Forged tokens, whether they name the current key id (bad signature) or
// an unknown one, cost no etcd read per request: 300 of each cause at most
// one key reload.
func TestForgedTokensDoNotReadTheStore(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	var reads atomic.Int64
	k := token.New(st).WithReadHook(func(string) { reads.Add(1) })
	good, _, err := k.Issue(ctx, dataplaneClaims("m", "dp-1"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _, err := token.New(newStore(t)).Issue(ctx, dataplaneClaims("m", "dp-1"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	badSig := good[:len(good)-6] + "AAAAAA"
	base := reads.Load()
	start := time.Now()
	for i := 0; i < 300; i++ {
		for _, tok := range []string{badSig, foreign} {
			if _, err := k.Verify(ctx, tok); !token.IsInvalid(err) {
				t.Fatalf("forged token: got %v, want invalid", err)
			}
		}
	}
	// At most one unknown-key reload and one periodic refresh (2 reads
	// each) can fall in the window, however long the loop took.
	periods := int64(time.Since(start)/token.RefreshInterval) + 1
	if got := reads.Load() - base; got > 4*periods {
		t.Fatalf("600 forged verifications read the store %d times in %s, want at most %d", got, time.Since(start), 4*periods)
	}
	t.Logf("600 forged verifications: %d store reads", reads.Load()-base)
}

// With etcd down, verification neither hangs nor fails for a valid token:
// it uses the key it holds; refreshes are bounded by RefreshTimeout.
func TestVerifyWithEtcdDown(t *testing.T) {
	ctx := context.Background()
	// Not etcdtest.Start: this test stops the server itself.
	srv, err := etcdembed.Start(ctx, etcdembed.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() { once.Do(srv.Close) }
	t.Cleanup(stop)
	keyring, _ := seal.New(seal.Key{ID: "k", Bytes: bytes.Repeat([]byte{1}, 32)})
	st := store.New(etcdtest.Client(t, srv), store.WithKeyring(keyring))
	k := token.New(st)
	good, _, err := k.Issue(ctx, dataplaneClaims("m", "dp-1"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _, err := token.New(newStore(t)).Issue(ctx, dataplaneClaims("m", "dp-1"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	start := time.Now()
	for i := 0; i < 300; i++ {
		if _, err := k.Verify(ctx, foreign); !token.IsInvalid(err) {
			t.Fatalf("foreign token with etcd down: got %v, want invalid", err)
		}
		if _, err := k.Verify(ctx, good); err != nil {
			t.Fatalf("valid token with etcd down: %v", err)
		}
	}
	// Generous: a loaded machine; the bound is what matters (no hang).
	if d := time.Since(start); d > 3*token.RefreshTimeout+10*time.Second {
		t.Fatalf("600 verifications with etcd down took %s", d)
	}
}

func TestRevokeByID(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	admin := token.New(st)
	other := token.New(st) // another replica: learns of it by refresh
	tok, c, err := admin.IssueClaims(ctx, dataplaneClaims("m", "dp-1"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keep, _, err := admin.Issue(ctx, dataplaneClaims("m", "dp-2"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Revoke(ctx, c.ID, c.ExpiresAt.Time); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Verify(ctx, tok); !token.IsInvalid(err) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("revoking replica: got %v, want revoked", err)
	}
	waitInvalid(t, other, tok, "revoked")
	if _, err := other.Verify(ctx, keep); err != nil {
		t.Fatalf("another token: %v", err)
	}
	id, exp, err := token.ParseUnverified(tok)
	if err != nil || id != c.ID || !exp.Equal(c.ExpiresAt.Time) {
		t.Fatalf("ParseUnverified = %q %v %v, want %q %v", id, exp, err, c.ID, c.ExpiresAt.Time)
	}
}

func TestRotateSigningKey(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	admin := token.New(st)
	other := token.New(st)
	old, _, err := admin.Issue(ctx, dataplaneClaims("m", "dp-1"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Verify(ctx, old); err != nil {
		t.Fatal(err)
	}
	gen, kid, err := admin.Rotate(ctx)
	if err != nil || gen != 2 || kid == "" {
		t.Fatalf("Rotate = %d %q %v, want generation 2", gen, kid, err)
	}
	if _, err := admin.Verify(ctx, old); !token.IsInvalid(err) {
		t.Fatalf("old-generation token on the rotating replica: %v", err)
	}
	// The other replica verified (and cached) the old token: the new key
	// reaches it by refresh, or at once through a new-generation token.
	waitInvalid(t, other, old, "does not hold")
	fresh, _, err := admin.Issue(ctx, dataplaneClaims("m", "dp-1"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Verify(ctx, fresh); err != nil {
		t.Fatalf("new-generation token: %v", err)
	}
	if g := other.Generation(); g != 2 {
		t.Fatalf("other replica generation %d, want 2", g)
	}
	// A restarted verifier reads generation 2.
	if _, err := token.New(st).Verify(ctx, old); !token.IsInvalid(err) {
		t.Fatalf("old token on a fresh verifier: %v", err)
	}
}

func waitInvalid(t *testing.T, k *token.Keys, tok, reason string) {
	t.Helper()
	deadline := time.Now().Add(10*token.RefreshInterval + 10*time.Second)
	for {
		_, err := k.Verify(context.Background(), tok)
		if token.IsInvalid(err) && strings.Contains(err.Error(), reason) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("token still verifies (err %v), want %q", err, reason)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}
}

func TestCheckServices(t *testing.T) {
	bound := token.Claims{Kind: token.KindDataplane, Mesh: "default", Services: []string{"web"}, RegisteredClaims: jwtSubject("web-1")}
	tagged := token.Claims{Kind: token.KindDataplane, Mesh: "default", Tags: map[string]string{"weft.io/service": "web"}, RegisteredClaims: jwtSubject("web-1")}
	legacy := token.Claims{Kind: token.KindDataplane, Mesh: "default", RegisteredClaims: jwtSubject("web-1")}
	unbound := token.Claims{Kind: token.KindDataplane, Mesh: "default", Unbound: true, RegisteredClaims: jwtSubject("web-1")}
	user := token.Claims{Kind: token.KindUser, RegisteredClaims: jwtSubject("admin")}
	for _, tc := range []struct {
		name     string
		c        token.Claims
		services []string
		bad      string // the service named in the error; "" = allowed
	}{
		{"bound, own service", bound, []string{"web"}, ""},
		{"bound, nothing", bound, nil, ""},
		{"bound, other service", bound, []string{"web", "backend"}, "backend"},
		{"tag-bound, own", tagged, []string{"web"}, ""},
		{"tag-bound, other", tagged, []string{"backend"}, "backend"},
		{"legacy token binds nothing", legacy, []string{"web"}, "web"},
		{"unbound", unbound, []string{"web", "admin-api"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.CheckServices(tc.services)
			var be *token.BindingError
			switch {
			case tc.bad == "" && err != nil:
				t.Fatalf("CheckServices(%q) = %v, want nil", tc.services, err)
			case tc.bad != "" && (!errors.As(err, &be) || be.Service != tc.bad):
				t.Fatalf("CheckServices(%q) = %v, want a binding error naming %q", tc.services, err, tc.bad)
			case tc.bad != "" && !strings.Contains(err.Error(), "--service "+tc.bad):
				t.Fatalf("error %q does not say how to fix it", err)
			}
		})
	}
	if err := user.CheckServices([]string{"web"}); !token.IsInvalid(err) {
		t.Fatalf("user token: %v", err)
	}
}

// TestChangedFiresOnRevocationAndRotation: a verifier's Changed channel
// closes when Poll reads a revocation another replica wrote, and when the
// signing key is rotated; it stays open while nothing changes.
func TestChangedFiresOnRevocationAndRotation(t *testing.T) {
	st := newStore(t)
	issuer, verifier := token.New(st), token.New(st)
	ctx := context.Background()
	cl := token.Claims{Kind: token.KindUser}
	cl.Subject = "u"
	tok, _, err := issuer.Issue(ctx, cl, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := verifier.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	ch := verifier.Changed()
	verifier.Poll(ctx)
	select {
	case <-ch:
		t.Fatal("Changed closed with nothing changed")
	case <-time.After(3 * token.RefreshInterval):
	}
	if _, err := issuer.Revoke(ctx, c.ID, time.Time{}); err != nil {
		t.Fatal(err)
	}
	waitClosed := func(what string, ch <-chan struct{}) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			verifier.Poll(ctx)
			select {
			case <-ch:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("Changed did not close after %s", what)
			}
		}
	}
	waitClosed("a revocation", ch)
	if _, err := verifier.Verify(ctx, tok); !token.IsInvalid(err) {
		t.Fatalf("revoked token verifies: %v", err)
	}
	ch = verifier.Changed()
	if _, _, err := issuer.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	waitClosed("a key rotation", ch)
}
