package inject

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/weftmesh/weft/k8s-controller/internal/annotations"
)

var testCfg = Config{Image: "weftmesh/weft-dp:test", CP: "weft-xds-server.weft-system:5678", CPCAConfigMap: "weft-cp-ca",
	DNSServer: netip.MustParseAddrPort("10.96.0.53:5653")}

func enabledNS() *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{annotations.Injection: annotations.Enabled}}}
}

func appPod() *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", GenerateName: "backend-", Labels: map[string]string{"app": "backend"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{
				{Name: "app", Image: "example/backend", Env: []corev1.EnvVar{{Name: "A", Value: "1"}}},
				{Name: "helper", Image: "example/helper"},
			},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
}

// apply runs the patch on pod the way the API server does.
func apply(t *testing.T, pod *corev1.Pod, ops []Op) *corev1.Pod {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := Patch(ops)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatch.DecodePatch(pb)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("patch does not apply: %v\n%s", err, pb)
	}
	var got corev1.Pod
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

func containerNames(cs []corev1.Container) []string {
	var n []string
	for _, c := range cs {
		n = append(n, c.Name)
	}
	return n
}

func TestMutateEnvoy(t *testing.T) {
	pod := appPod()
	pod.Annotations = map[string]string{annotations.ExcludeInboundPorts: "15021", annotations.Mesh: "payments"}
	ops, skip, err := Mutate(pod, enabledNS(), testCfg)
	if err != nil || skip != "" {
		t.Fatalf("Mutate: %v %q", err, skip)
	}
	got := apply(t, pod, ops)
	if n := containerNames(got.Spec.Containers); !slices.Equal(n, []string{"app", "helper", SidecarName}) {
		t.Fatalf("containers %v", n)
	}
	if n := containerNames(got.Spec.InitContainers); !slices.Equal(n, []string{InitName}) {
		t.Fatalf("init containers %v", n)
	}
	init := got.Spec.InitContainers[0]
	if want := []string{"iptables", "--apply", "--exclude-inbound-ports=15021", "--dns-server=10.96.0.53:5653"}; !slices.Equal(init.Args, want) {
		t.Errorf("init args %v, want %v", init.Args, want)
	}
	if caps := init.SecurityContext.Capabilities.Add; !slices.Contains(caps, "NET_ADMIN") {
		t.Errorf("init capabilities %v", caps)
	}
	sc := got.Spec.Containers[2]
	want := []string{"run", "--cp=weft-xds-server.weft-system:5678", "--mesh=payments", "--name=$(WEFT_POD_NAME).$(WEFT_POD_NAMESPACE)",
		"--token-file=/var/run/weft/token/token", "--proxy-type=envoy", "--workdir=/var/run/weft/dp", "--cp-ca-file=/var/run/weft/cp-ca/ca.pem"}
	if !slices.Equal(sc.Args, want) {
		t.Errorf("sidecar args\n got %v\nwant %v", sc.Args, want)
	}
	if *sc.SecurityContext.RunAsUser != 5678 {
		t.Errorf("sidecar runs as %d", *sc.SecurityContext.RunAsUser)
	}
	var vols []string
	for _, v := range got.Spec.Volumes {
		vols = append(vols, v.Name)
	}
	if !slices.Equal(vols, []string{"data", TokenVolume, WorkVolume, CPCAVolume}) {
		t.Errorf("volumes %v", vols)
	}
	if got.Annotations[annotations.Injected] != "envoy" || got.Annotations[annotations.Mesh] != "payments" {
		t.Errorf("annotations %v", got.Annotations)
	}
	// The application containers are untouched in Envoy mode.
	if len(got.Spec.Containers[0].Env) != 1 || got.Spec.Containers[1].Env != nil {
		t.Errorf("app env changed: %v %v", got.Spec.Containers[0].Env, got.Spec.Containers[1].Env)
	}
	// Injecting the result again changes nothing.
	if _, skip, _ := Mutate(got, enabledNS(), testCfg); skip == "" {
		t.Error("an injected pod was injected again")
	}
}

func TestMutateProxyless(t *testing.T) {
	pod := appPod()
	pod.Annotations = map[string]string{annotations.ProxyType: annotations.ProxyTypeGRPC}
	cfg := testCfg
	cfg.CPCAConfigMap = ""
	ops, skip, err := Mutate(pod, enabledNS(), cfg)
	if err != nil || skip != "" {
		t.Fatalf("Mutate: %v %q", err, skip)
	}
	got := apply(t, pod, ops)
	if len(got.Spec.InitContainers) != 0 {
		t.Errorf("proxyless pod got init containers %v", containerNames(got.Spec.InitContainers))
	}
	for _, c := range got.Spec.Containers[:2] {
		i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == BootstrapEnv })
		if i < 0 || c.Env[i].Value != "/var/run/weft/dp/bootstrap.json" {
			t.Errorf("%s env %v", c.Name, c.Env)
		}
		if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].Name != WorkVolume || !c.VolumeMounts[0].ReadOnly {
			t.Errorf("%s mounts %v", c.Name, c.VolumeMounts)
		}
	}
	if got.Spec.Containers[0].Env[0].Name != "A" {
		t.Errorf("existing env lost: %v", got.Spec.Containers[0].Env)
	}
	sc := got.Spec.Containers[2]
	if !slices.Contains(sc.Args, "--proxy-type=grpc") || slices.ContainsFunc(sc.Args, func(a string) bool { return strings.HasPrefix(a, "--cp-ca-file") }) {
		t.Errorf("sidecar args %v", sc.Args)
	}
	if got.Annotations[annotations.Injected] != "grpc" {
		t.Errorf("annotations %v", got.Annotations)
	}
}

