package kubetest_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/weftmesh/weft/k8s-controller/kubetest"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

// The harness runs the release the build script builds by default.
func TestVersionMatchesTheBuildScript(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "tools", "kube-apiserver", "build.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VERSION="\$\{KUBE_VERSION:-(v[0-9.]+)\}"`).FindSubmatch(b)
	if m == nil {
		t.Fatal("build.sh: no VERSION default found")
	}
	if string(m[1]) != kubetest.Version {
		t.Fatalf("build.sh builds %s, kubetest.Version is %s", m[1], kubetest.Version)
	}
}

func TestAdminCanCreatePodsAndSetTheirStatus(t *testing.T) {
	srv := kubetest.Start(t)
	ns := srv.Namespace(t)
	cs := kubernetes.NewForConfigOrDie(srv.Config())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pod, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.invalid/app"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod: %v", err)
	}
	// No kubelet: the test plays it.
	pod.Status.PodIP = "127.0.0.1"
	pod.Status.Phase = corev1.PodRunning
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update status: %v", err)
	}
	got, err := cs.CoreV1().Pods(ns).Get(ctx, "p", metav1.GetOptions{})
	if err != nil || got.Status.PodIP != "127.0.0.1" {
		t.Fatalf("get pod: %v %+v", err, got.Status)
	}
}

// A user from UserConfig has no rights until RBAC grants them, and a
// kubeconfig file carries the same credentials.
func TestUsersHaveOnlyWhatRBACGrants(t *testing.T) {
	srv := kubetest.Start(t)
	ns := srv.Namespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	user := kubernetes.NewForConfigOrDie(srv.UserConfig(t, "someone", "some-group"))
	_, err := user.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("list pods as an unprivileged user: %v, want Forbidden", err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubetest.WriteKubeconfig(t, srv.UserConfig(t, "someone")))
	if err != nil {
		t.Fatal(err)
	}
	_, err = kubernetes.NewForConfigOrDie(cfg).CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("through the kubeconfig: %v, want Forbidden", err)
	}
	if _, err := kubernetes.NewForConfigOrDie(srv.Config()).CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("admin: %v", err)
	}
}

// Stop and Restart keep the data (the etcd stays up) and the address.
func TestRestartKeepsTheData(t *testing.T) {
	srv := kubetest.Start(t)
	ns := srv.Namespace(t)
	cs := kubernetes.NewForConfigOrDie(srv.Config())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kept"}, Data: map[string]string{"k": "v"}}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	srv.Stop(t)
	short, cancelShort := context.WithTimeout(ctx, 5*time.Second)
	_, err := cs.CoreV1().ConfigMaps(ns).Get(short, "kept", metav1.GetOptions{})
	cancelShort()
	if err == nil {
		t.Fatal("the API server answered while stopped")
	}
	srv.Restart(t)
	got, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "kept", metav1.GetOptions{})
	if err != nil || got.Data["k"] != "v" {
		t.Fatalf("after restart: %v %v", err, got)
	}
}
