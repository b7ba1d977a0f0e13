package token_test

import (
	"context"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/token"
)

func ingressClaims(zone, name string) token.Claims {
	return token.Claims{Kind: token.KindIngress, Zone: zone, RegisteredClaims: jwtSubject(name)}
}

// An ingress token verifies only as the ingress it names, and no other kind
// of token verifies as an ingress (nor an ingress token as a dataplane).
func TestVerifyIngress(t *testing.T) {
	ctx := context.Background()
	k := token.New(newStore(t))
	ing, _, err := k.Issue(ctx, ingressClaims("zone-1", "ingress"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := k.VerifyIngress(ctx, ing, "zone-1", "ingress")
	if err != nil || c.Zone != "zone-1" || c.Name() != "ingress" || c.Kind != token.KindIngress {
		t.Fatalf("VerifyIngress = %+v, %v", c, err)
	}
	dp, _, err := k.Issue(ctx, dataplaneClaims("zone-1", "ingress"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	zone, _, err := k.Issue(ctx, token.Claims{Kind: token.KindZone, Zone: "zone-1", RegisteredClaims: jwtSubject("zone-1")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _, err := token.New(newStore(t)).Issue(ctx, ingressClaims("zone-1", "ingress"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct{ tok, zone, name string }{
		"dataplane token":        {dp, "zone-1", "ingress"},
		"zone token":             {zone, "zone-1", "ingress"},
		"other zone":             {ing, "zone-2", "ingress"},
		"other name":             {ing, "zone-1", "ingress-2"},
		"another control plane":  {foreign, "zone-1", "ingress"},
		"empty zone is no match": {ing, "", "ingress"},
	} {
		if _, err := k.VerifyIngress(ctx, tc.tok, tc.zone, tc.name); !token.IsInvalid(err) {
			t.Errorf("%s: VerifyIngress = %v, want invalid", name, err)
		}
	}
	if _, err := k.VerifyDataplane(ctx, ing, "zone-1", "ingress"); !token.IsInvalid(err) {
		t.Errorf("an ingress token verified as a dataplane: %v", err)
	}
	if _, _, err := k.Issue(ctx, token.Claims{Kind: token.KindIngress, RegisteredClaims: jwtSubject("ingress")}, time.Hour); err == nil {
		t.Error("issued an ingress token without a zone")
	}
}
