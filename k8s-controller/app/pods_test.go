package app_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/weftmesh/weft/k8s-controller/app"
	"github.com/weftmesh/weft/k8s-controller/internal/annotations"
	"github.com/weftmesh/weft/k8s-controller/internal/inject"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

func names(cs []corev1.Container) []string {
	var n []string
	for _, c := range cs {
		n = append(n, c.Name)
	}
	return n
}

// A pod created through the API server comes back with the sidecar, the
// init container and the volumes (the API server called the controller's
// webhook over TLS, verified with the control-plane CA); an opted-out pod
// does not; the injected pod, once running and ready, is a Dataplane of
// this zone with transparent proxying, which follows its readiness and
// goes with it.
func TestPodsAreInjectedAndBecomeDataplanes(t *testing.T) {
	e := start(t, func(c *app.Config) {
		c.Mode, c.Zone = app.ModeZone, "zone-k8s"
		c.Pods.Image, c.Pods.CP, c.Pods.DNSServer = "weft-dp:test", "weft-xds-server.weft-system.svc:5678", "10.96.0.53:5653"
	})
	ctx := context.Background()
	if _, err := e.st.Create(ctx, resource.New(resource.MeshType, "", "default")); err != nil {
		t.Fatal(err)
	}
	kube := kubernetes.NewForConfigOrDie(e.srv.Config())
	ns := e.srv.Namespace(t)
	nsObj, err := kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if nsObj.Labels == nil {
		nsObj.Labels = map[string]string{}
	}
	nsObj.Labels[annotations.Injection] = annotations.Enabled
	if _, err := kube.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	newPod := func(name string, ann map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "backend"}, Annotations: ann},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example/backend",
				Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: 9090}}}}}}
	}
	// The injection webhook is registered once a dry-run pod comes back injected.
	waitFor(t, "the injection webhook", func() error {
		p, err := kube.CoreV1().Pods(ns).Create(ctx, newPod("probe", nil), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return err
		}
		if !slices.Contains(names(p.Spec.Containers), inject.SidecarName) {
			return errors.New("not injected yet")
		}
		return nil
	})

	pod, err := kube.CoreV1().Pods(ns).Create(ctx, newPod("backend-0", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(pod.Spec.Containers); !slices.Equal(got, []string{"app", inject.SidecarName}) {
		t.Errorf("containers %v", got)
	}
	if got := names(pod.Spec.InitContainers); !slices.Equal(got, []string{inject.InitName}) {
		t.Errorf("init containers %v", got)
	} else if !slices.Contains(pod.Spec.InitContainers[0].Args, "--dns-server=10.96.0.53:5653") {
		t.Errorf("init args %v", pod.Spec.InitContainers[0].Args)
	}
	var vols []string
	for _, v := range pod.Spec.Volumes {
		vols = append(vols, v.Name)
	}
	if !slices.Contains(vols, inject.TokenVolume) || !slices.Contains(vols, inject.WorkVolume) {
		t.Errorf("volumes %v", vols)
	}
	if pod.Annotations[annotations.Injected] != annotations.ProxyTypeEnvoy {
		t.Errorf("annotations %v", pod.Annotations)
	}

	out, err := kube.CoreV1().Pods(ns).Create(ctx, newPod("opted-out", map[string]string{annotations.Injection: annotations.Disabled}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Spec.Containers) != 1 || len(out.Spec.InitContainers) != 0 || out.Annotations[annotations.Injected] != "" {
		t.Errorf("opted-out pod was changed: %v %v %v", names(out.Spec.Containers), names(out.Spec.InitContainers), out.Annotations)
	}
	// A bad annotation is refused with the annotation named.
	_, err = kube.CoreV1().Pods(ns).Create(ctx, newPod("bad", map[string]string{annotations.ExcludeOutboundPorts: "https"}), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), annotations.ExcludeOutboundPorts) {
		t.Errorf("bad annotation: %v", err)
	}

	if _, err := kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "backend"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "backend"}, Ports: []corev1.ServicePort{
			{Name: "grpc", Port: 80, TargetPort: intstr.FromString("grpc"), AppProtocol: new("grpc")}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	setStatus := func(ready bool) {
		t.Helper()
		p, err := kube.CoreV1().Pods(ns).Get(ctx, "backend-0", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s := corev1.ConditionFalse
		if ready {
			s = corev1.ConditionTrue
		}
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.1.0.1", PodIPs: []corev1.PodIP{{IP: "10.1.0.1"}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: s}}}
		if _, err := kube.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dpName := "backend-0." + ns
	dataplane := func() (*meshv1.Dataplane, error) {
		r, err := e.st.Get(ctx, resource.DataplaneType, "default", dpName)
		if err != nil {
			return nil, err
		}
		if r.Meta.GetOrigin() != "zone-k8s" {
			return nil, fmt.Errorf("origin %q", r.Meta.GetOrigin())
		}
		return r.Spec.(*meshv1.Dataplane), nil
	}
	setStatus(true)
	waitFor(t, "the pod's Dataplane", func() error {
		dp, err := dataplane()
		if err != nil {
			return err
		}
		in := dp.GetNetworking().GetInbound()
		if len(in) != 1 || in[0].GetPort() != 9090 || in[0].GetTags()["weft.io/service"] != "backend" || in[0].GetTags()["weft.io/zone"] != "zone-k8s" ||
			!in[0].GetHealth().GetReady() || dp.GetNetworking().GetTransparentProxying().GetRedirectPortOutbound() != 15001 {
			return fmt.Errorf("not as expected yet: %v", dp)
		}
		return nil
	})
	setStatus(false)
	waitFor(t, "the inbound unhealthy", func() error {
		dp, err := dataplane()
		if err != nil {
			return err
		}
		if h := dp.GetNetworking().GetInbound()[0].GetHealth(); h == nil || h.GetReady() {
			return fmt.Errorf("health %v", h)
		}
		return nil
	})
	if err := kube.CoreV1().Pods(ns).Delete(ctx, "backend-0", metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the Dataplane deleted", func() error {
		if _, err := dataplane(); !store.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
}
