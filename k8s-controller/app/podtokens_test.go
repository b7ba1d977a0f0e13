package app_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/weftmesh/weft/k8s-controller/app"
	"github.com/weftmesh/weft/k8s-controller/internal/annotations"
	"github.com/weftmesh/weft/k8s-controller/internal/inject"
	"github.com/weftmesh/weft/k8s-controller/internal/podtoken"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/token"
)

// Each injected pod gets its own dataplane token, issued by the controller
// into the Secret the webhook mounted (a pod created with generateName is
// named by the webhook so that the Secret can be named after it), bound to
// the services derived for the pod: it verifies only for the pod's own
// Dataplane, cannot claim another service, is rebound (and the old token
// revoked) when the pod's services change, and is deleted and revoked with
// the pod.
func TestEachInjectedPodGetsItsOwnBoundToken(t *testing.T) {
	e := start(t, func(c *app.Config) {
		c.Mode, c.Zone = app.ModeZone, "zone-k8s"
		c.Pods.Image, c.Pods.CP = "weft-dp:test", "weft-xds-server.weft-system.svc:5678"
	})
	ctx := context.Background()
	if _, err := e.st.Create(ctx, resource.New(resource.MeshType, "", "default")); err != nil {
		t.Fatal(err)
	}
	keys := token.New(e.st)
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
	for _, svc := range []string{"backend", "web"} {
		if _, err := kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: svc},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": svc}, Ports: []corev1.ServicePort{{Port: 8080}}}},
			metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	newPod := func(app string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: app + "-", Labels: map[string]string{"app": app}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example/" + app}}}}
	}
	waitFor(t, "the injection webhook", func() error {
		p, err := kube.CoreV1().Pods(ns).Create(ctx, newPod("probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return err
		}
		if !slices.Contains(names(p.Spec.Containers), inject.SidecarName) {
			return errors.New("not injected yet")
		}
		return nil
	})

	pod, err := kube.CoreV1().Pods(ns).Create(ctx, newPod("backend"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(pod.Name, "backend-") || len(pod.Name) != len("backend-")+5 {
		t.Fatalf("pod name %q: want backend- and 5 characters", pod.Name)
	}
	secretName := podtoken.SecretName(pod.Name)
	mounted := ""
	for _, v := range pod.Spec.Volumes {
		if v.Name == inject.TokenVolume && v.Secret != nil {
			mounted = v.Secret.SecretName
		}
	}
	if mounted != secretName {
		t.Fatalf("token volume mounts Secret %q, want %q", mounted, secretName)
	}

	// The Secret is written before the pod runs (its containers need it to
	// start): this pod has no status at all.
	dpName := pod.Name + "." + ns
	readToken := func() (string, *corev1.Secret, error) {
		s, err := kube.CoreV1().Secrets(ns).Get(ctx, secretName, metav1.GetOptions{})
		if err != nil {
			return "", nil, err
		}
		return string(s.Data[podtoken.Key]), s, nil
	}
	var tok string
	waitFor(t, "the pod's token Secret", func() error {
		var err error
		tok, _, err = readToken()
		return err
	})
	_, sec, _ := readToken()
	if len(sec.OwnerReferences) != 1 || sec.OwnerReferences[0].UID != pod.UID || sec.OwnerReferences[0].Kind != "Pod" {
		t.Errorf("owner references %+v, want the pod %s", sec.OwnerReferences, pod.UID)
	}
	claims, err := keys.VerifyDataplane(ctx, tok, "default", dpName)
	if err != nil {
		t.Fatalf("the token does not verify for its own Dataplane: %v", err)
	}
	if !slices.Equal(claims.Services, []string{"backend"}) || claims.Unbound {
		t.Errorf("bound to %v (unbound %v), want [backend]", claims.Services, claims.Unbound)
	}
	if err := claims.CheckServices([]string{"backend"}); err != nil {
		t.Errorf("its own service: %v", err)
	}
	// Forgeries: the pod's token claiming another service, or being
	// another pod's Dataplane, fails.
	var be *token.BindingError
	if err := claims.CheckServices([]string{"backend", "web"}); !errors.As(err, &be) || be.Service != "web" {
		t.Errorf("claiming web: %v, want a binding error naming web", err)
	}
	if _, err := keys.VerifyDataplane(ctx, tok, "default", "web-abcde."+ns); err == nil {
		t.Error("the token verified for another pod's Dataplane")
	}

	// Relabelled into web: a new token bound to web; the old one is revoked.
	p, err := kube.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Labels["app"] = "web"
	if _, err := kube.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the token rebound to web", func() error {
		t2, _, err := readToken()
		if err != nil {
			return err
		}
		c, err := keys.VerifyDataplane(ctx, t2, "default", dpName)
		if err != nil {
			return err
		}
		if !slices.Equal(c.Services, []string{"web"}) {
			return fmt.Errorf("bound to %v", c.Services)
		}
		return nil
	})
	waitFor(t, "the old token revoked", func() error {
		if _, err := token.New(e.st).Verify(ctx, tok); err == nil || !strings.Contains(err.Error(), "revoked") {
			return fmt.Errorf("old token: %v", err)
		}
		return nil
	})
	tok, _, err = readToken()
	if err != nil {
		t.Fatal(err)
	}

	// An opted-out pod gets no Secret (and mounts none).
	out := newPod("backend")
	out.Annotations = map[string]string{annotations.Injection: annotations.Disabled}
	outPod, err := kube.CoreV1().Pods(ns).Create(ctx, out, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	if err := kube.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the Secret deleted with the pod", func() error {
		if _, _, err := readToken(); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
	waitFor(t, "the token revoked with the pod", func() error {
		if _, err := token.New(e.st).Verify(ctx, tok); err == nil || !strings.Contains(err.Error(), "revoked") {
			return fmt.Errorf("token: %v", err)
		}
		return nil
	})
	if _, err := kube.CoreV1().Secrets(ns).Get(ctx, podtoken.SecretName(outPod.Name), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the opted-out pod has a token Secret: %v", err)
	}
}
