package pods

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/weftmesh/weft/k8s-controller/internal/annotations"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
)

// Options configure a Controller.
type Options struct {
	// Zone is this zone's name: the Dataplanes' origin and weft.io/zone tag
	// (empty: a standalone control plane).
	Zone string
	// Resync is the informers' resync period (0: none).
	Resync time.Duration
	Log    *slog.Logger
	// Metrics registers the controller's metrics (nil: not registered).
	Metrics prometheus.Registerer
	// Meshes, when set, is watched so that pods waiting for their mesh get
	// their Dataplane as soon as it exists (else they wait for the retry
	// backoff).
	Meshes store.Reader
	// Tokens, when set, gives every injected pod of the mesh its own
	// dataplane token, in the Secret podtoken.SecretName(pod) (nil: none).
	Tokens *TokenOptions
}

// Controller keeps one Dataplane per pod of the mesh.
type Controller struct {
	client kubernetes.Interface
	st     *store.Store
	o      Options
	log    *slog.Logger

	queue workqueue.TypedRateLimitingInterface[string]
	pods  corelisters.PodLister
	svcs  corelisters.ServiceLister
	nss   corelisters.NamespaceLister

	mu       sync.Mutex
	written  map[string]string  // pod key → mesh of the Dataplane written for it
	reported map[string]problem // pod key → the last problem logged for it
	tokens   map[string]issued  // pod key → the token Secret written for it

	errors    *prometheus.CounterVec
	managed   prometheus.Gauge
	reconcile *prometheus.CounterVec
	synced    chan struct{}

	tokenWrites  prometheus.Counter
	tokenRevokes *prometheus.CounterVec
}

// New returns a controller; Run starts it.
func New(client kubernetes.Interface, st *store.Store, o Options) *Controller {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	c := &Controller{client: client, st: st, o: o, log: o.Log.With("component", "pods"),
		written: map[string]string{}, reported: map[string]problem{}, tokens: map[string]issued{}, synced: make(chan struct{}),
		tokenWrites: prometheus.NewCounter(prometheus.CounterOpts{Name: "weft_k8s_pod_tokens_written_total",
			Help: "Per-pod dataplane token Secrets written (a new pod, or its mesh or services changed)."}),
		tokenRevokes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weft_k8s_pod_token_revocations_total",
			Help: "Per-pod dataplane tokens revoked when their pod went away or was rebound, by result: revoked, error."}, []string{"result"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weft_k8s_pod_errors_total",
			Help: "Pods of the mesh that could not be made Dataplanes, by reason (see the controller's log)."}, []string{"reason"}),
		managed: prometheus.NewGauge(prometheus.GaugeOpts{Name: "weft_k8s_pod_dataplanes",
			Help: "Dataplanes written for pods and not deleted since."}),
		reconcile: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weft_k8s_pod_reconciles_total",
			Help: "Pod reconciles, by result: written, deleted, unchanged, skipped, error (retried)."}, []string{"result"}),
	}
	if o.Metrics != nil {
		o.Metrics.MustRegister(c.errors, c.managed, c.reconcile, c.tokenWrites, c.tokenRevokes)
	}
	return c
}

// Synced is closed once the informers have synced and stale Dataplanes of
// gone pods have been removed.
func (c *Controller) Synced() <-chan struct{} { return c.synced }

