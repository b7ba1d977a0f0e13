package chartstest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// workload is a pod template of a Deployment or StatefulSet.
type workload struct {
	kind, name string
	selector   *metav1.LabelSelector
	replicas   *int32
	tmpl       corev1.PodTemplateSpec
	claims     []corev1.PersistentVolumeClaim
}

// checkPolicy holds every render to what every Weft pod must be: probes,
// hardening, resources, metrics, and references that resolve.
func checkPolicy(t *testing.T, objs []object) {
	t.Helper()
	var (
		loads    []workload
		services []*corev1.Service
		hpas     []*autoscalingv2.HorizontalPodAutoscaler
		pdbs     []*policyv1.PodDisruptionBudget
		monitors []*serviceMonitor
		seen     = map[string]bool{}
	)
	for _, o := range objs {
		key := o.kind + "/" + o.name
		if seen[key] {
			t.Errorf("%s rendered twice", key)
		}
		seen[key] = true
		for _, e := range validation.IsDNS1123Subdomain(o.name) {
			t.Errorf("%s: name: %s", key, e)
		}
		if o.kind != "ServiceAccount" && len(o.name) > 63 {
			t.Errorf("%s: name longer than 63", key)
		}
		switch v := o.obj.(type) {
		case *appsv1.Deployment:
			loads = append(loads, workload{kind: o.kind, name: o.name, selector: v.Spec.Selector, replicas: v.Spec.Replicas, tmpl: v.Spec.Template})
		case *appsv1.StatefulSet:
			loads = append(loads, workload{kind: o.kind, name: o.name, selector: v.Spec.Selector, replicas: v.Spec.Replicas, tmpl: v.Spec.Template, claims: v.Spec.VolumeClaimTemplates})
		case *corev1.Service:
			services = append(services, v)
		case *autoscalingv2.HorizontalPodAutoscaler:
			hpas = append(hpas, v)
		case *policyv1.PodDisruptionBudget:
			pdbs = append(pdbs, v)
		case *serviceMonitor:
			monitors = append(monitors, v)
		}
	}

	podsMatching := func(sel map[string]string) []workload {
		var out []workload
		if len(sel) == 0 {
			return nil
		}
		s := labels.SelectorFromSet(sel)
		for _, w := range loads {
			if s.Matches(labels.Set(w.tmpl.Labels)) {
				out = append(out, w)
			}
		}
		return out
	}
	monitored := func(w workload) bool {
		for _, m := range monitors {
			ms, err := metav1.LabelSelectorAsSelector(&m.Spec.Selector)
			if err != nil {
				t.Errorf("ServiceMonitor %s: %v", m.Name, err)
				continue
			}
			for _, s := range services {
				if ms.Matches(labels.Set(s.Labels)) && slices.ContainsFunc(podsMatching(s.Spec.Selector), func(p workload) bool { return p.name == w.name }) {
					return true
				}
			}
		}
		return false
	}

	for _, w := range loads {
		checkWorkload(t, w)
		if !monitored(w) {
			a := w.tmpl.Annotations
			if a["prometheus.io/scrape"] != "true" || a["prometheus.io/path"] == "" || !hasContainerPort(w.tmpl.Spec, a["prometheus.io/port"]) {
				t.Errorf("%s %s: no ServiceMonitor and no prometheus.io/scrape,port,path annotations naming a container port (%v)", w.kind, w.name, a)
			}
		}
	}
	for _, s := range services {
		pods := podsMatching(s.Spec.Selector)
		if len(pods) == 0 {
			t.Errorf("Service %s: selector %v matches no pod template", s.Name, s.Spec.Selector)
			continue
		}
		for _, p := range s.Spec.Ports {
			for _, e := range validation.IsValidPortName(p.Name) {
				t.Errorf("Service %s port %q: %s", s.Name, p.Name, e)
			}
			for _, w := range pods {
				if !targetPortExists(w.tmpl.Spec, p.TargetPort, p.Protocol) {
					t.Errorf("Service %s port %s: targetPort %s/%s not a container port of %s", s.Name, p.Name, p.TargetPort.String(), p.Protocol, w.name)
				}
			}
		}
	}
	for _, h := range hpas {
		ref := h.Spec.ScaleTargetRef
		i := slices.IndexFunc(loads, func(w workload) bool { return w.kind == ref.Kind && w.name == ref.Name })
		if i < 0 {
			t.Errorf("HPA %s: target %s/%s not rendered", h.Name, ref.Kind, ref.Name)
			continue
		}
		if loads[i].replicas != nil {
			t.Errorf("HPA %s: %s %s sets spec.replicas, which every helm upgrade would reset", h.Name, ref.Kind, ref.Name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
			t.Errorf("HPA %s: minReplicas must be set and <= maxReplicas", h.Name)
		}
	}
	for _, p := range pdbs {
		if p.Spec.Selector == nil || len(podsMatching(p.Spec.Selector.MatchLabels)) == 0 {
			t.Errorf("PDB %s: selector matches no pod template", p.Name)
		}
		if (p.Spec.MinAvailable == nil) == (p.Spec.MaxUnavailable == nil) {
			t.Errorf("PDB %s: exactly one of minAvailable, maxUnavailable", p.Name)
		}
	}
	for _, m := range monitors {
		ms, _ := metav1.LabelSelectorAsSelector(&m.Spec.Selector)
		var matched []*corev1.Service
		for _, s := range services {
			if ms.Matches(labels.Set(s.Labels)) {
				matched = append(matched, s)
			}
		}
		if len(matched) == 0 {
			t.Errorf("ServiceMonitor %s: selects no Service", m.Name)
		}
		for _, ep := range m.Spec.Endpoints {
			for _, s := range matched {
				if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
					t.Errorf("ServiceMonitor %s: Service %s has no port %q", m.Name, s.Name, ep.Port)
				}
			}
		}
	}
}

