package store

import (
	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// FakeInformer is an in-memory Reader for unit tests of domain logic: the
// test drives it with Sync, Put and Delete instead of etcd. It shares the
// real informer's cache and delivery (batches, the first EventSync of a
// subscription, handler retries); only the watch is missing.
type FakeInformer struct {
	*Informer
}

var _ Reader = (*FakeInformer)(nil)

// NewFakeInformer returns an empty, unsynced fake of a type.
func NewFakeInformer(t *resource.Type, opts ...InformerOptions) *FakeInformer {
	var o InformerOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	return &FakeInformer{newInformer(t, o.withDefaults(nil), nil)}
}

// Deliver applies events as one batch, as if the watch had read them
// together.
func (f *FakeInformer) Deliver(evs ...Event) {
	f.mu.Lock()
	gen := f.gen
	f.mu.Unlock()
	f.deliver(gen, evs)
}

// Sync replaces the whole state (and marks the fake synced).
func (f *FakeInformer) Sync(rs ...*resource.Resource) {
	f.Deliver(Event{Kind: EventSync, Resources: rs, Revision: f.next()})
}

// Put creates or updates a resource, setting its version to a new revision.
func (f *FakeInformer) Put(r *resource.Resource) {
	rev := f.next()
	r.Meta.Version = rev
	f.Deliver(Event{Kind: EventPut, Resource: r, Revision: rev})
}

// Delete removes a resource.
func (f *FakeInformer) Delete(mesh, name string) {
	r, ok := f.Get(mesh, name)
	if !ok {
		r = &resource.Resource{Meta: &meshv1.Meta{Type: f.t.Name, Mesh: mesh, Name: name}, Spec: f.t.NewSpec()}
	}
	f.Deliver(Event{Kind: EventDelete, Resource: r, Revision: f.next()})
}

func (f *FakeInformer) next() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rev + 1
}
