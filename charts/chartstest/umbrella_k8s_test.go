package chartstest

import (
	"path/filepath"
	"strings"
	"testing"
)

// The umbrella chart installs k8s-controller only when asked
// (k8s-controller.enabled, default false): then with its CRDs (Helm
// installs a dependency's crds/), its webhooks and its ClusterRole, which
// may write Secrets (per-pod tokens) but never read them.
func TestUmbrellaInstallsK8sControllerBehindAValue(t *testing.T) {
	helm := needHelm(t)
	chart := filepath.Join(preparedCharts(t), umbrella)
	render := func(extra ...string) string {
		t.Helper()
		args := append([]string{"template", releaseName, chart, "--namespace", namespace}, extra...)
		out, err := runHelm(helm, args...)
		if err != nil {
			t.Fatalf("helm %v: %v\n%s", args, err, out)
		}
		return out
	}
	off := render("--include-crds")
	if strings.Contains(off, "k8s-controller") || strings.Contains(off, "kind: CustomResourceDefinition") {
		t.Error("k8s-controller (or a CRD) rendered by default")
	}
	on := render("--set", "k8s-controller.enabled=true", "--include-crds")
	crds, err := filepath.Glob(filepath.Join(chartsDir(t), "k8s-controller", "crds", "*.yaml"))
	if err != nil || len(crds) == 0 {
		t.Fatalf("no CRDs in charts/k8s-controller/crds: %v", err)
	}
	if got := strings.Count(on, "kind: CustomResourceDefinition"); got != len(crds) {
		t.Errorf("%d CRDs rendered, want %d", got, len(crds))
	}
	objs, err := decodeStrict(render("--set", "k8s-controller.enabled=true"))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, o := range objs {
		kinds[o.kind+"/"+o.name] = true
	}
	for _, want := range []string{"Deployment/weft-k8s-controller", "ClusterRole/weft-k8s-controller",
		"ValidatingWebhookConfiguration/weft-k8s-controller", "MutatingWebhookConfiguration/weft-k8s-controller-inject"} {
		if !kinds[want] {
			t.Errorf("no %s in %v", want, kinds)
		}
	}
	// Least privilege on Secrets: create/update/delete only.
	if !strings.Contains(on, `resources: ["secrets"]`+"\n"+`    verbs: ["create", "update", "delete"]`) {
		t.Error("the ClusterRole's Secrets rule is not create/update/delete")
	}
}
