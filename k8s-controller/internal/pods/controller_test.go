package pods

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/weftmesh/weft/k8s-controller/internal/annotations"
	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; last: %s", what, last)
}

func startController(t *testing.T, kc kubernetes.Interface, st *store.Store, reg *prometheus.Registry) (*Controller, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := New(kc, st, Options{Zone: "zone-k8s", Metrics: reg, Meshes: store.NewInformers(st).For(resource.MeshType)})
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case <-c.Synced():
	case err := <-done:
		cancel()
		t.Fatalf("controller stopped: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("controller did not sync")
	}
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller: %v", err)
		}
	}
	return c, stop
}

func getDP(st *store.Store, mesh, name string) (*meshv1.Dataplane, *resource.Resource, error) {
	r, err := st.Get(context.Background(), resource.DataplaneType, mesh, name)
	if err != nil {
		return nil, nil, err
	}
	return r.Spec.(*meshv1.Dataplane), r, nil
}

// PodsToDataplanes drives the controller through a kube client the way the
// kubelet and a user would: create a namespace, a Service and pods, set
// their status, flip readiness, delete one. kc is a client of a real
// kube-apiserver when the harness is available, else client-go's fake.
func PodsToDataplanes(t *testing.T, c *Controller, kc kubernetes.Interface, st *store.Store) {
	ctx := context.Background()
	ns := "shop-" + fmt.Sprint(time.Now().UnixNano()%100000)
	mustK := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mustK(kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels: map[string]string{annotations.Injection: annotations.Enabled}}}, metav1.CreateOptions{}))
	mustK(kc.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "backend"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "backend"}, Ports: []corev1.ServicePort{
			{Name: "grpc", Port: 80, TargetPort: intstr.FromString("grpc"), AppProtocol: new("grpc")}}}}, metav1.CreateOptions{}))
	// An unmanaged Dataplane of the same name as a pod's is never touched.
	if _, err := st.Create(ctx, &resource.Resource{Meta: &meshv1.Meta{Type: resource.DataplaneType.Name, Mesh: "default", Name: Name(ns, "backend-2")},
		Spec: &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: "10.9.9.9", Inbound: []*meshv1.Dataplane_Networking_Inbound{
			{Port: 1, Tags: map[string]string{"weft.io/service": "vm"}}}}}}); err != nil {
		t.Fatal(err)
	}

	for i, ip := range []string{"10.1.0.1", "10.1.0.2", "10.1.0.3"} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("backend-%d", i), Labels: map[string]string{"app": "backend", "version": "v1"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example/backend",
				Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: 9090}}}}}}
		if i == 1 {
			pod.Annotations = map[string]string{annotations.Service: "Bad_Name"} // this pod alone is broken
		}
		created, err := kc.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		setStatus(t, kc, created, ip, true)
	}
	for _, n := range []string{"backend-0"} {
		waitFor(t, n+"'s Dataplane", func() (bool, string) {
			dp, _, err := getDP(st, "default", Name(ns, n))
			if err != nil {
				return false, err.Error()
			}
			in := dp.GetNetworking().GetInbound()
			return len(in) == 1 && in[0].GetPort() == 9090 && in[0].GetTags()["weft.io/service"] == "backend" &&
				in[0].GetTags()["weft.io/protocol"] == "grpc" && in[0].GetTags()["weft.io/zone"] == "zone-k8s" &&
				in[0].GetTags()["version"] == "v1" && in[0].GetHealth().GetReady(), fmt.Sprint(dp)
		})
	}
	// The broken pod has none; the unmanaged Dataplane kept its address.
	_, _, err := getDP(st, "default", Name(ns, "backend-1"))
	if !store.IsNotFound(err) {
		t.Errorf("broken pod: %v", err)
	}
	waitFor(t, "backend-2's conflict to be reported", func() (bool, string) {
		n := testutil.ToFloat64(c.errors.WithLabelValues("conflict"))
		return n >= 1, fmt.Sprint(n)
	})
	if dp, _, err := getDP(st, "default", Name(ns, "backend-2")); err != nil || dp.GetNetworking().GetAddress() != "10.9.9.9" {
		t.Fatalf("the unmanaged Dataplane was touched: %v %v", dp, err)
	}
	if n := testutil.ToFloat64(c.errors.WithLabelValues("bad-service-name")); n < 1 {
		t.Errorf("bad-service-name errors = %v", n)
	}
	if err := st.Delete(ctx, resource.DataplaneType, "default", Name(ns, "backend-2"), 0); err != nil {
		t.Fatal(err)
	}
	// Once the name is free, the next event of the pod takes it.
	p2, err := kc.CoreV1().Pods(ns).Get(ctx, "backend-2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p2.Labels["touched"] = "yes"
	mustK(kc.CoreV1().Pods(ns).Update(ctx, p2, metav1.UpdateOptions{}))
	waitFor(t, "backend-2's pod Dataplane", func() (bool, string) {
		dp, _, err := getDP(st, "default", Name(ns, "backend-2"))
		return err == nil && dp.GetNetworking().GetAddress() == "10.1.0.3" && dp.GetNetworking().GetInbound()[0].GetTags()["touched"] == "yes", fmt.Sprint(dp, err)
	})

	// Unready flips the inbound's health.
	p0, err := kc.CoreV1().Pods(ns).Get(ctx, "backend-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	setStatus(t, kc, p0, "10.1.0.1", false)
	waitFor(t, "backend-0 unhealthy", func() (bool, string) {
		dp, _, err := getDP(st, "default", Name(ns, "backend-0"))
		return err == nil && dp.GetNetworking().GetInbound()[0].GetHealth() != nil && !dp.GetNetworking().GetInbound()[0].GetHealth().GetReady(), fmt.Sprint(dp, err)
	})

	// Deleting the pod deletes its Dataplane.
	if err := kc.CoreV1().Pods(ns).Delete(ctx, "backend-0", metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "backend-0's Dataplane deleted", func() (bool, string) {
		_, _, err := getDP(st, "default", Name(ns, "backend-0"))
		return store.IsNotFound(err), fmt.Sprint(err)
	})
}

func setStatus(t *testing.T, kc kubernetes.Interface, pod *corev1.Pod, ip string, ready bool) {
	t.Helper()
	s := corev1.ConditionFalse
	if ready {
		s = corev1.ConditionTrue
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: s}}}
	if _, err := kc.CoreV1().Pods(pod.Namespace).UpdateStatus(context.Background(), pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func newStoreWithMesh(t *testing.T) *store.Store {
	t.Helper()
	st := store.New(etcdtest.Client(t, nil))
	if _, err := st.Create(context.Background(), resource.New(resource.MeshType, "", "default")); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestGarbageAndIdempotence(t *testing.T) {
	st := newStoreWithMesh(t)
	kc := testClient(t)
	ctx := context.Background()
	// A managed Dataplane whose pod is gone (deleted while no controller ran).
	stale := &resource.Resource{Meta: &meshv1.Meta{Type: resource.DataplaneType.Name, Mesh: "default", Name: "gone.shop",
		Labels: map[string]string{annotations.ManagedBy: annotations.ManagedByValue}},
		Spec: &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: "10.0.0.1", Inbound: []*meshv1.Dataplane_Networking_Inbound{
			{Port: 1, Tags: map[string]string{"weft.io/service": "x"}}}}}}
	if _, err := st.Create(ctx, stale); err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "idem", Labels: map[string]string{annotations.Injection: annotations.Enabled}}}
	if _, err := kc.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.CoreV1().Services("idem").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 8080}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod, err := kc.CoreV1().Pods("idem").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example/web"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	setStatus(t, kc, pod, "10.2.0.1", true)

	reg := prometheus.NewRegistry()
	c, stop := startController(t, kc, st, reg)
	if _, _, err := getDP(st, "default", "gone.shop"); !store.IsNotFound(err) {
		t.Errorf("stale Dataplane after sync: %v", err)
	}
	var version int64
	waitFor(t, "web-1's Dataplane", func() (bool, string) {
		_, r, err := getDP(st, "default", "web-1.idem")
		if err == nil {
			version = r.Meta.GetVersion()
		}
		return err == nil, fmt.Sprint(err)
	})
	stop()
	if got := testutil.ToFloat64(c.managed); got != 1 {
		t.Errorf("weft_k8s_pod_dataplanes = %v, want 1", got)
	}

	// A second run over the same state writes nothing.
	reg2 := prometheus.NewRegistry()
	c2, stop2 := startController(t, kc, st, reg2)
	waitFor(t, "the second controller to reconcile web-1", func() (bool, string) {
		n := testutil.ToFloat64(c2.reconcile.WithLabelValues("unchanged"))
		return n >= 1, fmt.Sprint(n)
	})
	stop2()
	if _, r, err := getDP(st, "default", "web-1.idem"); err != nil || r.Meta.GetVersion() != version {
		t.Errorf("second run rewrote the Dataplane (was version %d): %v %v", version, r, err)
	}
	if n := testutil.ToFloat64(c2.reconcile.WithLabelValues("written")); n != 0 {
		t.Errorf("second run wrote %v times", n)
	}
}

func TestMissingMeshIsRetried(t *testing.T) {
	st := store.New(etcdtest.Client(t, nil)) // no mesh yet
	kc := testClient(t)
	ctx := context.Background()
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "late",
		Labels: map[string]string{annotations.Injection: annotations.Enabled}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.CoreV1().Services("late").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 8080}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod, err := kc.CoreV1().Pods("late").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example/web"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	setStatus(t, kc, pod, "10.3.0.1", true)
	c, stop := startController(t, kc, st, prometheus.NewRegistry())
	defer stop()
	waitFor(t, "a no-mesh error", func() (bool, string) {
		n := testutil.ToFloat64(c.errors.WithLabelValues("no-mesh"))
		return n >= 1, fmt.Sprint(n)
	})
	if _, err := st.Create(ctx, resource.New(resource.MeshType, "", "default")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the Dataplane once the mesh exists", func() (bool, string) {
		_, _, err := getDP(st, "default", "web-1.late")
		return err == nil, fmt.Sprint(err)
	})
}
