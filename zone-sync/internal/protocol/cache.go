package protocol

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
)

// Entry is one resource as a sender serves it, serialised once and shared
// by every stream.
type Entry struct {
	Type     *resource.Type
	Wire     string
	Resource *resource.Resource
	Spec     []byte
	Version  string
	Commit   time.Time
}

// Key names a resource in the cache.
type Key struct {
	Type *resource.Type
	Wire string
}

// Cache mirrors the store's resources of some types in memory, by watching
// them, and tells subscribers which resources changed.
type Cache struct {
	st    *store.Store
	inf   *store.Informers
	types []*resource.Type
	log   *slog.Logger

	mu     sync.RWMutex
	data   map[*resource.Type]map[string]*Entry
	rev    map[*resource.Type]int64
	subs   map[*Notifier]struct{}
	synced map[*resource.Type]bool
	ready  chan struct{}
	// removed remembers when a removal was seen, for lag; pruned after
	// tombstoneTTL.
	removed   map[Key]time.Time
	lastPrune time.Time
}

const tombstoneTTL = 10 * time.Minute

// NewCache returns a cache of types in st; Run fills it. Each cache has
// its own informers (a fresh view per leadership term), which keep secrets:
// forwarding them is zone-sync's job.
func NewCache(st *store.Store, types []*resource.Type, log *slog.Logger) *Cache {
	c := &Cache{st: st, inf: store.NewInformers(st, store.InformerOptions{KeepSensitive: true}), types: types, log: log, data: map[*resource.Type]map[string]*Entry{},
		rev: map[*resource.Type]int64{}, subs: map[*Notifier]struct{}{}, synced: map[*resource.Type]bool{}, ready: make(chan struct{}),
		removed: map[Key]time.Time{}}
	for _, t := range types {
		c.data[t] = map[string]*Entry{}
	}
	return c
}

// Types returns the cached types.
func (c *Cache) Types() []*resource.Type { return c.types }

// Ready is closed once every type has been listed.
func (c *Cache) Ready() <-chan struct{} { return c.ready }

// Run follows the store until ctx ends.
func (c *Cache) Run(ctx context.Context) error {
	subs := make([]*store.Subscription, 0, len(c.types))
	for _, t := range c.types {
		subs = append(subs, c.inf.For(t).Subscribe(ctx, "zone-sync cache", func(b store.Batch) error {
			for _, ev := range b.Events {
				c.apply(t, ev)
			}
			return nil
		}))
	}
	for _, s := range subs {
		<-s.Done()
	}
	return ctx.Err()
}

func (c *Cache) apply(t *resource.Type, ev store.Event) {
	c.mu.Lock()
	var changed []Key
	switch ev.Kind {
	case store.EventSync:
		old := c.data[t]
		fresh := make(map[string]*Entry, len(ev.Resources))
		for _, r := range ev.Resources {
			e := c.entry(r)
			if e == nil {
				continue
			}
			fresh[e.Wire] = e
			if o, ok := old[e.Wire]; !ok || o.Version != e.Version {
				changed = append(changed, Key{t, e.Wire})
			}
		}
		now := time.Now()
		for name := range old {
			if _, ok := fresh[name]; !ok {
				changed = append(changed, Key{t, name})
				c.removed[Key{t, name}] = now
			}
		}
		c.data[t] = fresh
		if !c.synced[t] {
			c.synced[t] = true
			if len(c.synced) == len(c.types) {
				close(c.ready)
			}
		}
	case store.EventPut:
		if e := c.entry(ev.Resource); e != nil {
			if o, ok := c.data[t][e.Wire]; !ok || o.Version != e.Version {
				changed = append(changed, Key{t, e.Wire})
			}
			c.data[t][e.Wire] = e
		}
	case store.EventDelete:
		w := WireName(t, ev.Resource.Meta.GetMesh(), ev.Resource.Meta.GetName())
		if _, ok := c.data[t][w]; ok {
			delete(c.data[t], w)
			changed = append(changed, Key{t, w})
			c.removed[Key{t, w}] = time.Now()
		}
	}
	if len(c.removed) > 0 && time.Since(c.lastPrune) > time.Minute {
		c.lastPrune = time.Now()
		for k, at := range c.removed {
			if time.Since(at) > tombstoneTTL {
				delete(c.removed, k)
			}
		}
	}
	if ev.Revision > c.rev[t] {
		c.rev[t] = ev.Revision
	}
	subs := make([]*Notifier, 0, len(c.subs))
	for n := range c.subs {
		subs = append(subs, n)
	}
	c.mu.Unlock()
	if len(changed) > 0 {
		for _, n := range subs {
			n.mark(changed)
		}
	}
}

func (c *Cache) entry(r *resource.Resource) *Entry {
	t := r.Type()
	spec, err := MarshalSpec(r.Spec)
	if err != nil {
		c.log.Error("cache: cannot serialise resource", "resource", r.Key(), "error", err)
		return nil
	}
	w := WireName(t, r.Meta.GetMesh(), r.Meta.GetName())
	e := &Entry{Type: t, Wire: w, Resource: r, Spec: spec, Version: Version(w, r.Meta.GetLabels(), spec)}
	if mt := r.Meta.GetModificationTime(); mt != nil {
		e.Commit = mt.AsTime()
	}
	return e
}

// Get returns a cached entry, or nil.
func (c *Cache) Get(t *resource.Type, wire string) *Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.data[t][wire]
}

// RemovedAt is when the cache saw a resource removed (zero if unknown).
func (c *Cache) RemovedAt(t *resource.Type, wire string) time.Time {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.removed[Key{t, wire}]
}

// Names lists the cached names of a type, sorted.
func (c *Cache) Names(t *resource.Type) []string {
	c.mu.RLock()
	out := make([]string, 0, len(c.data[t]))
	for n := range c.data[t] {
		out = append(out, n)
	}
	c.mu.RUnlock()
	sort.Strings(out)
	return out
}

// Revision is the last store revision seen for a type.
func (c *Cache) Revision(t *resource.Type) int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rev[t]
}

// Subscribe returns a notifier of changes; Unsubscribe it when done.
func (c *Cache) Subscribe() *Notifier {
	n := &Notifier{c: make(chan struct{}, 1), dirty: map[Key]struct{}{}}
	c.mu.Lock()
	c.subs[n] = struct{}{}
	c.mu.Unlock()
	return n
}

// Unsubscribe stops notifications.
func (c *Cache) Unsubscribe(n *Notifier) {
	c.mu.Lock()
	delete(c.subs, n)
	c.mu.Unlock()
}

// Notifier collects changed keys for one stream.
type Notifier struct {
	c     chan struct{}
	mu    sync.Mutex
	dirty map[Key]struct{}
}

func (n *Notifier) mark(keys []Key) {
	n.mu.Lock()
	for _, k := range keys {
		n.dirty[k] = struct{}{}
	}
	n.mu.Unlock()
	select {
	case n.c <- struct{}{}:
	default:
	}
}

// C signals that Take has something.
func (n *Notifier) C() <-chan struct{} { return n.c }

// Take returns and clears the changed keys.
func (n *Notifier) Take() []Key {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]Key, 0, len(n.dirty))
	for k := range n.dirty {
		out = append(out, k)
	}
	clear(n.dirty)
	return out
}
