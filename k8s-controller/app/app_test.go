package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/k8s-controller/app"
	"github.com/weftmesh/weft/k8s-controller/crd"
	"github.com/weftmesh/weft/k8s-controller/kubetest"
	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

// Generous: the machine running the tests may be loaded.
const wait = 2 * time.Minute

var crdsOnce sync.Once

// installCRDs applies the committed CRDs (charts/k8s-controller/crds) once
// per API server and waits until they are served.
func installCRDs(t *testing.T, srv *kubetest.Server) {
	t.Helper()
	var err error
	crdsOnce.Do(func() {
		dyn := dynamic.NewForConfigOrDie(srv.Config())
		gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
		paths, _ := filepath.Glob(filepath.Join("..", "..", "charts", "k8s-controller", "crds", "*.yaml"))
		if len(paths) == 0 {
			err = errors.New("no CRDs under charts/k8s-controller/crds")
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		for _, p := range paths {
			b, rerr := os.ReadFile(p)
			if rerr != nil {
				err = rerr
				return
			}
			var obj map[string]any
			if err = yaml.Unmarshal(b, &obj); err != nil {
				return
			}
			if _, err = dyn.Resource(gvr).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil {
				err = fmt.Errorf("%s: %w", p, err)
				return
			}
		}
		// Served once a list of every kind answers.
		for _, k := range crd.Kinds() {
			if err = eventually(ctx, func() error {
				_, lerr := dyn.Resource(k.GVR()).List(ctx, metav1.ListOptions{Limit: 1})
				return lerr
			}); err != nil {
				err = fmt.Errorf("%s not served: %w", k.Plural, err)
				return
			}
		}
	})
	if err != nil {
		t.Fatalf("install CRDs: %v", err)
	}
}

// eventually retries fn until it succeeds or ctx ends.
func eventually(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func waitFor(t *testing.T, what string, fn func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := eventually(ctx, fn); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

type env struct {
	srv  *kubetest.Server
	dyn  dynamic.Interface
	st   *store.Store
	logs *syncBuffer
	app  *app.App
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs a controller on its own etcd against the shared API server,
// with its webhook registered by URL under a name of the test's own; the
// webhook configuration is deleted when the test ends, so no other test
// calls a stopped webhook.
func start(t *testing.T, mutate func(*app.Config)) *env {
	t.Helper()
	srv := kubetest.Start(t)
	installCRDs(t, srv)
	cli := etcdtest.Client(t, nil)
	keys, err := seal.New(seal.Key{ID: "k", Bytes: bytes.Repeat([]byte{7}, seal.KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cfg := app.Default()
	cfg.RestConfig = srv.Config()
	cfg.Etcd.Client = cli
	cfg.Encryption.Keyring = keys
	cfg.WebhookListener = ln
	cfg.WebhookURL = "https://" + ln.Addr().String()
	cfg.WebhookConfigName = "weft-test-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	cfg.Pods.InjectConfigName = cfg.WebhookConfigName + "-inject"
	cfg.AdminAddress = "127.0.0.1:0"
	cfg.Resync = 2 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if mutate != nil {
		mutate(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("app.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	kube := kubernetes.NewForConfigOrDie(srv.Config())
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), wait)
		defer dcancel()
		if err := kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(dctx, cfg.WebhookConfigName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete webhook configuration: %v", err)
		}
		if err := kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(dctx, cfg.Pods.InjectConfigName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete injection webhook configuration: %v", err)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(wait):
			t.Error("the controller did not stop")
		}
		if t.Failed() {
			t.Logf("controller logs:\n%s", logs.String())
		}
	})
	e := &env{srv: srv, dyn: dynamic.NewForConfigOrDie(srv.Config()), st: a.Store(), logs: logs, app: a}
	// The webhook is registered: a refused object proves it is called.
	waitFor(t, "webhook registered", func() error {
		k, _ := crd.KindOf("TrafficPermission")
		_, err := e.dyn.Resource(k.GVR()).Create(context.Background(), e.cr(k, "probe-not-stored", "m", map[string]any{"sources": []any{}}), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil || !strings.Contains(err.Error(), "validate.weft.io") {
			return fmt.Errorf("not refused by the webhook yet: %v", err)
		}
		return nil
	})
	return e
}

func (e *env) cr(k crd.Kind, name, mesh string, spec map[string]any) *unstructured.Unstructured {
	obj := map[string]any{"apiVersion": crd.Group + "/" + crd.Version, "kind": k.Kind, "metadata": map[string]any{"name": name}, "spec": spec}
	if mesh != "" && k.Type.MeshScoped() {
		obj["mesh"] = mesh
	}
	return &unstructured.Unstructured{Object: obj}
}

func (e *env) apply(t *testing.T, k crd.Kind, name, mesh string, spec map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := e.dyn.Resource(k.GVR()).Create(ctx, e.cr(k, name, mesh, spec), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create %s %s: %v", k.Kind, name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = e.dyn.Resource(k.GVR()).Delete(ctx, name, metav1.DeleteOptions{})
	})
}

func (e *env) stored(k crd.Kind, mesh, name string) (*resource.Resource, error) {
	if !k.Type.MeshScoped() {
		mesh = ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return e.st.Get(ctx, k.Type, mesh, name)
}

func (e *env) accepted(k crd.Kind, name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u, err := e.dyn.Resource(k.GVR()).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, _ := c.(map[string]any); m["type"] == "Accepted" {
			if fmt.Sprint(m["observedGeneration"]) != fmt.Sprint(u.GetGeneration()) {
				return "", fmt.Errorf("condition of generation %v, object at %d", m["observedGeneration"], u.GetGeneration())
			}
			return fmt.Sprintf("%v %v: %v", m["status"], m["reason"], m["message"]), nil
		}
	}
	return "", errors.New("no Accepted condition yet")
}

func validSpecs(t *testing.T) map[string]map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "crd", "testdata", "valid-specs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// Every kind applied with the Kubernetes API lands in the store with this
// control plane's origin, and its CR says it was accepted.
func TestEveryKindAppliedLandsInTheStore(t *testing.T) {
	e := start(t, func(c *app.Config) { c.Mode, c.Zone = app.ModeStandalone, "" })
	specs := validSpecs(t)
	mesh := "every-kind"
	meshKind, _ := crd.KindOf("Mesh")
	e.apply(t, meshKind, mesh, "", specs["Mesh"])
	waitFor(t, "mesh stored", func() error { _, err := e.stored(meshKind, "", mesh); return err })
	for _, k := range crd.Kinds() {
		if k.Kind == "Mesh" {
			continue
		}
		e.apply(t, k, "ek-"+strings.ToLower(k.Kind), mesh, specs[k.Kind])
	}
	for _, k := range crd.Kinds() {
		name := "ek-" + strings.ToLower(k.Kind)
		if k.Kind == "Mesh" {
			name = mesh
		}
		waitFor(t, k.Kind+" stored and accepted", func() error {
			r, err := e.stored(k, mesh, name)
			if err != nil {
				return err
			}
			if r.Meta.GetLabels()[crd.ManagedByLabel] != crd.ManagedBy || r.Meta.GetOrigin() != "" {
				return fmt.Errorf("stored meta %v", r.Meta)
			}
			st, err := e.accepted(k, name)
			if err != nil {
				return err
			}
			if !strings.HasPrefix(st, "True Accepted") {
				return fmt.Errorf("condition %s", st)
			}
			return nil
		})
	}
}

// An invalid CR is refused by the webhook with the REST API's field paths
// and never reaches the store.
func TestTheWebhookRefusesAnInvalidResourceWithFieldPaths(t *testing.T) {
	e := start(t, nil)
	k, _ := crd.KindOf("TrafficPermission")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, err := e.dyn.Resource(k.GVR()).Create(ctx, e.cr(k, "bad", "default", map[string]any{
		"sources":      []any{},
		"destinations": []any{map[string]any{"match": map[string]any{"weft.io/service": "*"}}},
	}), metav1.CreateOptions{})
	if err == nil {
		t.Fatal("an invalid TrafficPermission was accepted")
	}
	var se *apierrors.StatusError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "sources:") {
		t.Fatalf("error %v: want the webhook's refusal naming field sources", err)
	}
	if _, err := e.stored(k, "default", "bad"); !store.IsNotFound(err) {
		t.Fatalf("store: %v, want not found", err)
	}
}

// The CR wins: a store copy changed (as through the REST API) or deleted
// is put back; deleting the CR deletes the copy; a mesh that does not
// exist is reported on the CR and retried.
func TestTheCRWinsAndItsDeletionRemovesTheCopy(t *testing.T) {
	e := start(t, nil)
	specs := validSpecs(t)
	meshKind, _ := crd.KindOf("Mesh")
	tp, _ := crd.KindOf("TrafficPermission")
	mesh := "cr-wins"
	e.apply(t, tp, "allow", mesh, specs["TrafficPermission"])
	waitFor(t, "missing mesh reported", func() error {
		st, err := e.accepted(tp, "allow")
		if err != nil {
			return err
		}
		if !strings.HasPrefix(st, "False StoreError") || !strings.Contains(st, mesh) {
			return fmt.Errorf("condition %s", st)
		}
		return nil
	})
	e.apply(t, meshKind, mesh, "", specs["Mesh"])
	var want *resource.Resource
	waitFor(t, "stored once the mesh exists", func() error {
		r, err := e.stored(tp, mesh, "allow")
		want = r
		return err
	})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	changed := want.Clone()
	changed.Spec.(*meshv1.TrafficPermission).Sources[0].Match["weft.io/service"] = "intruder"
	if _, err := e.st.Update(ctx, changed); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "changed copy put back", func() error {
		r, err := e.stored(tp, mesh, "allow")
		if err != nil {
			return err
		}
		if !proto.Equal(r.Spec, want.Spec) {
			return fmt.Errorf("store has %v", r.Spec)
		}
		return nil
	})
	cur, _ := e.stored(tp, mesh, "allow")
	if err := e.st.Delete(ctx, tp.Type, mesh, "allow", cur.Meta.GetVersion()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "deleted copy put back", func() error { _, err := e.stored(tp, mesh, "allow"); return err })
	if err := e.dyn.Resource(tp.GVR()).Delete(ctx, "allow", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "copy deleted with its CR", func() error {
		if _, err := e.stored(tp, mesh, "allow"); !store.IsNotFound(err) {
			return fmt.Errorf("still stored: %v", err)
		}
		return nil
	})
	if !strings.Contains(e.logs.String(), "putting back the custom resource's spec") {
		t.Error("the revert was not logged")
	}
}

// In zone mode the CR's copy has the zone as origin, and kinds owned by
// global are refused with the owner named.
func TestZoneModeWritesTheZoneOriginAndRefusesGlobalKinds(t *testing.T) {
	e := start(t, func(c *app.Config) { c.Mode, c.Zone = app.ModeZone, "zone-k" })
	specs := validSpecs(t)
	zi, _ := crd.KindOf("ZoneIngress")
	e.apply(t, zi, "zk-ingress", "", specs["ZoneIngress"])
	waitFor(t, "zone ingress stored with the zone origin", func() error {
		r, err := e.stored(zi, "", "zk-ingress")
		if err != nil {
			return err
		}
		if r.Meta.GetOrigin() != "zone-k" {
			return fmt.Errorf("origin %q", r.Meta.GetOrigin())
		}
		return nil
	})
	tp, _ := crd.KindOf("TrafficPermission")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, err := e.dyn.Resource(tp.GVR()).Create(ctx, e.cr(tp, "zk-tp", "default", specs["TrafficPermission"]), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "owned by the global control plane") {
		t.Fatalf("TrafficPermission in a zone: %v, want refused as owned by global", err)
	}
}

// The controller keeps working across an API server restart: a store copy
// changed while the API server is down is put back from the cache, and a
// CR applied after the restart lands in the store (the informers re-list
// and re-watch).
func TestKeepsWorkingAcrossAnAPIServerRestart(t *testing.T) {
	e := start(t, nil)
	specs := validSpecs(t)
	meshKind, _ := crd.KindOf("Mesh")
	tp, _ := crd.KindOf("TrafficPermission")
	mesh := "restart"
	e.apply(t, meshKind, mesh, "", specs["Mesh"])
	e.apply(t, tp, "before", mesh, specs["TrafficPermission"])
	var want *resource.Resource
	waitFor(t, "stored before the restart", func() error {
		r, err := e.stored(tp, mesh, "before")
		want = r
		return err
	})
	e.srv.Stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*wait)
	defer cancel()
	changed := want.Clone()
	changed.Spec.(*meshv1.TrafficPermission).Sources[0].Match["weft.io/service"] = "while-down"
	if _, err := e.st.Update(ctx, changed); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "put back while the API server is down", func() error {
		r, err := e.stored(tp, mesh, "before")
		if err != nil {
			return err
		}
		if !proto.Equal(r.Spec, want.Spec) {
			return fmt.Errorf("store has %v", r.Spec)
		}
		return nil
	})
	e.srv.Restart(t)
	e.apply(t, tp, "after", mesh, specs["TrafficPermission"])
	waitFor(t, "CR applied after the restart stored", func() error { _, err := e.stored(tp, mesh, "after"); return err })
	waitFor(t, "accepted after the restart", func() error {
		st, err := e.accepted(tp, "after")
		if err == nil && !strings.HasPrefix(st, "True") {
			err = errors.New(st)
		}
		return err
	})
}
