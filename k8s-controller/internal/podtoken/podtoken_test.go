package podtoken

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestSecretName(t *testing.T) {
	if got := SecretName("backend-0"); got != "weft-dp-token-backend-0" {
		t.Errorf("short: %q", got)
	}
	a := strings.Repeat("a", 250)
	b := strings.Repeat("a", 249) + "b"
	na, nb := SecretName(a), SecretName(b)
	if na == nb {
		t.Errorf("two long pod names share a Secret: %q", na)
	}
	for _, n := range []string{na, nb, SecretName(strings.Repeat("a.", 120) + "z")} {
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 || !strings.HasPrefix(n, Prefix) {
			t.Errorf("%q: %v", n, errs)
		}
	}
}
