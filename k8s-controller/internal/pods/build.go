// Package pods turns the pods of the mesh into Dataplanes of this zone.
//
// Build is the pure rule (pod + namespace + Services → Dataplane); the
// Controller watches Pods, Services and Namespaces with client-go informers
// and writes the result through pkg/store, idempotently, owning only the
// Dataplanes it labelled (annotations.ManagedBy).
//
// Service naming: a pod's inbound for a Service port is tagged
// weft.io/service = the Service's name — no namespace, no port, so a
// Kubernetes Service `backend` and VMs registered as `backend` are one
// service. A weft.io/service annotation on the pod (or, for the pods it
// selects, on the Service) overrides it. A Service's further ports (after
// its first TCP port) are `<name>-<port name>`, since one service name has
// one port per endpoint.
package pods

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/weftmesh/weft/k8s-controller/internal/annotations"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/tproxy"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// MaxPodLabels bounds the pod labels copied into inbound tags (the first
// ones in key order; labels that are not valid tags are skipped).
const MaxPodLabels = 32

// ErrNotInMesh is why a pod has no Dataplane when that is its normal state:
// not in the mesh, not running, no IP yet.
var ErrNotInMesh = errors.New("not in the mesh")

// PodError is why a pod that is in the mesh cannot have a Dataplane.
type PodError struct{ Reason, Msg string }

func (e *PodError) Error() string { return e.Msg }

func podErr(reason, format string, args ...any) error {
	return &PodError{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// Name is the Dataplane name of a pod: `<pod>.<namespace>`.
func Name(namespace, pod string) string { return pod + "." + namespace }

// Build returns the Dataplane of pod in zone, given its namespace (nil if
// unknown) and the Services of its namespace. It returns ErrNotInMesh (wrapped)
// when the pod should have no Dataplane, a *PodError when it should but
// cannot (the reason is a short metric label).
func Build(pod *corev1.Pod, ns *corev1.Namespace, services []*corev1.Service, zone string) (*resource.Resource, error) {
	switch {
	case !annotations.InMesh(pod, ns):
		return nil, ErrNotInMesh
	case pod.DeletionTimestamp != nil && pod.Status.PodIP == "":
		return nil, fmt.Errorf("%w: terminating", ErrNotInMesh)
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		return nil, fmt.Errorf("%w: phase %s", ErrNotInMesh, pod.Status.Phase)
	case pod.Status.PodIP == "" || pod.Status.Phase != corev1.PodRunning:
		return nil, fmt.Errorf("%w: not running with an IP yet", ErrNotInMesh)
	}
	if net.ParseIP(pod.Status.PodIP) == nil {
		return nil, podErr("bad-ip", "status.podIP %q is not an IP address", pod.Status.PodIP)
	}
	mesh := annotations.MeshOf(pod, ns)
	ready := podReady(pod) && pod.DeletionTimestamp == nil

	base := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(pod.Labels)) {
		if len(base) == MaxPodLabels {
			break
		}
		if v := pod.Labels[k]; v != "" && v != resource.Wildcard && !strings.HasPrefix(k, "weft.io/") && !strings.HasPrefix(k, "k8s.weft.io/") {
			// Kubernetes label keys and values are valid tags; the weft.io/
			// ones are the controller's to set.
			base[k] = v
		}
	}
	base[annotations.NamespaceTag] = pod.Namespace
	if zone != "" {
		base[resource.ZoneTag] = zone
	}

	svcs := slices.Clone(services)
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].Name < svcs[j].Name })
	var inbounds []*meshv1.Dataplane_Networking_Inbound
	used := map[uint32]bool{}
	for _, svc := range svcs {
		if !selects(svc, pod) {
			continue
		}
		first := true
		for _, sp := range svc.Spec.Ports {
			if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
				continue
			}
			port, ok := targetPort(pod, sp)
			if !ok || used[port] {
				continue // a named port the pod does not have, or a port another Service already took
			}
			name := serviceName(pod, svc)
			if !first {
				suffix := sp.Name
				if suffix == "" {
					suffix = strconv.Itoa(int(sp.Port))
				}
				name += "-" + suffix
			}
			if !resource.IsLabel(name) {
				return nil, podErr("bad-service-name", "service name %q (Service %s port %d) must be a DNS label: lowercase letters, digits and '-', at most 63 characters; set the %s annotation",
					name, svc.Name, sp.Port, annotations.Service)
			}
			proto, err := protocol(pod, svc, sp)
			if err != nil {
				return nil, err
			}
			tags := maps.Clone(base)
			tags[resource.ServiceTag] = name
			if proto != "" {
				tags[resource.ProtocolTag] = proto
			}
			used[port] = true
			first = false
			inbounds = append(inbounds, &meshv1.Dataplane_Networking_Inbound{Port: port, Tags: tags,
				Health: &meshv1.Dataplane_Networking_Inbound_Health{Ready: ready}})
		}
	}
	if len(inbounds) == 0 {
		return nil, podErr("no-service", "no Service selects a TCP port of the pod: a Dataplane needs at least one inbound")
	}
	slices.SortFunc(inbounds, func(a, b *meshv1.Dataplane_Networking_Inbound) int { return int(a.Port) - int(b.Port) })
	dp := &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: pod.Status.PodIP, Inbound: inbounds}}
	if annotations.ProxyTypeOf(pod) == annotations.ProxyTypeEnvoy && pod.Annotations[annotations.Injected] != "" {
		dp.Networking.TransparentProxying = &meshv1.Dataplane_Networking_TransparentProxying{
			RedirectPortInbound: tproxy.DefaultInboundRedirectPort, RedirectPortOutbound: tproxy.DefaultOutboundRedirectPort}
	}
	r := &resource.Resource{
		Meta: &meshv1.Meta{Type: resource.DataplaneType.Name, Mesh: mesh, Name: Name(pod.Namespace, pod.Name), Origin: zone,
			Labels: map[string]string{annotations.ManagedBy: annotations.ManagedByValue}},
		Spec: dp,
	}
	if err := resource.Validate(r); err != nil {
		return nil, podErr("invalid", "%v", err)
	}
	return r, nil
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func selects(svc *corev1.Service, pod *corev1.Pod) bool {
	if svc.Namespace != pod.Namespace || len(svc.Spec.Selector) == 0 {
		return false
	}
	return labels.SelectorFromValidatedSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels))
}