// Run watches Pods, Services and Namespaces until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	c.queue = workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "pods"})
	defer c.queue.ShutDown()
	factory := informers.NewSharedInformerFactory(c.client, c.o.Resync)
	defer factory.Shutdown()
	podInf := factory.Core().V1().Pods()
	svcInf := factory.Core().V1().Services()
	nsInf := factory.Core().V1().Namespaces()
	c.pods, c.svcs, c.nss = podInf.Lister(), svcInf.Lister(), nsInf.Lister()

	enqueuePod := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(key)
		}
	}
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: enqueuePod,
		UpdateFunc: func(_, obj any) { enqueuePod(obj) }, DeleteFunc: enqueuePod}); err != nil {
		return err
	}
	// A Service change touches the pods its old and new selectors select.
	svcChanged := func(objs ...any) {
		for _, obj := range objs {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if svc, ok := obj.(*corev1.Service); ok && len(svc.Spec.Selector) > 0 {
				c.enqueuePods(svc.Namespace, labels.SelectorFromValidatedSet(svc.Spec.Selector))
			}
		}
	}
	if _, err := svcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(o any) { svcChanged(o) },
		UpdateFunc: func(o, n any) { svcChanged(o, n) }, DeleteFunc: func(o any) { svcChanged(o) }}); err != nil {
		return err
	}
	nsChanged := func(obj any) {
		if ns, ok := obj.(*corev1.Namespace); ok {
			c.enqueuePods(ns.Name, labels.Everything())
		}
	}
	if _, err := nsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: nsChanged,
		UpdateFunc: func(_, n any) { nsChanged(n) }}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("pods: the %v informer did not sync", typ)
		}
	}
	if err := c.collectGarbage(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if c.o.Meshes != nil {
		sub := c.o.Meshes.Subscribe(ctx, "k8s-controller/pods", func(store.Batch) error {
			c.mu.Lock()
			defer c.mu.Unlock()
			for key, p := range c.reported {
				if p.reason == "no-mesh" {
					c.queue.Add(key)
				}
			}
			return nil
		})
		defer func() { <-sub.Done() }()
	}
	close(c.synced)
	c.log.Info("pods controller synced", "zone", c.o.Zone)

	go func() {
		<-ctx.Done()
		c.queue.ShutDown()
	}()
	for c.processNext(ctx) {
	}
	return nil
}

func (c *Controller) enqueuePods(ns string, sel labels.Selector) {
	pods, err := c.pods.Pods(ns).List(sel)
	if err != nil {
		return
	}
	for _, p := range pods {
		c.queue.Add(p.Namespace + "/" + p.Name)
	}
}

// collectGarbage deletes the Dataplanes this controller wrote for pods that
// are gone (deleted while it was not running) and remembers the others.
func (c *Controller) collectGarbage(ctx context.Context) error {
	all, _, err := c.st.ListAll(ctx, resource.DataplaneType, "")
	if err != nil {
		return fmt.Errorf("pods: list Dataplanes: %w", err)
	}
	byName := map[string]*corev1.Pod{}
	pods, err := c.pods.List(labels.Everything())
	if err != nil {
		return err
	}
	for _, p := range pods {
		byName[Name(p.Namespace, p.Name)] = p
	}
	for _, r := range all {
		if !managed(r) {
			continue
		}
		if p := byName[r.Meta.GetName()]; p != nil {
			c.remember(p.Namespace+"/"+p.Name, r.Meta.GetMesh())
			c.queue.Add(p.Namespace + "/" + p.Name)
			continue
		}
		if err := c.st.Delete(ctx, resource.DataplaneType, r.Meta.GetMesh(), r.Meta.GetName(), r.Meta.GetVersion()); err != nil && !store.IsNotFound(err) && !store.IsConflict(err) {
			return fmt.Errorf("pods: delete the Dataplane of a gone pod: %w", err)
		}
		c.log.Info("deleted the Dataplane of a pod that is gone", "mesh", r.Meta.GetMesh(), "dataplane", r.Meta.GetName())
	}
	for _, p := range pods {
		c.queue.Add(p.Namespace + "/" + p.Name)
	}
	return nil
}

func managed(r *resource.Resource) bool {
	return r.Meta.GetLabels()[annotations.ManagedBy] == annotations.ManagedByValue
}

func (c *Controller) remember(key, mesh string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.written[key]; !ok {
		c.managed.Inc()
	}
	c.written[key] = mesh
}

func (c *Controller) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.written[key]; ok {
		c.managed.Dec()
	}
	delete(c.written, key)
}

func (c *Controller) writtenMesh(key string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.written[key]
	return m, ok
}

func (c *Controller) processNext(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	result, err := c.sync(ctx, key)
	if err != nil {
		c.reconcile.WithLabelValues("error").Inc()
		if store.IsMeshNotFound(err) {
			// Retried with backoff: the mesh may yet arrive from global.
			c.report(key, "no-mesh", fmt.Sprintf("mesh does not exist in this zone (create it, or wait for it to sync from global); retrying: %v", err))
		} else {
			c.report(key, "error", fmt.Sprintf("retrying: %v", err))
		}
		c.queue.AddRateLimited(key)
		return true
	}
	c.reconcile.WithLabelValues(result).Inc()
	c.queue.Forget(key)
	return true
}

