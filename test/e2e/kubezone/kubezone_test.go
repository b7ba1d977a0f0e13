// Package kubezone runs a Kubernetes zone and a universal (VM) zone under
// one global control plane: the Kubernetes zone's k8s-controller (against a
// real kube-apiserver, k8s-controller/kubetest) turns a pod into a
// Dataplane of that zone and issues the pod's own dataplane token; a
// proxyless grpc-go client registered as a VM in the other zone calls the
// pod's service by name (xds:///backend.mesh) through the Kubernetes
// zone's ingress, with mTLS end to end. Wiring as test/e2e/ingress.
package kubezone

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	ingressapp "github.com/weftmesh/weft/ingress-manager/app"
	k8sapp "github.com/weftmesh/weft/k8s-controller/app"
	"github.com/weftmesh/weft/k8s-controller/kubetest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/run"
	"github.com/weftmesh/weft/pkg/token"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	"github.com/weftmesh/weft/test/e2e/internal/meshtest"
	eproc "github.com/weftmesh/weft/test/e2e/internal/proc"
	"github.com/weftmesh/weft/zone-sync/apptest"
)

var binDir string

// zone is one control plane's services (meshtest.Zone).
type zone = meshtest.Zone

var (
	startServices = meshtest.StartServices
	apply         = meshtest.Apply
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "weft-kubezone-e2e")
	if err != nil {
		panic(err)
	}
	binDir = dir
	code := func() int {
		defer os.RemoveAll(dir)
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "testapp"), "github.com/weftmesh/weft/test/e2e/xds/testapp")
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build testapp:", err)
			return 1
		}
		// One kube-apiserver for the binary, stopped after the tests.
		return kubetest.Main(m)
	}()
	os.Exit(code)
}

func runGroup(t *testing.T, ctx context.Context, g *run.Group) {
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
}

// startAgent runs what `weft-dp run --proxy-type grpc` runs for Dataplane
// name with tok; it returns the bootstrap path once a certificate is there.
func startAgent(t *testing.T, ctx context.Context, z *zone, name, tok string) string {
	t.Helper()
	return meshtest.GRPCAgent(t, ctx, z.XDS, name, tok)
}

var (
	controlRe = regexp.MustCompile(`^CONTROL (\S+)`)
	servingRe = regexp.MustCompile(`^SERVING`)
)

