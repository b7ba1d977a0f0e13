package store

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/weftmesh/weft/pkg/resource"
)

// Reader is a read-only, always-current view of one resource type: the
// interface domain logic depends on, so it can be tested with a
// FakeInformer instead of etcd. *Informer and *FakeInformer implement it.
type Reader interface {
	// Type is the resource type the reader holds.
	Type() *resource.Type
	// Get returns a resource by mesh and name ("" mesh for global types).
	Get(mesh, name string) (*resource.Resource, bool)
	// List returns the resources of a mesh (every mesh when mesh is "")
	// in (mesh, name) order.
	List(mesh string) []*resource.Resource
	// Len counts the resources held.
	Len() int
	// Revision is the newest store revision applied.
	Revision() int64
	// Synced is closed once the reader holds a complete view of the store.
	Synced() <-chan struct{}
	// Subscribe calls h with batches of changes until ctx ends (see
	// Informer.Subscribe).
	Subscribe(ctx context.Context, name string, h Handler) *Subscription
}

// Batch is the changes a handler receives in one call: every event that
// arrived while the handler was busy (or in one burst), in store order. A
// batch that starts with an EventSync replaces the handler's whole view.
type Batch struct {
	Events []Event
	// Revision is the store revision of the last event.
	Revision int64
}

// Handler consumes batches. A handler that returns an error is called again
// after a backoff with one EventSync holding the full current state, so it
// can rebuild whatever it had half applied.
type Handler func(Batch) error

// InformerOptions tunes informers.
type InformerOptions struct {
	// Buffer is the capacity of the underlying watch channel (default 1024).
	Buffer int
	// MaxBatch caps the events read from the watch in one burst (default 4096).
	MaxBatch int
	// MaxPending caps the events queued for one slow handler; past it the
	// queue is replaced by one EventSync of the current state (default 65536).
	MaxPending int
	// RetryBackoff is the first wait before a failed handler is given the
	// full state again (default 200ms, doubling to 5s).
	RetryBackoff time.Duration
	// Logger overrides the store's logger.
	Logger *slog.Logger
	// KeepSensitive makes informers of sensitive types hold the whole
	// resource, secret included, for a consumer whose job is to forward
	// secrets (zone-sync). By default they hold metadata only.
	KeepSensitive bool
	// View, when set, transforms every resource before the informer caches
	// and delivers it (see View). Informers.For sets it per type; it is
	// not accepted by NewInformers, where it would apply to every type.
	View *View
}

// View is a transform applied to every resource of one type before an
// informer caches and delivers it: typically it strips what no consumer
// in the process reads, to save memory. Transform must not modify its
// argument and must return a resource with the same mesh and name (a nil
// result keeps the original).
//
// One informer is shared by every consumer of a type in a process, so they
// all see the same view: the first Informers.For of a type fixes it (nil
// for whole resources), and a later For asking for another view panics.
// Views are compared by pointer, so define each one once, as a package
// variable next to the code that relies on what it keeps, and share it.
type View struct {
	// Name identifies the view in logs and panics.
	Name string
	// Transform returns the resource to cache in place of r.
	Transform func(r *resource.Resource) *resource.Resource
}

func (v *View) String() string {
	if v == nil {
		return "whole resources"
	}
	return "view " + v.Name
}

func (o InformerOptions) withDefaults(st *Store) InformerOptions {
	if o.Buffer <= 0 {
		o.Buffer = 1024
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 4096
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 65536
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = 200 * time.Millisecond
	}
	if o.Logger == nil {
		if st != nil {
			o.Logger = st.log
		} else {
			o.Logger = slog.New(slog.DiscardHandler)
		}
	}
	return o
}

// Informers hands out one shared Informer per resource type of one Store,
// so every consumer in a process reads the same cache fed by one watch.
// Make one per Store (several control planes in one process each have
// their own); it is safe for concurrent use.
type Informers struct {
	st   *Store
	opts InformerOptions
	mu   sync.Mutex
	m    map[*resource.Type]*Informer
}

// NewInformers returns the informer factory of a store.
func NewInformers(st *Store, opts ...InformerOptions) *Informers {
	var o InformerOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.View != nil {
		panic("store: NewInformers with a View: pass the view of a type to Informers.For")
	}
	return &Informers{st: st, opts: o.withDefaults(st), m: map[*resource.Type]*Informer{}}
}