// targetPort resolves a Service port's target in the pod the way the
// endpoints controller does: a number (default: the Service port) or a
// container port name.
func targetPort(pod *corev1.Pod, sp corev1.ServicePort) (uint32, bool) {
	tp := sp.TargetPort
	if tp.IntVal == 0 && tp.StrVal == "" {
		return uint32(sp.Port), sp.Port > 0
	}
	if tp.StrVal == "" {
		return uint32(tp.IntVal), tp.IntVal > 0 && tp.IntVal < 65536
	}
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == tp.StrVal && (cp.Protocol == "" || cp.Protocol == corev1.ProtocolTCP) {
				return uint32(cp.ContainerPort), cp.ContainerPort > 0
			}
		}
	}
	return 0, false
}

func serviceName(pod *corev1.Pod, svc *corev1.Service) string {
	if n := pod.Annotations[annotations.Service]; n != "" {
		return n
	}
	if n := svc.Annotations[annotations.Service]; n != "" {
		return n
	}
	return svc.Name
}

// appProtocols maps Service appProtocol values to weft.io/protocol.
var appProtocols = map[string]string{
	"tcp": "tcp", "http": "http", "http2": "http2", "grpc": "grpc",
	"kubernetes.io/h2c": "http2", "kubernetes.io/ws": "http",
}

// protocol is the inbound's weft.io/protocol: the Service port's
// appProtocol when Weft knows it, else the pod's or the Service's
// annotation, else none (tcp).
func protocol(pod *corev1.Pod, svc *corev1.Service, sp corev1.ServicePort) (string, error) {
	if sp.AppProtocol != nil {
		if p, ok := appProtocols[strings.ToLower(*sp.AppProtocol)]; ok {
			return p, nil
		}
	}
	for _, p := range []string{pod.Annotations[annotations.Protocol], svc.Annotations[annotations.Protocol]} {
		if p == "" {
			continue
		}
		if !slices.Contains([]string{"tcp", "http", "http2", "grpc"}, p) {
			return "", podErr("bad-protocol", "%s %q is not one of tcp, http, http2, grpc", annotations.Protocol, p)
		}
		return p, nil
	}
	return "", nil
}
