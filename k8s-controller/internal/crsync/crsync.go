// Package crsync keeps the store in step with the Weft custom resources:
// each CR's resource is written to etcd (origin = this control plane, as
// the api-server writes), its status conditions say whether it was
// accepted (with the REST API's field-path errors when not), and the store
// copy of a deleted CR is removed.
//
// Which side wins: the CR. A store copy written from a CR carries the label
// weft.io/managed-by=k8s-controller; when it is changed through the REST API
// (or deleted) the controller writes the CR's spec back, at once (it watches
// the store) and at every resync. Resources written through the REST API
// without a CR are left alone; a CR applied with the name of one takes it
// over.
package crsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/weftmesh/weft/k8s-controller/crd"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/telemetry"
)

// Condition types and reasons on a CR's status.
const (
	ConditionAccepted = "Accepted"
	ReasonAccepted    = "Accepted"
	// ReasonInvalid: the spec does not decode or validate; causes lists
	// the field paths.
	ReasonInvalid = "Invalid"
	// ReasonOwnedElsewhere: this control plane may not write the kind.
	ReasonOwnedElsewhere = "OwnedElsewhere"
	// ReasonStoreError: the store refused or failed the write (e.g. the
	// mesh does not exist); retried with a backoff.
	ReasonStoreError = "StoreError"
)

// Config is the controller's configuration.
type Config struct {
	Dynamic   dynamic.Interface
	Store     *store.Store
	Informers *store.Informers
	// Mode, Zone and Origin are the control plane's (app.Config).
	Mode, Zone, Origin string
	// Resync is how often every CR is checked again.
	Resync   time.Duration
	Log      *slog.Logger
	Registry prometheus.Registerer
	// Kinds to sync (default: crd.Kinds()).
	Kinds []crd.Kind
}

type key struct{ kind, name string }

// Controller is the CR ↔ store sync.
type Controller struct {
	cfg   Config
	kinds map[string]crd.Kind
	queue workqueue.TypedRateLimitingInterface[key]
	syncs *prometheus.CounterVec
	// Set once by Run before any worker starts (listers are read without
	// the lock afterwards); read by Ready under mu.
	mu      sync.Mutex
	listers map[string]cache.GenericLister
	synced  map[string]cache.InformerSynced
	ready   bool
}

// New returns a controller; Run starts it.
func New(cfg Config) *Controller {
	if cfg.Kinds == nil {
		cfg.Kinds = crd.Kinds()
	}
	c := &Controller{cfg: cfg, kinds: map[string]crd.Kind{}}
	for _, k := range cfg.Kinds {
		c.kinds[k.Kind] = k
	}
	c.syncs = telemetry.MustRegister(cfg.Registry, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weft_k8s_cr_syncs_total",
		Help: "Custom resources synced to the store, by kind and result (written, unchanged, deleted, invalid, owned_elsewhere, error).",
	}, []string{"kind", "result"}))
	return c
}

// Ready reports whether every kind's CR cache has synced.
func (c *Controller) Ready() error {
	c.mu.Lock()
	synced, ready := c.synced, c.ready
	c.mu.Unlock()
	if synced == nil {
		return errors.New("not started")
	}
	var missing []string
	for kind, s := range synced {
		if !s() {
			missing = append(missing, kind)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("custom resources not listed yet (are the CRDs installed?): %s", strings.Join(missing, ", "))
	}
	if !ready {
		return errors.New("the store copies have not been checked yet")
	}
	return nil
}

// Run syncs until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	c.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[key](200*time.Millisecond, 30*time.Second),
		workqueue.TypedRateLimitingQueueConfig[key]{Name: "weft-crs"})
	defer c.queue.ShutDown()
	factory := dynamicinformer.NewDynamicSharedInformerFactory(c.cfg.Dynamic, c.cfg.Resync)
	listers, synced := map[string]cache.GenericLister{}, map[string]cache.InformerSynced{}
	for _, k := range c.cfg.Kinds {
		inf := factory.ForResource(k.GVR())
		kind := k.Kind
		enqueue := func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if m, err := meta.Accessor(obj); err == nil {
				c.queue.Add(key{kind, m.GetName()})
			}
		}
		if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: enqueue, UpdateFunc: func(_, n any) { enqueue(n) }, DeleteFunc: enqueue,
		}); err != nil {
			return err
		}
		listers[kind] = inf.Lister()
		synced[kind] = inf.Informer().HasSynced
	}
	c.mu.Lock()
	c.listers, c.synced = listers, synced
	c.mu.Unlock()
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	// The CRDs may be missing: wait, saying so once, without failing.
	waitCtx, cancelWait := context.WithTimeout(ctx, 30*time.Second)
	if !cache.WaitForCacheSync(waitCtx.Done(), c.syncedFuncs()...) && ctx.Err() == nil {
		c.cfg.Log.Warn("waiting for the Weft custom resources to be listed; install the CRDs (charts/k8s-controller/crds, or the chart)", "error", c.Ready())
		cache.WaitForCacheSync(ctx.Done(), c.syncedFuncs()...)
	}
	cancelWait()
	if ctx.Err() != nil {
		return nil
	}
	// The store side: a managed copy changed or deleted behind the
	// controller's back is put back from its CR; an orphan (its CR was
	// deleted while the controller was down) is removed.
	for _, k := range c.cfg.Kinds {
		kind := k.Kind
		c.cfg.Informers.For(k.Type).Subscribe(ctx, "k8s-controller-"+kind, func(b store.Batch) error {
			for _, ev := range b.Events {
				rs := ev.Resources
				if ev.Resource != nil {
					rs = append(rs, ev.Resource)
				}
				for _, r := range rs {
					if r.Meta.GetLabels()[crd.ManagedByLabel] == crd.ManagedBy || ev.Kind == store.EventDelete {
						c.queue.Add(key{kind, r.Meta.GetName()})
					}
				}
			}
			return nil
		})
	}
	go c.resyncLoop(ctx)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c.next(ctx) {
			}
		}()
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
	return nil
}

