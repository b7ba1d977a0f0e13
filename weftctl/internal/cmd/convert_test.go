package cmd_test

import (
	"strings"
	"testing"
)

// A Kuma 0.6 document: kuma.io/ tags, a conf list TrafficRoute and a
// builtin CA with conf.caCert.RSAbits.
const kumaManifest = `type: TrafficRoute
name: route-1
mesh: default
sources:
- match:
    kuma.io/service: backend
destinations:
- match:
    kuma.io/service: redis
conf:
- weight: 100
  destination:
    kuma.io/service: redis
---
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
    conf:
      caCert:
        RSAbits: 2048
`

func TestConvertFromKuma(t *testing.T) {
	h := newHarness(t)
	h.env["WEFT_CP"] = "http://127.0.0.1:1" // convert contacts no control plane
	f := h.writeFile("kuma.yaml", kumaManifest)
	r := h.ok("", "convert", "--from-kuma", f)
	for _, w := range []string{"type: Mesh", "keyType: rsa", "rsaBits: 2048", "split:", "weft.io/service: redis", "---"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("output lacks %q:\n%s", w, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "kuma.io") || strings.Index(r.stdout, "type: Mesh") > strings.Index(r.stdout, "type: TrafficRoute") {
		t.Errorf("output has Kuma tags or the mesh is not first:\n%s", r.stdout)
	}
	// The canonical form is what apply reads back unchanged, without --from-kuma.
	again := h.ok(r.stdout, "convert", "-")
	if again.stdout != r.stdout {
		t.Errorf("converting the canonical form changed it:\n%s\nvs\n%s", again.stdout, r.stdout)
	}

	// Without --from-kuma the Kuma tags are refused, with the fix named.
	bad := h.run("", "convert", f)
	if bad.code == 0 || !strings.Contains(bad.stderr, "--from-kuma") || bad.stdout != "" {
		t.Fatalf("convert without --from-kuma: exit %d\nstdout:\n%s\nstderr:\n%s", bad.code, bad.stdout, bad.stderr)
	}
}

func TestConvertShowsEveryDecodeProblemWithLines(t *testing.T) {
	h := newHarness(t)
	r := h.run("type: Mesh\nname: a\n---\ntype: Dataplane\nmesh: a\nname: d\nnetworking:\n  address: 10.0.0.1\n  bogus: 1\n  inbound:\n  - port: x\n", "convert", "-")
	if r.code == 0 {
		t.Fatalf("accepted:\n%s", r.stdout)
	}
	for _, w := range []string{"document 2", "line 9: networking.bogus: unknown field", "line 11: networking.inbound[0].port: must be an integer"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
		}
	}
}

func TestApplyFromKuma(t *testing.T) {
	h := newHarness(t)
	r := h.ok(kumaManifest, "apply", "--from-kuma", "-f", "-")
	if !strings.Contains(r.stdout, "created Mesh default") || !strings.Contains(r.stdout, "created TrafficRoute default/route-1") {
		t.Fatalf("apply:\n%s", r.stdout)
	}
	got := h.ok("", "get", "traffic-route", "route-1", "--mesh", "default", "-o", "yaml")
	if !strings.Contains(got.stdout, "weft.io/service: redis") || strings.Contains(got.stdout, "kuma.io") {
		t.Fatalf("stored form:\n%s", got.stdout)
	}
}
