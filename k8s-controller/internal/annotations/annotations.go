// Package annotations is the user-facing contract of Kubernetes mode: the
// annotations (and namespace labels) that put pods into the mesh, name their
// service and shape the injected sidecar, and the labels the controller
// puts on what it writes. The pods controller and the injection webhook read
// them from here; the values are pinned by a test (every manifest in the
// field uses them).
package annotations

import corev1 "k8s.io/api/core/v1"

const (
	// Injection is "enabled" or "disabled". On a namespace (label or
	// annotation) "enabled" puts its pods in the mesh; on a pod it opts in or
	// out (a pod's value wins over its namespace's). An opted-out pod is
	// neither injected nor made a Dataplane.
	Injection = "weft.io/sidecar-injection"
	Enabled   = "enabled"
	Disabled  = "disabled"

	// Mesh names the mesh (pod annotation, else namespace annotation, else
	// DefaultMesh).
	Mesh        = "weft.io/mesh"
	DefaultMesh = "default"

	// ProxyType is "envoy" (default: an Envoy sidecar with transparent
	// redirection) or "grpc" (a proxyless grpc-go application: weft-dp keeps
	// its xDS bootstrap and certificates, no redirection).
	ProxyType      = "weft.io/proxy-type"
	ProxyTypeEnvoy = "envoy"
	ProxyTypeGRPC  = "grpc"

	// Service overrides the derived weft.io/service of a pod's inbounds (on
	// the pod, or on a Service for the pods it selects; the pod wins).
	Service = "weft.io/service"
	// Protocol sets weft.io/protocol when the Service port has no
	// appProtocol (on the pod or the Service; the pod wins).
	Protocol = "weft.io/protocol"

	// Transparent proxy settings of the injected init container
	// (comma-separated ports; see weft-dp iptables).
	InboundPorts         = "weft.io/transparent-inbound-ports"
	ExcludeInboundPorts  = "weft.io/exclude-inbound-ports"
	ExcludeOutboundPorts = "weft.io/exclude-outbound-ports"

	// Injected is set by the webhook on the pods it injected (value: the
	// proxy type), so a second admission does not inject twice.
	Injected = "weft.io/injected"
)

// Labels and tags the controller writes.
const (
	// ManagedBy (Dataplane label) marks a Dataplane the pods controller
	// owns: only those are updated or deleted by it.
	ManagedBy      = "k8s.weft.io/managed-by"
	ManagedByValue = "k8s-controller"
	// NamespaceTag (inbound tag) is the pod's namespace.
	NamespaceTag = "k8s.weft.io/namespace"
)

// InMesh reports whether a pod belongs in the mesh: its own Injection
// annotation if set, else its namespace's (label or annotation). ns may be
// nil (unknown namespace: only the pod decides).
func InMesh(pod *corev1.Pod, ns *corev1.Namespace) bool {
	if v, ok := pod.Annotations[Injection]; ok {
		return v == Enabled
	}
	if ns == nil {
		return false
	}
	return ns.Labels[Injection] == Enabled || ns.Annotations[Injection] == Enabled
}

// MeshOf is the pod's mesh: its annotation, its namespace's, or DefaultMesh.
func MeshOf(pod *corev1.Pod, ns *corev1.Namespace) string {
	if m := pod.Annotations[Mesh]; m != "" {
		return m
	}
	if ns != nil && ns.Annotations[Mesh] != "" {
		return ns.Annotations[Mesh]
	}
	return DefaultMesh
}

// ProxyTypeOf is the pod's proxy type (ProxyTypeEnvoy unless annotated).
func ProxyTypeOf(pod *corev1.Pod) string {
	if pod.Annotations[ProxyType] == ProxyTypeGRPC {
		return ProxyTypeGRPC
	}
	return ProxyTypeEnvoy
}
