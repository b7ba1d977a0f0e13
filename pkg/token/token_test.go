package token_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/token"
)

func newStore(t testing.TB) *store.Store {
	keys, _ := seal.New(seal.Key{ID: "k", Bytes: bytes.Repeat([]byte{1}, 32)})
	return store.New(etcdtest.Client(t, nil), store.WithKeyring(keys))
}

func TestIssueVerify(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	now := time.Now()
	clock := func() time.Time { return now }
	k := token.New(st).WithClock(clock)
	tok, _, err := k.Issue(ctx, token.Claims{Kind: token.KindDataplane, Mesh: "m", RegisteredClaims: jwtSubject("dp-1")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// A second instance (another replica) verifies with the same stored key.
	other := token.New(st).WithClock(clock)
	if _, err := other.VerifyDataplane(ctx, tok, "m", "dp-1"); err != nil {
		t.Fatalf("verify: %v", err)
	}
	for name, check := range map[string]func() error{
		"other dataplane": func() error { _, err := other.VerifyDataplane(ctx, tok, "m", "dp-2"); return err },
		"other mesh":      func() error { _, err := other.VerifyDataplane(ctx, tok, "x", "dp-1"); return err },
		"as zone token":   func() error { _, err := other.VerifyZone(ctx, tok, "z"); return err },
		"tampered":        func() error { _, err := other.Verify(ctx, tok[:len(tok)-4]+"AAAA"); return err },
		"garbage":         func() error { _, err := other.Verify(ctx, "not.a.token"); return err },
		"expired": func() error {
			_, err := token.New(st).WithClock(func() time.Time { return now.Add(2 * time.Hour) }).Verify(ctx, tok)
			return err
		},
		"foreign key": func() error { _, err := token.New(newStore(t)).Verify(ctx, tok); return err },
	} {
		if err := check(); !token.IsInvalid(err) {
			t.Errorf("%s: got %v, want invalid token", name, err)
		}
	}
}

func TestRacingReplicasShareOneKey(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	var wg sync.WaitGroup
	toks := make([]string, 8)
	for i := range toks {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			tok, _, err := token.New(st).Issue(ctx, token.Claims{Kind: token.KindZone, Zone: "z", RegisteredClaims: jwtSubject("z")}, time.Hour)
			if err != nil {
				t.Error(err)
			}
			toks[i] = tok
		}(i)
	}
	wg.Wait()
	v := token.New(st)
	for i, tok := range toks {
		if _, err := v.VerifyZone(ctx, tok, "z"); err != nil {
			t.Errorf("token %d from a racing replica does not verify: %v", i, err)
		}
	}
}

func TestCachedTokenStillExpires(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	k := token.New(newStore(t)).WithClock(func() time.Time { return now })
	tok, _, err := k.Issue(ctx, token.Claims{Kind: token.KindUser, RegisteredClaims: jwtSubject("u")}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	if _, err := k.Verify(ctx, tok); !token.IsInvalid(err) {
		t.Fatalf("cached token verified after expiry: %v", err)
	}
}