func checkWorkload(t *testing.T, w workload) {
	t.Helper()
	id := w.kind + " " + w.name
	sel, err := metav1.LabelSelectorAsSelector(w.selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(w.tmpl.Labels)) {
		t.Errorf("%s: selector %v does not match template labels %v", id, w.selector, w.tmpl.Labels)
	}
	spec := w.tmpl.Spec
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Errorf("%s: host namespaces", id)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("%s: automountServiceAccountToken must be false (no service needs the Kubernetes API)", id)
	}
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("%s: pod securityContext.runAsNonRoot must be true", id)
	}
	if psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0 {
		t.Errorf("%s: runAsUser 0", id)
	}
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = true
		if v.HostPath != nil {
			t.Errorf("%s: hostPath volume %s", id, v.Name)
		}
	}
	for _, c := range w.claims {
		volumes[c.Name] = true
	}
	if len(spec.InitContainers) > 0 {
		t.Errorf("%s: init containers are not expected", id)
	}
	weft := w.tmpl.Labels["app.kubernetes.io/part-of"] == "weft" && w.tmpl.Labels["app.kubernetes.io/component"] == "control-plane"
	for _, c := range spec.Containers {
		cid := fmt.Sprintf("%s container %s", id, c.Name)
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Errorf("%s: no securityContext", cid)
		default:
			if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
				t.Errorf("%s: runAsNonRoot must be true", cid)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: allowPrivilegeEscalation must be false", cid)
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Errorf("%s: privileged", cid)
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("%s: readOnlyRootFilesystem must be true", cid)
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
				t.Errorf("%s: capabilities must drop ALL and add none", cid)
			}
			seccomp := sc.SeccompProfile
			if seccomp == nil && psc != nil {
				seccomp = psc.SeccompProfile
			}
			if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s: seccompProfile must be RuntimeDefault", cid)
			}
		}
		r := c.Resources
		if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() || r.Limits.Memory().IsZero() {
			t.Errorf("%s: needs cpu and memory requests and a memory limit (%v)", cid, r)
		}
		for _, p := range c.Ports {
			for _, e := range validation.IsValidPortName(p.Name) {
				t.Errorf("%s port %q: %s", cid, p.Name, e)
			}
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				t.Errorf("%s: volumeMount %s has no volume", cid, m.Name)
			}
			if strings.HasPrefix(m.MountPath, "/etc/weft/") && !m.ReadOnly {
				t.Errorf("%s: %s must be mounted read-only", cid, m.MountPath)
			}
		}
		if c.LivenessProbe == nil || c.ReadinessProbe == nil {
			t.Errorf("%s: needs liveness and readiness probes", cid)
			continue
		}
		if !weft {
			continue
		}
		// Weft services: /healthz and /readyz on the admin port the binary
		// is told to listen on.
		checkHTTPProbe(t, cid+" liveness", c.LivenessProbe, "/healthz")
		checkHTTPProbe(t, cid+" readiness", c.ReadinessProbe, "/readyz")
		var admin int32
		for _, p := range c.Ports {
			if p.Name == "admin" {
				admin = p.ContainerPort
			}
		}
		if admin == 0 || !slices.Contains(c.Args, fmt.Sprintf("--admin-address=:%d", admin)) {
			t.Errorf("%s: needs a port named admin and --admin-address=:<that port> (args %v)", cid, c.Args)
		}
		for _, want := range []string{"--etcd-endpoints=", "--log-level=", "--log-format="} {
			if !slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, want) }) {
				t.Errorf("%s: missing %s", cid, want)
			}
		}
		for _, e := range c.Env {
			if e.Name == "OTEL_EXPORTER_OTLP_ENDPOINT" && e.Value == "" {
				t.Errorf("%s: OTEL_EXPORTER_OTLP_ENDPOINT set empty", cid)
			}
		}
	}
}

func checkHTTPProbe(t *testing.T, id string, p *corev1.Probe, path string) {
	t.Helper()
	if p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port.String() != "admin" {
		t.Errorf("%s: want httpGet %s on port admin, got %+v", id, path, p.ProbeHandler)
	}
}

func hasContainerPort(spec corev1.PodSpec, port string) bool {
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			if fmt.Sprint(p.ContainerPort) == port {
				return true
			}
		}
	}
	return false
}

func targetPortExists(spec corev1.PodSpec, tp intstr.IntOrString, proto corev1.Protocol) bool {
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			pp := p.Protocol
			if pp == "" {
				pp = corev1.ProtocolTCP
			}
			if pp != proto {
				continue
			}
			if (tp.Type == intstr.String && p.Name == tp.StrVal) || (tp.Type == intstr.Int && p.ContainerPort == tp.IntVal) {
				return true
			}
		}
	}
	return false
}
