package pods

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftmesh/weft/k8s-controller/internal/annotations"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

func meshNS(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{annotations.Injection: annotations.Enabled}}}
}

func runningPod(ns, name, ip string, ready bool, labels map[string]string) *corev1.Pod {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, Annotations: map[string]string{}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Ports: []corev1.ContainerPort{
			{Name: "grpc", ContainerPort: 9090}, {Name: "metrics", ContainerPort: 9102}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}},
	}
}

func service(ns, name string, selector map[string]string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Selector: selector, Ports: ports}}
}

func ptr[T any](v T) *T { return &v }

func dataplaneJSON(t *testing.T, dp *meshv1.Dataplane) string {
	t.Helper()
	b, err := protojson.MarshalOptions{}.Marshal(dp)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestBuildTagsInboundsAndHealth(t *testing.T) {
	pod := runningPod("shop", "backend-7d9f-abc", "10.1.2.3", true, map[string]string{"app": "backend", "version": "v2",
		"weft.io/zone": "forged", "empty": ""})
	svcs := []*corev1.Service{
		service("shop", "backend", map[string]string{"app": "backend"},
			corev1.ServicePort{Name: "grpc", Port: 80, TargetPort: intstr.FromString("grpc"), AppProtocol: ptr("grpc")},
			corev1.ServicePort{Name: "metrics", Port: 9102, AppProtocol: ptr("http")},
			corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}),
		service("shop", "other", map[string]string{"app": "frontend"}, corev1.ServicePort{Port: 8080}),
		service("elsewhere", "backend", map[string]string{"app": "backend"}, corev1.ServicePort{Port: 7070}),
	}
	r, err := Build(pod, meshNS("shop"), svcs, "zone-1")
	if err != nil {
		t.Fatal(err)
	}
	if r.Meta.GetName() != "backend-7d9f-abc.shop" || r.Meta.GetMesh() != "default" || r.Meta.GetOrigin() != "zone-1" ||
		r.Meta.GetLabels()[annotations.ManagedBy] != annotations.ManagedByValue {
		t.Errorf("meta %v", r.Meta)
	}
	got := dataplaneJSON(t, r.Spec.(*meshv1.Dataplane))
	want := `{"networking":{"address":"10.1.2.3","inbound":[` +
		`{"port":9090,"tags":{"app":"backend","k8s.weft.io/namespace":"shop","version":"v2","weft.io/protocol":"grpc","weft.io/service":"backend","weft.io/zone":"zone-1"},"health":{"ready":true}},` +
		`{"port":9102,"tags":{"app":"backend","k8s.weft.io/namespace":"shop","version":"v2","weft.io/protocol":"http","weft.io/service":"backend-metrics","weft.io/zone":"zone-1"},"health":{"ready":true}}]}}`
	if normalize(t, got) != normalize(t, want) {
		t.Errorf("dataplane\n got %s\nwant %s", got, want)
	}

	// Unready: same inbounds, health false.
	pod.Status.Conditions[0].Status = corev1.ConditionFalse
	r, err = Build(pod, meshNS("shop"), svcs, "zone-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range r.Spec.(*meshv1.Dataplane).GetNetworking().GetInbound() {
		if in.GetHealth() == nil || in.GetHealth().GetReady() {
			t.Errorf("unready pod: inbound %d health %v", in.GetPort(), in.GetHealth())
		}
	}
}

func normalize(t *testing.T, s string) string {
	t.Helper()
	var dp meshv1.Dataplane
	if err := protojson.Unmarshal([]byte(s), &dp); err != nil {
		t.Fatal(err)
	}
	b, _ := protojson.MarshalOptions{}.Marshal(&dp)
	return string(b)
}

func TestBuildNamingOverridesAndProxyTypes(t *testing.T) {
	svc := service("shop", "backend", map[string]string{"app": "backend"}, corev1.ServicePort{Port: 9090, AppProtocol: ptr("example.com/custom")})
	svc.Annotations = map[string]string{annotations.Service: "orders", annotations.Protocol: "http2"}
	pod := runningPod("shop", "p", "10.0.0.9", true, map[string]string{"app": "backend"})
	pod.Annotations[annotations.Mesh] = "payments"
	check := func(wantService, wantProto string, wantTP bool) {
		t.Helper()
		r, err := Build(pod, meshNS("shop"), []*corev1.Service{svc}, "")
		if err != nil {
			t.Fatal(err)
		}
		dp := r.Spec.(*meshv1.Dataplane)
		in := dp.GetNetworking().GetInbound()[0]
		if in.GetTags()["weft.io/service"] != wantService || in.GetTags()["weft.io/protocol"] != wantProto || r.Meta.GetMesh() != "payments" {
			t.Errorf("tags %v mesh %s, want service %s protocol %s", in.GetTags(), r.Meta.GetMesh(), wantService, wantProto)
		}
		if _, ok := in.GetTags()["weft.io/zone"]; ok {
			t.Errorf("zone tag without a zone: %v", in.GetTags())
		}
		if (dp.GetNetworking().GetTransparentProxying() != nil) != wantTP {
			t.Errorf("transparentProxying %v, want %v", dp.GetNetworking().GetTransparentProxying(), wantTP)
		}
	}
	check("orders", "http2", false) // the Service's annotations (unknown appProtocol)
	pod.Annotations[annotations.Service] = "orders-api"
	pod.Annotations[annotations.Protocol] = "grpc"
	pod.Annotations[annotations.Injected] = annotations.ProxyTypeEnvoy
	check("orders-api", "grpc", true) // the pod's win; an injected Envoy pod redirects
	pod.Annotations[annotations.ProxyType] = annotations.ProxyTypeGRPC
	check("orders-api", "grpc", false) // proxyless: no redirection
}

