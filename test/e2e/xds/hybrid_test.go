package xds

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	apiapp "github.com/weftmesh/weft/api-server/app"
	dnsapp "github.com/weftmesh/weft/dns-server/app"
	k8sapp "github.com/weftmesh/weft/k8s-controller/app"
	"github.com/weftmesh/weft/k8s-controller/crd"
	"github.com/weftmesh/weft/k8s-controller/kubetest"
	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/run"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/token"
)

// runApps runs in-process services on one run.Group until the test ends.
func runApps(t *testing.T, apps map[string]func(context.Context) error) {
	t.Helper()
	g := run.New(slog.New(slog.DiscardHandler))
	for name, fn := range apps {
		g.Add(name, fn)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("services: %v", err)
		}
	})
}

// TestHybridPodAndVM: a grpc-go server registered as a pod-derived
// Dataplane (a Pod with IP 127.0.0.1 in a real kube-apiserver, turned
// into a Dataplane by k8s-controller) and a grpc-go client registered as a
// VM Dataplane over REST (weft-dp --dataplane-file against the api-server)
// call each other through xds:///backend.mesh with mTLS, and dns-server
// answers a VIP for both services.
func TestHybridPodAndVM(t *testing.T) {
	srv := kubetest.Start(t) // skips without the kube-apiserver binary (tools/kube-apiserver/build.sh)
	e := newEnv(t)
	ctx := context.Background()
	ring, err := seal.Parse(keyText)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	apiCfg := apiapp.Default()
	apiCfg.GRPCAddress, apiCfg.HTTPAddress, apiCfg.AdminAddress = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	apiCfg.Etcd.Client, apiCfg.Encryption.Keyring, apiCfg.Logger = etcdtest.Client(t, e.etcd), ring, log
	api, err := apiapp.New(ctx, apiCfg)
	if err != nil {
		t.Fatal(err)
	}
	dnsCfg := dnsapp.Default()
	dnsCfg.Address, dnsCfg.AdminAddress, dnsCfg.ResolvConf = "127.0.0.1:0", "", ""
	dnsCfg.Etcd.Client, dnsCfg.Logger = etcdtest.Client(t, e.etcd), log
	dns, err := dnsapp.New(dnsCfg)
	if err != nil {
		t.Fatal(err)
	}
	// The CRDs, as the chart installs them, before the controller starts
	// watching (it syncs CRs once every kind's cache has synced).
	dyn := dynamic.NewForConfigOrDie(srv.Config())
	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, k := range crd.Kinds() {
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(k.CRD())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dyn.Resource(crdGVR).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("install the %s CRD: %v", k.Kind, err)
		}
	}
	for _, k := range crd.Kinds() {
		eventually(t, time.Minute, func() error {
			_, err := dyn.Resource(k.GVR()).List(ctx, metav1.ListOptions{Limit: 1})
			return err
		})
	}
	kind, ok := crd.KindOf("TrafficPermission")
	if !ok {
		t.Fatal("no TrafficPermission CRD kind")
	}
	k8sCfg := k8sapp.Default()
	k8sCfg.RestConfig = srv.Config()
	k8sCfg.Etcd.Client, k8sCfg.Encryption.Keyring, k8sCfg.Logger = etcdtest.Client(t, e.etcd), ring, log
	k8sCfg.WebhookAddress, k8sCfg.AdminAddress, k8sCfg.Pods.Inject = "", "", false
	k8s, err := k8sapp.New(ctx, k8sCfg)
	if err != nil {
		t.Fatal(err)
	}
	runApps(t, map[string]func(context.Context) error{"api-server": api.Run, "dns-server": dns.Run, "k8s-controller": k8s.Run})
	replica := e.startReplica(t, "replica-hybrid")

	backendPort, clientPort := freePort(t), freePort(t)
	e.apply(meshYAML + "---" + permissionYAML)

	// The server is a pod: a Service selecting it, its status set as a
	// kubelet would (IP 127.0.0.1, ready).
	kube := kubernetes.NewForConfigOrDie(srv.Config())
	ns := srv.Namespace(t)
	nsObj, err := kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nsObj.Labels["weft.io/sidecar-injection"] = "enabled"
	if _, err := kube.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "backend"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "backend"}, Ports: []corev1.ServicePort{
			{Name: "grpc", Port: 80, TargetPort: intstr.FromInt32(int32(backendPort)), AppProtocol: new("grpc")}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod, err := kube.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "backend-0", Labels: map[string]string{"app": "backend"},
			Annotations: map[string]string{"weft.io/proxy-type": "grpc"}},
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
	eventually(t, time.Minute, func() error {
		_, err := e.st.Get(ctx, resource.DataplaneType, "default", backendName)
		return err
	})

	// The pod's weft-dp (as injected, proxyless) and the server.
	backendBoot := e.startWeftDP(t, replica.addr, backendName, "")
	server := start(t, []string{"GRPC_XDS_BOOTSTRAP=" + backendBoot}, "testapp", "server", "--port", fmt.Sprint(backendPort))
	server.WaitLine(t, servingRe, 30*time.Second)

	// The client is a VM: weft-dp registers its Dataplane over REST.
	dir := t.TempDir()
	dpFile, adminFile := filepath.Join(dir, "client.yaml"), filepath.Join(dir, "admin-token")
	if err := os.WriteFile(dpFile, []byte(dataplaneYAML("client-1", "client", clientPort)), 0o600); err != nil {
		t.Fatal(err)
	}
	adminTok, err := api.IssueAdminToken(ctx, "admin", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(adminFile, []byte(adminTok), 0o600); err != nil {
		t.Fatal(err)
	}
	clientTok := e.issueToken("client-1", token.Claims{Mesh: "default", Services: []string{"client"}}, time.Hour)
	clientBoot := e.startWeftDP(t, replica.addr, "client-1", clientTok,
		"--dataplane-file", dpFile, "--api-url", "http://"+api.HTTPAddr(), "--api-token-file", adminFile)
	client := start(t, []string{"GRPC_XDS_BOOTSTRAP=" + clientBoot, "GRPC_EXPERIMENTAL_XDS_SNI=true"}, "testapp", "client", "--target", "xds:///backend.mesh")
	control := client.WaitLine(t, controlRe, 30*time.Second)[1]

	// The VM calls the pod with mTLS; the pod sees the VM's identity.
	eventually(t, 60*time.Second, func() error {
		if got := call(control); got != "OK spiffe://default/client" {
			return fmt.Errorf("call: %s", got)
		}
		return nil
	})

	// A CR applied through the Kubernetes API (as kubectl apply does) is
	// served by the REST API.
	cr := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": crd.Group + "/" + crd.Version, "kind": kind.Kind,
		"metadata": map[string]any{"name": "from-kubectl"}, "mesh": "default",
		"spec": map[string]any{
			"sources":      []any{map[string]any{"match": map[string]any{"weft.io/service": "client"}}},
			"destinations": []any{map[string]any{"match": map[string]any{"weft.io/service": "backend"}}},
		},
	}}
	if _, err := dyn.Resource(kind.GVR()).Create(ctx, cr, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create the TrafficPermission CR: %v", err)
	}
	eventually(t, 30*time.Second, func() error {
		req, err := http.NewRequest("GET", "http://"+api.HTTPAddr()+"/meshes/default/traffic-permissions/from-kubectl", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+adminTok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"from-kubectl"`) || !strings.Contains(string(body), "client") {
			return fmt.Errorf("GET: %d %s", resp.StatusCode, body)
		}
		return nil
	})

	// DNS: both services have a VIP.
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", dns.UDPAddr())
	}}
	for _, name := range []string{"backend.mesh", "client.mesh"} {
		eventually(t, 30*time.Second, func() error {
			addrs, err := resolver.LookupHost(ctx, name)
			if err != nil {
				return err
			}
			if len(addrs) != 1 {
				return fmt.Errorf("%s: %v", name, addrs)
			}
			if ip, err := netip.ParseAddr(addrs[0]); err != nil || !ip.Is4() {
				return fmt.Errorf("%s: %v is not a VIP", name, addrs)
			}
			return nil
		})
	}
}