func TestPodInKubernetesZoneReachedFromVMZone(t *testing.T) {
	srv := kubetest.Start(t) // skips without the kube-apiserver binary (tools/kube-apiserver/build.sh)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c := apptest.Start(t, apptest.Options{Zones: 2, Log: log})
	startServices(t, ctx, log, "global", c.Global, "global")
	vmZone := startServices(t, ctx, log, "zone-1", c.Zones[0], "zone")
	kubeZone := startServices(t, ctx, log, "zone-2", c.Zones[1], "zone")

	// zone-2 is a Kubernetes zone: its k8s-controller (no webhooks here:
	// the pod is created as the webhook would leave it).
	k8sCfg := k8sapp.Default()
	k8sCfg.Mode, k8sCfg.Zone = k8sapp.ModeZone, "zone-2"
	k8sCfg.RestConfig = srv.Config()
	k8sCfg.Etcd.Client, k8sCfg.Encryption.Keyring, k8sCfg.Logger = kubeZone.CP.Client, kubeZone.CP.Keyring, log
	k8sCfg.WebhookAddress, k8sCfg.AdminAddress, k8sCfg.Pods.Inject = "", "", false
	k8s, err := k8sapp.New(ctx, k8sCfg)
	if err != nil {
		t.Fatal(err)
	}
	g := run.New(log)
	g.Add("k8s-controller", k8s.Run)
	runGroup(t, ctx, g)

	apply(t, c.Global, `
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
---
type: TrafficPermission
mesh: default
name: client-to-backend
sources:
- match:
    weft.io/service: client
destinations:
- match:
    weft.io/service: backend
`)
	for _, z := range []*zone{vmZone, kubeZone} {
		apptest.Eventually(t, time.Minute, func() error {
			_, err := z.CP.Store.Get(ctx, resource.TrafficPermissionType, "default", "client-to-backend")
			return err
		})
	}

	// The pod: a Service selecting it, proxyless, injected; its status set
	// as a kubelet would (IP 127.0.0.1, ready).
	kube := kubernetes.NewForConfigOrDie(srv.Config())
	ns := srv.Namespace(t)
	nsObj, err := kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if nsObj.Labels == nil {
		nsObj.Labels = map[string]string{}
	}
	nsObj.Labels["weft.io/sidecar-injection"] = "enabled"
	if _, err := kube.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	backendPort := eproc.FreePort(t)
	if _, err := kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "backend"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "backend"}, Ports: []corev1.ServicePort{
			{Name: "grpc", Port: 80, TargetPort: intstr.FromInt32(int32(backendPort)), AppProtocol: new("grpc")}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod, err := kube.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "backend-0", Labels: map[string]string{"app": "backend"},
			Annotations: map[string]string{"weft.io/proxy-type": "grpc", "weft.io/injected": "grpc"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example/backend",
			Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: int32(backendPort)}}}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "127.0.0.1", PodIPs: []corev1.PodIP{{IP: "127.0.0.1"}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	if _, err := kube.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	backendName := "backend-0." + ns
	apptest.Eventually(t, time.Minute, func() error {
		r, err := kubeZone.CP.Store.Get(ctx, resource.DataplaneType, "default", backendName)
		if err != nil {
			return err
		}
		if r.Meta.GetOrigin() != "zone-2" {
			return fmt.Errorf("origin %q", r.Meta.GetOrigin())
		}
		return nil
	})

	// The pod's weft-dp runs with the pod's own token, read from the
	// Secret the controller wrote (the one the webhook mounts).
	var podToken string
	apptest.Eventually(t, time.Minute, func() error {
		s, err := kube.CoreV1().Secrets(ns).Get(ctx, "weft-dp-token-backend-0", metav1.GetOptions{})
		if err != nil {
			return err
		}
		podToken = string(s.Data["token"])
		return nil
	})
	backendBoot := startAgent(t, ctx, kubeZone, backendName, podToken)
	server := eproc.Start(t, []string{"GRPC_XDS_BOOTSTRAP=" + backendBoot, "TESTAPP_NAME=zone-2"},
		filepath.Join(binDir, "testapp"), "server", "--port", fmt.Sprint(backendPort))
	server.WaitLine(t, servingRe, time.Minute)

	// The client is a VM in zone-1.
	apply(t, vmZone.CP, eproc.DataplaneYAML("client-1", "client", eproc.FreePort(t)))
	cc := token.Claims{Kind: token.KindDataplane, Mesh: "default", Services: []string{"client"}}
	cc.Subject = "client-1"
	clientTok, _, err := token.New(vmZone.CP.Store).Issue(ctx, cc, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	clientBoot := startAgent(t, ctx, vmZone, "client-1", clientTok)
	client := eproc.Start(t, []string{"GRPC_XDS_BOOTSTRAP=" + clientBoot, "GRPC_EXPERIMENTAL_XDS_SNI=true"},
		filepath.Join(binDir, "testapp"), "client", "--target", "xds:///backend.mesh")
	control := client.WaitLine(t, controlRe, time.Minute)[1]

	// zone-2's ZoneIngress, offering the pod's service, reaches zone-1.
	apptest.Eventually(t, time.Minute, func() error {
		rs, _, err := vmZone.CP.Store.ListAll(ctx, resource.ZoneIngressType, "")
		if err != nil {
			return err
		}
		for _, r := range rs {
			if slices.ContainsFunc(r.Spec.(*meshv1.ZoneIngress).GetAvailableServices(), func(s *meshv1.ZoneIngress_AvailableService) bool {
				return s.GetTags()[resource.ServiceTag] == "backend"
			}) {
				return nil
			}
		}
		return fmt.Errorf("zone-1 does not see zone-2's backend yet")
	})

	// The VM calls the pod by name, through zone-2's ingress; the pod sees
	// the VM's SPIFFE ID (mTLS end to end, the ingress does not terminate).
	apptest.Eventually(t, time.Minute, func() error {
		if got := eproc.Call(control); got != "OK spiffe://default/client zone-2" {
			return fmt.Errorf("call: %s", got)
		}
		return nil
	})
	if n := counter(t, kubeZone.Ingress, "weft_ingress_connections_total"); n < 1 {
		t.Fatalf("zone-2's ingress routed no connection")
	}
}

func counter(t *testing.T, a *ingressapp.App, name string) float64 {
	t.Helper()
	mfs, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