func TestMutatePodWithoutVolumesOrAnnotations(t *testing.T) {
	pod := appPod()
	pod.Spec.Volumes = nil
	got := apply(t, pod, must(t, pod))
	if len(got.Spec.Volumes) != 3 || got.Annotations[annotations.Injected] != "envoy" {
		t.Errorf("volumes %v annotations %v", got.Spec.Volumes, got.Annotations)
	}
}

func must(t *testing.T, pod *corev1.Pod) []Op {
	t.Helper()
	ops, skip, err := Mutate(pod, enabledNS(), testCfg)
	if err != nil || skip != "" {
		t.Fatalf("Mutate: %v %q", err, skip)
	}
	return ops
}

func TestMutateSkipsAndRefuses(t *testing.T) {
	optOut := appPod()
	optOut.Annotations = map[string]string{annotations.Injection: annotations.Disabled}
	hostNet := appPod()
	hostNet.Spec.HostNetwork = true
	for name, c := range map[string]struct {
		pod *corev1.Pod
		ns  *corev1.Namespace
	}{
		"opted out":        {optOut, enabledNS()},
		"namespace not in": {appPod(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}},
		"unknown ns":       {appPod(), nil},
		"host network":     {hostNet, enabledNS()},
	} {
		ops, skip, err := Mutate(c.pod, c.ns, testCfg)
		if err != nil || skip == "" || ops != nil {
			t.Errorf("%s: ops %v skip %q err %v", name, ops, skip, err)
		}
	}
	for key, val := range map[string]string{annotations.ExcludeOutboundPorts: "443,http", annotations.ProxyType: "linkerd",
		annotations.InboundPorts: strings.Repeat("80,", 100) + "80"} {
		pod := appPod()
		pod.Annotations = map[string]string{key: val}
		if _, _, err := Mutate(pod, enabledNS(), testCfg); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s=%q: err %v", key, val, err)
		}
	}
}

func review(t *testing.T, srvURL string, pod *corev1.Pod) (*admissionv1.AdmissionReview, int) {
	t.Helper()
	raw, _ := json.Marshal(pod)
	rv := admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "u-1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "shop",
			Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw}}}
	body, _ := json.Marshal(rv)
	resp, err := http.Post(srvURL+Path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out admissionv1.AdmissionReview
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
	}
	return &out, resp.StatusCode
}

func TestInjectorServesReviews(t *testing.T) {
	reg := prometheus.NewRegistry()
	inj := NewInjector(testCfg, func(context.Context, string) (*corev1.Namespace, error) { return enabledNS(), nil }, slog.New(slog.DiscardHandler), reg)
	mux := http.NewServeMux()
	mux.Handle("POST "+Path, inj)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	out, code := review(t, srv.URL, appPod())
	if code != 200 || !out.Response.Allowed || out.Response.UID != "u-1" || out.Response.PatchType == nil || len(out.Response.Patch) == 0 {
		t.Fatalf("code %d response %+v", code, out.Response)
	}
	bad := appPod()
	bad.Annotations = map[string]string{annotations.ProxyType: "linkerd"}
	out, _ = review(t, srv.URL, bad)
	if out.Response.Allowed || !strings.Contains(out.Response.Result.Message, annotations.ProxyType) {
		t.Fatalf("bad pod: %+v", out.Response)
	}
	resp, err := http.Post(srv.URL+Path, "application/json", strings.NewReader(`{"kind":"nope"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("garbage: %d", resp.StatusCode)
	}
	for result, want := range map[string]float64{"injected": 1, "denied": 1, "bad_request": 1} {
		if got := testutil.ToFloat64(inj.reviews.WithLabelValues(result)); got != want {
			t.Errorf("%s = %v, want %v", result, got, want)
		}
	}
}

// FuzzMutate: whatever a pod's annotations say, Mutate returns an error or
// a patch that applies to the pod.
func FuzzMutate(f *testing.F) {
	f.Add("enabled", "grpc", "80,443", "15021", "")
	f.Add("", "envoy", "", "", "9090")
	f.Add("enabled", "x", "0", "a,b", strings.Repeat("1,", 70))
	f.Fuzz(func(t *testing.T, injection, proxyType, inbound, exclIn, exclOut string) {
		pod := appPod()
		pod.Annotations = map[string]string{annotations.Injection: injection, annotations.ProxyType: proxyType,
			annotations.InboundPorts: inbound, annotations.ExcludeInboundPorts: exclIn, annotations.ExcludeOutboundPorts: exclOut}
		ops, skip, err := Mutate(pod, enabledNS(), testCfg)
		if err != nil || skip != "" {
			return
		}
		got := apply(t, pod, ops)
		if !slices.Contains(containerNames(got.Spec.Containers), SidecarName) {
			t.Fatalf("no sidecar after the patch")
		}
	})
}