// For returns the informer of a type, the same one on every call. It
// panics on a nil type (an informer holds one type).
//
// view (at most one) is the View the informer applies before caching; the
// first For of a type fixes it for the life of the factory (no view: whole
// resources). Every consumer of a type must ask for the same view: a For
// with a different one panics, since its caller would otherwise read
// fields the cache no longer holds (or hold memory another consumer
// strips).
func (f *Informers) For(t *resource.Type, view ...*View) *Informer {
	if t == nil {
		panic("store: Informers.For(nil)")
	}
	if len(view) > 1 {
		panic("store: Informers.For with more than one view")
	}
	var v *View
	if len(view) == 1 {
		v = view[0]
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if i := f.m[t]; i != nil {
		if i.opts.View != v {
			panic(fmt.Sprintf("store: the %s informer holds %s, a consumer asked for %s: every consumer of a type in one process must use the same View",
				t.Name, i.opts.View, v))
		}
		return i
	}
	st, buf := f.st, f.opts.Buffer
	o := f.opts
	o.View = v
	i := newInformer(t, o, func(ctx context.Context, from int64) (<-chan Event, error) {
		return st.Watch(ctx, t, "", from, WatchOptions{Buffer: buf})
	})
	f.m[t] = i
	return i
}

// Informer keeps a cache of one resource type current from a store watch
// and fans its changes out to subscribers. It lists, watches from the
// listed revision, resumes after disconnects, and re-lists after
// compaction (all through Store.Watch). The watch runs while at least one
// subscription is active; when the last one ends it stops, and the next
// subscription resumes from the last revision applied. Resources handed
// out are shared by every consumer: treat them as read-only. Informers of
// sensitive types (secrets) hold and deliver only metadata, an empty spec in
// place of the secret, so no plaintext secret stays in memory: read the
// secret itself from the store when it is needed (or, to forward secrets,
// set InformerOptions.KeepSensitive).
type Informer struct {
	t      *resource.Type
	opts   InformerOptions
	log    *slog.Logger
	source func(ctx context.Context, from int64) (<-chan Event, error)

	mu       sync.Mutex
	items    map[string]map[string]*resource.Resource // mesh -> name -> resource
	count    int
	rev      int64
	isSynced bool
	synced   chan struct{}
	subs     map[*Subscription]struct{}
	// The running watch: its generation (events of an older one are
	// dropped), its cancel and a channel closed when it has returned.
	gen     uint64
	cancel  context.CancelFunc
	stopped chan struct{}
}

var _ Reader = (*Informer)(nil)

func newInformer(t *resource.Type, opts InformerOptions, source func(context.Context, int64) (<-chan Event, error)) *Informer {
	return &Informer{
		t: t, opts: opts, source: source, log: opts.Logger.With("informer", t.Name),
		items: map[string]map[string]*resource.Resource{}, synced: make(chan struct{}), subs: map[*Subscription]struct{}{},
	}
}

// Type is the informer's resource type.
func (i *Informer) Type() *resource.Type { return i.t }

// Synced is closed once the first full list has been applied.
func (i *Informer) Synced() <-chan struct{} { return i.synced }

// Revision is the newest store revision applied.
func (i *Informer) Revision() int64 {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.rev
}

// Len counts the resources held.
func (i *Informer) Len() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.count
}

// Get returns a resource by mesh and name.
func (i *Informer) Get(mesh, name string) (*resource.Resource, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	r, ok := i.items[mesh][name]
	return r, ok
}

// List returns the resources of a mesh, or of every mesh when mesh is "".
func (i *Informer) List(mesh string) []*resource.Resource {
	i.mu.Lock()
	defer i.mu.Unlock()
	if mesh != "" || !i.t.MeshScoped() {
		return sortedNames(i.items[mesh], nil)
	}
	return i.listLocked()
}

func (i *Informer) listLocked() []*resource.Resource {
	meshes := make([]string, 0, len(i.items))
	for m := range i.items {
		meshes = append(meshes, m)
	}
	sort.Strings(meshes)
	out := make([]*resource.Resource, 0, i.count)
	for _, m := range meshes {
		out = sortedNames(i.items[m], out)
	}
	return out
}

