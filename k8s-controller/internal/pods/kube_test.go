package pods

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
)

// testClient is the kube client the tests drive.
func testClient(t *testing.T) kubernetes.Interface {
	t.Helper()
	return fake.NewClientset()
}

func TestPodsToDataplanes(t *testing.T) {
	st := newStoreWithMesh(t)
	kc := testClient(t)
	c, stop := startController(t, kc, st, prometheus.NewRegistry())
	defer stop()
	PodsToDataplanes(t, c, kc, st)
}