func (c *Controller) syncedFuncs() []cache.InformerSynced {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]cache.InformerSynced, 0, len(c.synced))
	for _, s := range c.synced {
		out = append(out, s)
	}
	return out
}

// resyncLoop checks every store copy and CR at start and every Resync.
func (c *Controller) resyncLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.Resync)
	defer t.Stop()
	for {
		if err := c.enqueueAll(ctx); err != nil {
			c.cfg.Log.Warn("cannot list the store copies of custom resources; retrying at the next resync", "error", err, "resync", c.cfg.Resync)
		} else {
			c.mu.Lock()
			c.ready = true
			c.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Controller) enqueueAll(ctx context.Context) error {
	for _, k := range c.cfg.Kinds {
		objs, err := c.listers[k.Kind].List(labels.Everything())
		if err != nil {
			return err
		}
		for _, o := range objs {
			if m, err := meta.Accessor(o); err == nil {
				c.queue.Add(key{k.Kind, m.GetName()})
			}
		}
		rs, _, err := c.cfg.Store.ListAll(ctx, k.Type, "")
		if err != nil {
			return err
		}
		for _, r := range rs {
			if r.Meta.GetLabels()[crd.ManagedByLabel] == crd.ManagedBy {
				c.queue.Add(key{k.Kind, r.Meta.GetName()})
			}
		}
	}
	return nil
}

func (c *Controller) next(ctx context.Context) bool {
	k, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(k)
	opCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.sync(opCtx, k); err != nil {
		if ctx.Err() == nil {
			c.cfg.Log.Warn("custom resource not synced; retrying with a backoff", "kind", k.kind, "name", k.name, "error", err)
		}
		c.queue.AddRateLimited(k)
		return true
	}
	c.queue.Forget(k)
	return true
}

// sync makes the store agree with the CR named by k.
func (c *Controller) sync(ctx context.Context, k key) error {
	kind := c.kinds[k.kind]
	obj, err := c.listers[k.kind].Get(k.name)
	if apierrors.IsNotFound(err) {
		return c.deleteOrphans(ctx, kind, k.name, "")
	}
	if err != nil {
		return err
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return fmt.Errorf("unexpected object %T", obj)
	}
	if err := crd.Writable(kind, c.cfg.Mode, c.cfg.Zone); err != nil {
		c.syncs.WithLabelValues(k.kind, "owned_elsewhere").Inc()
		return c.setStatus(ctx, kind, u, metav1.ConditionFalse, ReasonOwnedElsewhere, err.Error(), nil)
	}
	want, err := crd.ToResource(kind, u.Object, c.cfg.Origin)
	if err != nil {
		c.syncs.WithLabelValues(k.kind, "invalid").Inc()
		causes := crd.Causes(err)
		return c.setStatus(ctx, kind, u, metav1.ConditionFalse, ReasonInvalid, "invalid "+kind.Kind+": "+err.Error(), causes)
	}
	// A CR moved to another mesh leaves its old copy behind.
	if kind.Type.MeshScoped() {
		if err := c.deleteOrphans(ctx, kind, k.name, want.Meta.GetMesh()); err != nil {
			return err
		}
	}
	result, err := c.write(ctx, want)
	if err != nil {
		c.syncs.WithLabelValues(k.kind, "error").Inc()
		if serr := c.setStatus(ctx, kind, u, metav1.ConditionFalse, ReasonStoreError, err.Error(), nil); serr != nil {
			return errors.Join(err, serr)
		}
		return err
	}
	c.syncs.WithLabelValues(k.kind, result).Inc()
	return c.setStatus(ctx, kind, u, metav1.ConditionTrue, ReasonAccepted, "stored as "+want.Key(), nil)
}

// write stores want unless the store copy already says the same.
func (c *Controller) write(ctx context.Context, want *resource.Resource) (string, error) {
	cur, err := c.cfg.Store.Get(ctx, want.Type(), want.Meta.GetMesh(), want.Meta.GetName())
	switch {
	case store.IsNotFound(err):
		want.Meta.Version = 0
	case err != nil:
		return "", err
	default:
		if proto.Equal(cur.Spec, want.Spec) && maps.Equal(cur.Meta.GetLabels(), want.Meta.GetLabels()) && cur.Meta.GetOrigin() == want.Meta.GetOrigin() {
			return "unchanged", nil
		}
		if cur.Meta.GetLabels()[crd.ManagedByLabel] != crd.ManagedBy {
			c.cfg.Log.Info("a custom resource takes over a resource written through the REST API", "key", want.Key())
		} else {
			c.cfg.Log.Info("putting back the custom resource's spec over a changed store copy", "key", want.Key())
		}
		want.Meta.Version = cur.Meta.GetVersion()
	}
	if _, _, err := c.cfg.Store.Upsert(ctx, want); err != nil {
		return "", err
	}
	return "written", nil
}

// deleteOrphans removes the managed store copies named name of kind in
// every mesh but keep ("" removes them all; a global kind's copy is always
// removed: call it for those only when the CR is gone).
func (c *Controller) deleteOrphans(ctx context.Context, kind crd.Kind, name, keep string) error {
	if !kind.Type.MeshScoped() {
		return c.deleteManaged(ctx, kind, "", name)
	}
	// The informer (metadata is enough) finds the meshes; deleteManaged
	// reads the copy itself before deleting it.
	for _, r := range c.cfg.Informers.For(kind.Type).List("") {
		if r.Meta.GetName() == name && r.Meta.GetMesh() != keep {
			if err := c.deleteManaged(ctx, kind, r.Meta.GetMesh(), name); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *Controller) deleteManaged(ctx context.Context, kind crd.Kind, mesh, name string) error {
	cur, err := c.cfg.Store.Get(ctx, kind.Type, mesh, name)
	if store.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if cur.Meta.GetLabels()[crd.ManagedByLabel] != crd.ManagedBy {
		return nil // written through the REST API: not ours
	}
	err = c.cfg.Store.Delete(ctx, kind.Type, mesh, name, cur.Meta.GetVersion())
	if err != nil && !store.IsNotFound(err) {
		return err
	}
	c.syncs.WithLabelValues(kind.Kind, "deleted").Inc()
	c.cfg.Log.Info("deleted the store copy of a deleted custom resource", "key", cur.Key())
	return nil
}

// setStatus writes the Accepted condition (and the causes) unless the CR
// already says the same.
func (c *Controller) setStatus(ctx context.Context, kind crd.Kind, u *unstructured.Unstructured, st metav1.ConditionStatus, reason, msg string, causes []resource.Cause) error {
	const maxMessage = 4096
	if len(msg) > maxMessage {
		msg = msg[:maxMessage] + "…"
	}
	if len(causes) > 50 {
		causes = causes[:50]
	}
	gen := u.GetGeneration()
	cond := map[string]any{"type": ConditionAccepted, "status": string(st), "reason": reason, "message": msg, "observedGeneration": gen}
	var causeList []any
	for _, cs := range causes {
		causeList = append(causeList, map[string]any{"field": cs.Field, "message": cs.Message})
	}
	old, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	oldCauses, _, _ := unstructured.NestedSlice(u.Object, "status", "causes")
	if len(old) == 1 {
		if o, ok := old[0].(map[string]any); ok && o["status"] == cond["status"] && o["reason"] == reason && o["message"] == msg &&
			fmt.Sprint(o["observedGeneration"]) == fmt.Sprint(gen) && fmt.Sprint(oldCauses) == fmt.Sprint(causeList) {
			return nil
		}
		if o, ok := old[0].(map[string]any); ok && o["status"] == cond["status"] {
			cond["lastTransitionTime"] = o["lastTransitionTime"]
		}
	}
	if cond["lastTransitionTime"] == nil {
		cond["lastTransitionTime"] = time.Now().UTC().Format(time.RFC3339)
	}
	u = u.DeepCopy()
	status := map[string]any{"observedGeneration": gen, "conditions": []any{cond}}
	if causeList != nil {
		status["causes"] = causeList
	}
	u.Object["status"] = status
	_, err := c.cfg.Dynamic.Resource(kind.GVR()).UpdateStatus(ctx, u, metav1.UpdateOptions{FieldManager: "weft-k8s-controller"})
	if apierrors.IsNotFound(err) {
		return nil // deleted meanwhile; its deletion is queued
	}
	if apierrors.IsConflict(err) {
		return err // a newer version is queued; retried
	}
	return err
}
