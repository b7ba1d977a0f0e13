package token_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/token"
)

// FuzzVerify: arbitrary bearer strings (API headers, xDS node metadata,
// POST /tokens/revoke bodies) never panic, never verify unless genuine,
// and ParseUnverified stays within MaxTokenSize.
func FuzzVerify(f *testing.F) {
	st := newStore(f)
	k := token.New(st)
	ctx := context.Background()
	good, _, err := k.Issue(ctx, dataplaneClaims("m", "dp-1"), time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{good, good[:len(good)/2], "a.b.c", "", "eyJhbGciOiJub25lIn0.e30.", strings.Repeat("A", token.MaxTokenSize+1)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := k.Verify(ctx, s)
		if err == nil && strings.TrimSpace(s) != good {
			t.Fatalf("a token that was never issued verified: %q → %+v", s, c)
		}
		if err != nil && !token.IsInvalid(err) {
			t.Fatalf("Verify(%q) = %v, want an invalid-token error", s, err)
		}
		if _, _, err := token.ParseUnverified(s); err != nil && !token.IsInvalid(err) {
			t.Fatalf("ParseUnverified(%q) = %v", s, err)
		}
	})
}