func TestBuildNotInMesh(t *testing.T) {
	svcs := []*corev1.Service{service("shop", "backend", map[string]string{"app": "backend"}, corev1.ServicePort{Port: 80})}
	plain := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}
	cases := map[string]func() (*corev1.Pod, *corev1.Namespace){
		"namespace not enabled": func() (*corev1.Pod, *corev1.Namespace) {
			return runningPod("shop", "p", "10.0.0.1", true, map[string]string{"app": "backend"}), plain
		},
		"pod opted out": func() (*corev1.Pod, *corev1.Namespace) {
			p := runningPod("shop", "p", "10.0.0.1", true, map[string]string{"app": "backend"})
			p.Annotations[annotations.Injection] = annotations.Disabled
			return p, meshNS("shop")
		},
		"no IP yet": func() (*corev1.Pod, *corev1.Namespace) {
			p := runningPod("shop", "p", "", false, map[string]string{"app": "backend"})
			p.Status.Phase = corev1.PodPending
			return p, meshNS("shop")
		},
		"finished": func() (*corev1.Pod, *corev1.Namespace) {
			p := runningPod("shop", "p", "10.0.0.1", false, map[string]string{"app": "backend"})
			p.Status.Phase = corev1.PodSucceeded
			return p, meshNS("shop")
		},
	}
	for name, mk := range cases {
		pod, ns := mk()
		if r, err := Build(pod, ns, svcs, "z"); !errors.Is(err, ErrNotInMesh) || r != nil {
			t.Errorf("%s: %v, %v; want ErrNotInMesh", name, r, err)
		}
	}
	// A pod annotated in, in a namespace that is not, is in.
	p := runningPod("shop", "p", "10.0.0.1", true, map[string]string{"app": "backend"})
	p.Annotations[annotations.Injection] = annotations.Enabled
	if _, err := Build(p, plain, svcs, "z"); err != nil {
		t.Errorf("pod opted in: %v", err)
	}
}

func TestBuildBadPodIsAPodError(t *testing.T) {
	svc := service("shop", "backend", map[string]string{"app": "backend"}, corev1.ServicePort{Port: 80})
	for reason, mutate := range map[string]func(*corev1.Pod, *corev1.Service){
		"bad-service-name": func(p *corev1.Pod, _ *corev1.Service) { p.Annotations[annotations.Service] = "Not_A_Label" },
		"bad-protocol":     func(p *corev1.Pod, _ *corev1.Service) { p.Annotations[annotations.Protocol] = "udp" },
		"no-service":       func(_ *corev1.Pod, s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "none"} },
		"bad-ip":           func(p *corev1.Pod, _ *corev1.Service) { p.Status.PodIP = "not-an-ip" },
		"invalid":          func(p *corev1.Pod, _ *corev1.Service) { p.Name = strings.Repeat("a", 250) },
	} {
		pod := runningPod("shop", "p", "10.0.0.1", true, map[string]string{"app": "backend"})
		s := svc.DeepCopy()
		mutate(pod, s)
		_, err := Build(pod, meshNS("shop"), []*corev1.Service{s}, "z")
		var pe *PodError
		if !errors.As(err, &pe) || pe.Reason != reason {
			t.Errorf("%s: err = %v", reason, err)
		}
	}
}

func TestBuildBoundsLabels(t *testing.T) {
	labels := map[string]string{"app": "backend"}
	for i := range 3 * MaxPodLabels {
		labels["l"+strings.Repeat("x", i%10)+string(rune('a'+i%26))+strings.Repeat("y", i/26)] = "v"
	}
	pod := runningPod("shop", "p", "10.0.0.1", true, labels)
	r, err := Build(pod, meshNS("shop"), []*corev1.Service{service("shop", "b", map[string]string{"app": "backend"}, corev1.ServicePort{Port: 80})}, "z")
	if err != nil {
		t.Fatal(err)
	}
	// MaxPodLabels copied, plus service, zone and namespace.
	if n := len(r.Spec.(*meshv1.Dataplane).GetNetworking().GetInbound()[0].GetTags()); n != MaxPodLabels+3 {
		t.Errorf("%d tags, want %d", n, MaxPodLabels+3)
	}
}
