package annotations

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The annotation names are in every manifest that uses Kubernetes mode:
// pinned.
func TestNamesPinned(t *testing.T) {
	for got, want := range map[string]string{
		Injection: "weft.io/sidecar-injection", Enabled: "enabled", Disabled: "disabled", Mesh: "weft.io/mesh", DefaultMesh: "default",
		ProxyType: "weft.io/proxy-type", ProxyTypeEnvoy: "envoy", ProxyTypeGRPC: "grpc", Service: "weft.io/service",
		Protocol: "weft.io/protocol", InboundPorts: "weft.io/transparent-inbound-ports", ExcludeInboundPorts: "weft.io/exclude-inbound-ports",
		ExcludeOutboundPorts: "weft.io/exclude-outbound-ports", Injected: "weft.io/injected", ManagedBy: "k8s.weft.io/managed-by",
		ManagedByValue: "k8s-controller", NamespaceTag: "k8s.weft.io/namespace",
	} {
		if got != want {
			t.Errorf("%q, pinned %q", got, want)
		}
	}
}

func TestInMeshAndMesh(t *testing.T) {
	pod := func(ann map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: ann}}
	}
	labelled := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{Injection: Enabled}}}
	annotated := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{Injection: Enabled, Mesh: "payments"}}}
	plain := &corev1.Namespace{}
	for _, c := range []struct {
		pod  *corev1.Pod
		ns   *corev1.Namespace
		want bool
	}{
		{pod(nil), labelled, true}, {pod(nil), annotated, true}, {pod(nil), plain, false}, {pod(nil), nil, false},
		{pod(map[string]string{Injection: Disabled}), labelled, false},
		{pod(map[string]string{Injection: Enabled}), plain, true},
		{pod(map[string]string{Injection: "yes"}), labelled, false}, // only "enabled" opts in
	} {
		if got := InMesh(c.pod, c.ns); got != c.want {
			t.Errorf("InMesh(%v, %v) = %v", c.pod.Annotations, c.ns, got)
		}
	}
	if MeshOf(pod(nil), annotated) != "payments" || MeshOf(pod(map[string]string{Mesh: "m"}), annotated) != "m" || MeshOf(pod(nil), nil) != DefaultMesh {
		t.Error("MeshOf")
	}
}