func sortedNames(byName map[string]*resource.Resource, out []*resource.Resource) []*resource.Resource {
	start := len(out)
	for _, r := range byName {
		out = append(out, r)
	}
	part := out[start:]
	sort.Slice(part, func(a, b int) bool { return part[a].Meta.GetName() < part[b].Meta.GetName() })
	return out
}

// snapshotLocked is the whole cache as one EventSync.
func (i *Informer) snapshotLocked() Event {
	return Event{Kind: EventSync, Resources: i.listLocked(), Revision: i.rev}
}

// Subscription is one consumer of an informer.
type Subscription struct {
	i    *Informer
	name string
	h    Handler
	// queue is guarded by i.mu.
	queue []Event
	wake  chan struct{}
	done  chan struct{}
}

// Done is closed when the subscription has ended: its context is done, its
// handler has returned for the last time, and, when it was the last
// subscription, the informer's watch has stopped.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Subscribe registers h (named for logs) until ctx ends and starts the
// watch if it is not running. When the informer has synced, h is first
// called with one EventSync of the current state; after that with batches
// of changes, never concurrently with itself. Each subscription has its own
// queue: a slow handler delays only itself, and events that pile up while
// it is busy are delivered together. h may be nil, to keep the cache
// current for Get and List without handling changes.
func (i *Informer) Subscribe(ctx context.Context, name string, h Handler) *Subscription {
	s := &Subscription{i: i, name: name, h: h, wake: make(chan struct{}, 1), done: make(chan struct{})}
	i.mu.Lock()
	if i.isSynced && h != nil {
		s.queue = []Event{i.snapshotLocked()}
		s.wake <- struct{}{}
	}
	i.subs[s] = struct{}{}
	if len(i.subs) == 1 && i.source != nil && i.cancel == nil {
		i.startLocked()
	}
	i.mu.Unlock()
	go s.loop(ctx)
	return s
}

func (i *Informer) startLocked() {
	i.gen++
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	i.cancel, i.stopped = cancel, stopped
	go i.run(ctx, i.gen, i.rev, stopped)
}

// unsubscribe removes s; the last one out stops the watch and returns the
// channel closed when it has stopped.
func (i *Informer) unsubscribe(s *Subscription) <-chan struct{} {
	i.mu.Lock()
	defer i.mu.Unlock()
	delete(i.subs, s)
	s.queue = nil
	if len(i.subs) > 0 || i.cancel == nil {
		return nil
	}
	i.cancel()
	stopped := i.stopped
	i.cancel, i.stopped = nil, nil
	return stopped
}

func (i *Informer) run(ctx context.Context, gen uint64, from int64, stopped chan struct{}) {
	defer close(stopped)
	ch, err := i.source(ctx, from)
	if err != nil {
		i.log.Error("informer: cannot watch the store; the cache stays as it is", "revision", from, "error", err)
		return
	}
	defer func() {
		for range ch { // the watch closes its channel once ctx has ended
		}
	}()
	for {
		var ev Event
		var ok bool
		select {
		case <-ctx.Done():
			return
		case ev, ok = <-ch:
			if !ok {
				return
			}
		}
		batch := []Event{ev}
	drain:
		for len(batch) < i.opts.MaxBatch {
			select {
			case ev, ok := <-ch:
				if !ok {
					break drain
				}
				batch = append(batch, ev)
			default:
				break drain
			}
		}
		i.deliver(gen, batch)
	}
}

// deliver applies a batch to the cache and queues it for every subscriber,
// all under one lock, so a new subscriber's snapshot and the events after
// it never overlap or leave a gap.
func (i *Informer) deliver(gen uint64, evs []Event) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if gen != i.gen {
		return
	}
	if i.t.Sensitive && !i.opts.KeepSensitive {
		evs = redact(i.t, evs)
	}
	if v := i.opts.View; v != nil && v.Transform != nil {
		evs = transform(v.Transform, evs)
	}
	for _, ev := range evs {
		i.apply(ev)
	}
	if !i.isSynced {
		return // nothing is delivered before the first full view
	}
	for s := range i.subs {
		if s.h != nil {
			s.push(evs)
		}
	}
}