type problem struct{ reason, msg string }

// report logs a pod's problem once (until it changes or clears).
func (c *Controller) report(key, reason, msg string) {
	c.mu.Lock()
	same := c.reported[key] == problem{reason, msg}
	c.reported[key] = problem{reason, msg}
	c.mu.Unlock()
	if reason != "error" {
		c.errors.WithLabelValues(reason).Inc()
	}
	if !same {
		c.log.Warn("pod has no Dataplane", "pod", key, "reason", reason, "err", msg)
	}
}

func (c *Controller) clearReport(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.reported, key)
}

// sync makes the store match one pod: returns the result label, or an
// error to retry (a store failure; a bad pod is not retried).
func (c *Controller) sync(ctx context.Context, key string) (string, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return "skipped", nil
	}
	pod, err := c.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		pod = nil
	} else if err != nil {
		return "", err
	}
	var desired *resource.Resource
	if pod != nil {
		nsObj, _ := c.nss.Get(ns)
		svcs, err := c.svcs.Services(ns).List(labels.Everything())
		if err != nil {
			return "", err
		}
		if c.o.Tokens != nil {
			if err := c.syncToken(ctx, key, ns, name, pod, nsObj, svcs); err != nil {
				return "", err
			}
		}
		desired, err = Build(pod, nsObj, svcs, c.o.Zone)
		if pe := (*PodError)(nil); errors.As(err, &pe) {
			c.report(key, pe.Reason, pe.Msg)
		} else {
			c.clearReport(key)
		}
	} else {
		c.clearReport(key)
		if c.o.Tokens != nil {
			if err := c.syncToken(ctx, key, ns, name, nil, nil, nil); err != nil {
				return "", err
			}
		}
	}
	dpName := Name(ns, name)
	prevMesh, had := c.writtenMesh(key)
	if desired == nil {
		if !had {
			return "unchanged", nil
		}
		if err := c.delete(ctx, prevMesh, dpName); err != nil {
			return "", err
		}
		c.forget(key)
		return "deleted", nil
	}
	if had && prevMesh != desired.Meta.GetMesh() {
		if err := c.delete(ctx, prevMesh, dpName); err != nil {
			return "", err
		}
		c.forget(key)
	}
	written, err := c.write(ctx, desired)
	if err != nil {
		var pe *PodError
		if errors.As(err, &pe) {
			c.report(key, pe.Reason, pe.Msg)
			return "skipped", nil
		}
		return "", err
	}
	c.remember(key, desired.Meta.GetMesh())
	if written {
		return "written", nil
	}
	return "unchanged", nil
}

// write stores r unless the stored Dataplane already matches it; it never
// touches a Dataplane it does not manage.
func (c *Controller) write(ctx context.Context, r *resource.Resource) (bool, error) {
	cur, err := c.st.Get(ctx, resource.DataplaneType, r.Meta.GetMesh(), r.Meta.GetName())
	switch {
	case store.IsNotFound(err):
	case err != nil:
		return false, err
	case !managed(cur):
		return false, podErr("conflict", "Dataplane %s/%s exists and was not written by the pods controller (no %s=%s label): left as it is",
			r.Meta.GetMesh(), r.Meta.GetName(), annotations.ManagedBy, annotations.ManagedByValue)
	case proto.Equal(cur.Spec, r.Spec) && cur.Meta.GetOrigin() == r.Meta.GetOrigin():
		return false, nil
	default:
		r.Meta.Version = cur.Meta.GetVersion()
	}
	_, _, err = c.st.Upsert(ctx, r)
	return err == nil, err
}

func (c *Controller) delete(ctx context.Context, mesh, name string) error {
	cur, err := c.st.Get(ctx, resource.DataplaneType, mesh, name)
	if store.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !managed(cur) {
		return nil
	}
	err = c.st.Delete(ctx, resource.DataplaneType, mesh, name, cur.Meta.GetVersion())
	if store.IsNotFound(err) {
		return nil
	}
	return err
}
