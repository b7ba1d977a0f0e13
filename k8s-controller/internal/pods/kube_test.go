package pods

import (
	"os"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/weftmesh/weft/k8s-controller/kubetest"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

// testClient is client-go's fake clientset, for the tests that need no
// API server semantics beyond watch.
func testClient(t *testing.T) kubernetes.Interface {
	t.Helper()
	return fake.NewClientset()
}

// The controller against a real kube-apiserver (tests/kubelet set pod
// status themselves).
func TestPodsToDataplanesRealAPIServer(t *testing.T) {
	srv := kubetest.Start(t)
	st := newStoreWithMesh(t)
	kc := kubernetes.NewForConfigOrDie(srv.Config())
	c, stop := startController(t, kc, st, prometheus.NewRegistry())
	defer stop()
	PodsToDataplanes(t, c, kc, st)
}

// The same flow through client-go's fake clientset, which runs everywhere.
func TestPodsToDataplanesFakeClient(t *testing.T) {
	st := newStoreWithMesh(t)
	kc := testClient(t)
	c, stop := startController(t, kc, st, prometheus.NewRegistry())
	defer stop()
	PodsToDataplanes(t, c, kc, st)
}
