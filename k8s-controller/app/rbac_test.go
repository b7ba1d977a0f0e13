package app_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/k8s-controller/app"
	"github.com/weftmesh/weft/k8s-controller/crd"
	"github.com/weftmesh/weft/k8s-controller/internal/annotations"
	"github.com/weftmesh/weft/k8s-controller/internal/podtoken"
	"github.com/weftmesh/weft/k8s-controller/kubetest"
)

// chartObject decodes the document of kind from the chart's default render
// (charts/k8s-controller/testdata/default.golden.yaml, kept current by
// charts/chartstest).
func chartObject(t *testing.T, kind string, into any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "charts", "k8s-controller", "testdata", "default.golden.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(b), "\n---\n") {
		if strings.Contains(doc, "\nkind: "+kind+"\n") {
			if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
				t.Fatalf("%s from the chart: %v", kind, err)
			}
			return
		}
	}
	t.Fatalf("no %s in the chart's render", kind)
}

// The chart's ClusterRole is enough: a controller authenticated as a user
// holding only it (and the chart's webhook configuration, which it may
// update but not create) syncs CRs, writes their status and serves the
// webhook.
func TestTheChartsClusterRoleIsEnough(t *testing.T) {
	srv := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	kube := kubernetes.NewForConfigOrDie(srv.Config())
	const user = "weft-rbac-test"
	name := "weft-test-" + strings.ToLower(t.Name())

	var role rbacv1.ClusterRole
	chartObject(t, "ClusterRole", &role)
	role.ObjectMeta = metav1.ObjectMeta{Name: name}
	for i := range role.Rules {
		for j, rn := range role.Rules[i].ResourceNames {
			if rn == "weft-k8s-controller" {
				role.Rules[i].ResourceNames[j] = name
			}
		}
	}
	if _, err := kube.RbacV1().ClusterRoles().Create(ctx, &role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name},
		Subjects: []rbacv1.Subject{{Kind: "User", Name: user, APIGroup: "rbac.authorization.k8s.io"}}}
	if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = kube.RbacV1().ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = kube.RbacV1().ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	chartObject(t, "ValidatingWebhookConfiguration", &vwc)
	vwc.ObjectMeta = metav1.ObjectMeta{Name: name}
	// Until the controller writes its URL and caBundle, the chart's Service
	// reference leads nowhere: do not block the other tests meanwhile.
	ignore := admissionregistrationv1.Ignore
	vwc.Webhooks[0].FailurePolicy = &ignore
	if _, err := kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, &vwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	e := start(t, func(c *app.Config) {
		c.RestConfig = srv.UserConfig(t, user)
		c.WebhookConfigName = name
	})
	specs := validSpecs(t)
	meshKind, _ := crd.KindOf("Mesh")
	tp, _ := crd.KindOf("TrafficPermission")
	e.apply(t, meshKind, "rbac", "", specs["Mesh"])
	e.apply(t, tp, "rbac-allow", "rbac", specs["TrafficPermission"])
	waitFor(t, "stored and accepted with the chart's rights", func() error {
		if _, err := e.stored(tp, "rbac", "rbac-allow"); err != nil {
			return err
		}
		st, err := e.accepted(tp, "rbac-allow")
		if err == nil && !strings.HasPrefix(st, "True") {
			err = fmt.Errorf("condition %s", st)
		}
		return err
	})
	// Per-pod tokens with the chart's rights: an injected pod of the mesh
	// gets its token Secret (written without reading any Secret).
	ns := srv.Namespace(t)
	if _, err := kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "rbac-svc"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "rbac"}, Ports: []corev1.ServicePort{{Port: 8080}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "rbac-0", Labels: map[string]string{"app": "rbac"},
		Annotations: map[string]string{annotations.Injection: annotations.Enabled, annotations.Injected: annotations.ProxyTypeEnvoy}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example/rbac"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the pod's token Secret written with the chart's rights", func() error {
		_, err := kube.CoreV1().Secrets(ns).Get(ctx, podtoken.SecretName("rbac-0"), metav1.GetOptions{})
		return err
	})
	// And no more: the user cannot create or delete CRs, nor read Secrets.
	userDyn := kubernetes.NewForConfigOrDie(srv.UserConfig(t, user))
	if _, err := userDyn.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{}); err == nil {
		t.Error("the controller's role may list Secrets")
	}
	if _, err := userDyn.CoreV1().Secrets(ns).Get(ctx, podtoken.SecretName("rbac-0"), metav1.GetOptions{}); err == nil {
		t.Error("the controller's role may read Secrets")
	}
}
