package pods

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftmesh/weft/k8s-controller/internal/annotations"
)

// A pod's token binding is derived before it runs, by the Dataplane rule:
// the Services selecting it (or the annotation); a pod that is not
// injected, not in the mesh, finished or without a Service gets none.
func TestPodServices(t *testing.T) {
	ns := meshNS("shop")
	svcs := []*corev1.Service{
		service("shop", "backend", map[string]string{"app": "backend"},
			corev1.ServicePort{Name: "grpc", Port: 80, TargetPort: intstr.FromString("grpc")},
			corev1.ServicePort{Name: "metrics", Port: 9102}),
		service("shop", "web", map[string]string{"app": "web"}, corev1.ServicePort{Port: 8080}),
	}
	pending := func(labels map[string]string, ann map[string]string) *corev1.Pod {
		p := runningPod("shop", "backend-0", "", false, labels)
		p.Status = corev1.PodStatus{Phase: corev1.PodPending}
		p.Annotations = map[string]string{annotations.Injected: annotations.ProxyTypeEnvoy}
		for k, v := range ann {
			p.Annotations[k] = v
		}
		return p
	}
	mesh, got, ok := PodServices(pending(map[string]string{"app": "backend"}, nil), ns, svcs, "east")
	if !ok || mesh != "default" || !slices.Equal(got, []string{"backend", "backend-metrics"}) {
		t.Errorf("pending pod: %q %v %v", mesh, got, ok)
	}
	mesh, got, ok = PodServices(pending(map[string]string{"app": "backend"}, map[string]string{annotations.Service: "api", annotations.Mesh: "m2"}), ns, svcs, "east")
	if !ok || mesh != "m2" || !slices.Equal(got, []string{"api", "api-metrics"}) {
		t.Errorf("annotated pod: %q %v %v", mesh, got, ok)
	}
	notInjected := pending(map[string]string{"app": "backend"}, nil)
	delete(notInjected.Annotations, annotations.Injected)
	finished := pending(map[string]string{"app": "backend"}, nil)
	finished.Status.Phase = corev1.PodSucceeded
	for name, p := range map[string]*corev1.Pod{
		"not injected": notInjected,
		"finished":     finished,
		"no service":   pending(map[string]string{"app": "other"}, nil),
		"opted out":    pending(map[string]string{"app": "backend"}, map[string]string{annotations.Injection: annotations.Disabled}),
	} {
		if _, got, ok := PodServices(p, ns, svcs, "east"); ok {
			t.Errorf("%s: bound to %v", name, got)
		}
	}
}