// redact replaces the specs of sensitive resources by empty ones.
func redact(t *resource.Type, evs []Event) []Event {
	meta := func(r *resource.Resource) *resource.Resource {
		if r == nil {
			return nil
		}
		return &resource.Resource{Meta: r.Meta, Spec: t.NewSpec(), Traceparent: r.Traceparent}
	}
	out := make([]Event, len(evs))
	for n, ev := range evs {
		out[n] = Event{Kind: ev.Kind, Resource: meta(ev.Resource), Revision: ev.Revision}
		if ev.Resources != nil {
			out[n].Resources = make([]*resource.Resource, len(ev.Resources))
			for k, r := range ev.Resources {
				out[n].Resources[k] = meta(r)
			}
		}
	}
	return out
}

// transform applies a View's transform to every resource of evs.
func transform(fn func(*resource.Resource) *resource.Resource, evs []Event) []Event {
	one := func(r *resource.Resource) *resource.Resource {
		if r == nil {
			return nil
		}
		if out := fn(r); out != nil {
			return out
		}
		return r
	}
	out := make([]Event, len(evs))
	for n, ev := range evs {
		out[n] = Event{Kind: ev.Kind, Resource: one(ev.Resource), Revision: ev.Revision}
		if ev.Resources != nil {
			out[n].Resources = make([]*resource.Resource, len(ev.Resources))
			for k, r := range ev.Resources {
				out[n].Resources[k] = one(r)
			}
		}
	}
	return out
}

func (i *Informer) apply(ev Event) {
	i.rev = max(i.rev, ev.Revision)
	switch ev.Kind {
	case EventSync:
		i.items = map[string]map[string]*resource.Resource{}
		i.count = 0
		for _, r := range ev.Resources {
			i.put(r)
		}
		if !i.isSynced {
			i.isSynced = true
			close(i.synced)
		}
	case EventPut:
		if ev.Resource != nil {
			i.put(ev.Resource)
		}
	case EventDelete:
		if r := ev.Resource; r != nil {
			mesh := r.Meta.GetMesh()
			if byName := i.items[mesh]; byName != nil {
				if _, ok := byName[r.Meta.GetName()]; ok {
					delete(byName, r.Meta.GetName())
					i.count--
					if len(byName) == 0 {
						delete(i.items, mesh)
					}
				}
			}
		}
	}
}

func (i *Informer) put(r *resource.Resource) {
	mesh := r.Meta.GetMesh()
	byName := i.items[mesh]
	if byName == nil {
		byName = map[string]*resource.Resource{}
		i.items[mesh] = byName
	}
	if _, ok := byName[r.Meta.GetName()]; !ok {
		i.count++
	}
	byName[r.Meta.GetName()] = r
}

// push queues events for s (i.mu held). An EventSync drops what it
// replaces; an overlong queue becomes one EventSync of the current state.
func (s *Subscription) push(evs []Event) {
	for _, ev := range evs {
		if ev.Kind == EventSync {
			s.queue = nil
		}
		s.queue = append(s.queue, ev)
	}
	if len(s.queue) > s.i.opts.MaxPending {
		// At most once per MaxPending events, so it cannot flood the log.
		s.i.log.Warn("informer: handler is too slow, its backlog is replaced by the full state (make the handler hand work off instead of doing it inline)",
			"handler", s.name, "pending", len(s.queue))
		s.queue = []Event{s.i.snapshotLocked()}
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Subscription) loop(ctx context.Context) {
	defer close(s.done)
	defer func() {
		if stopped := s.i.unsubscribe(s); stopped != nil {
			<-stopped
		}
	}()
	backoff := s.i.opts.RetryBackoff
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		s.i.mu.Lock()
		evs := s.queue
		s.queue = nil
		s.i.mu.Unlock()
		if len(evs) == 0 || s.h == nil {
			continue
		}
		err := s.call(evs)
		if err == nil {
			if failing {
				failing = false
				backoff = s.i.opts.RetryBackoff
				s.i.log.Info("informer: handler recovered", "handler", s.name)
			}
			continue
		}
		if !failing {
			failing = true
			s.i.log.Warn("informer: handler failed; it will be given the full state again (fix the handler's error to stop the retries)",
				"handler", s.name, "retryIn", backoff.String(), "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
		s.i.mu.Lock()
		if s.i.isSynced {
			s.queue = []Event{s.i.snapshotLocked()}
		}
		s.i.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// call runs the handler, turning a panic into an error so one bad handler
// cannot take the process down.
func (s *Subscription) call(evs []Event) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return s.h(Batch{Events: evs, Revision: evs[len(evs)-1].Revision})
}
