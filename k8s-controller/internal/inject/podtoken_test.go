package inject

import (
	"strings"
	"testing"

	"github.com/weftmesh/weft/k8s-controller/internal/podtoken"
)

func tokenSecretOf(t *testing.T, cfg Config, name string) (string, string) {
	t.Helper()
	pod := appPod()
	pod.Name = name
	ops, skip, err := Mutate(pod, enabledNS(), cfg)
	if err != nil || skip != "" {
		t.Fatalf("mutate: %v %q", err, skip)
	}
	got := apply(t, pod, ops)
	for _, v := range got.Spec.Volumes {
		if v.Name == TokenVolume {
			return got.Name, v.Secret.SecretName
		}
	}
	t.Fatal("no token volume")
	return "", ""
}

// With PodTokens, the pod mounts its own Secret, named after the pod; a
// pod with only generateName is named by the webhook first.
func TestMutatePodTokens(t *testing.T) {
	cfg := testCfg
	cfg.PodTokens = true
	name, secret := tokenSecretOf(t, cfg, "backend-0")
	if name != "backend-0" || secret != "weft-dp-token-backend-0" {
		t.Errorf("named pod: %q mounts %q", name, secret)
	}

	cfg.rand = func(b []byte) {
		for i := range b {
			b[i] = byte(i)
		}
	}
	name, secret = tokenSecretOf(t, cfg, "")
	if name != "backend-bcdfg" || secret != podtoken.SecretName(name) {
		t.Errorf("generateName pod: named %q, mounts %q", name, secret)
	}

	// Without PodTokens: the shared Secret, the name left to the API server.
	name, secret = tokenSecretOf(t, testCfg, "")
	if name != "" || secret != DefaultSecret {
		t.Errorf("shared token: named %q, mounts %q", name, secret)
	}

	// No name at all is refused (the API server would refuse it too).
	pod := appPod()
	pod.GenerateName = ""
	if _, _, err := Mutate(pod, enabledNS(), cfg); err == nil || !strings.Contains(err.Error(), "metadata.name") {
		t.Errorf("no name: %v", err)
	}
}

// Generated names are cut as the API server cuts them and use its
// alphabet.
func TestGenerateName(t *testing.T) {
	long := strings.Repeat("a", 100) + "-"
	n := generateName(long, nil)
	if len(n) != 63 || !strings.HasPrefix(n, strings.Repeat("a", 58)) {
		t.Errorf("%q (%d)", n, len(n))
	}
	for _, c := range n[58:] {
		if !strings.ContainsRune(nameChars, c) {
			t.Errorf("%q: %q is not a generated-name character", n, c)
		}
	}
	if a, b := generateName("x-", nil), generateName("x-", nil); a == b {
		t.Errorf("two generated names are equal: %q", a)
	}
}
