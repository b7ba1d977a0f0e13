// Package model keeps the replica's in-memory view of the store: one store
// informer per type the generators read, shared by the whole replica (not
// one watch per proxy), folded into a model per mesh, with the mesh's view
// (meshview.Mesh) built lazily once per change. It delivers each batch of
// changes on a channel (Changes), so its consumer (the reconciler) depends on
// it and not the other way round.
package model

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/pkg/policy"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	"github.com/weftmesh/weft/xds-server/internal/meshview"
)

// Change is one resource change the generators care about. Old is the
// previous state (nil on create), New the new one (nil on delete). A Sync
// change (a full re-list) has neither and affects the whole mesh.
type Change struct {
	Mesh string
	Type *resource.Type
	Name string
	Old  *resource.Resource
	New  *resource.Resource
	Sync bool
	// Seen is when the replica saw the change (push latency starts here).
	Seen time.Time
}

// Traceparent is the W3C traceparent of the store write that made the
// change (New's), or "" (a delete, a sync, an untraced write): the
// reconcile it causes continues that trace.
func (c Change) Traceparent() string {
	if c.New != nil {
		return c.New.Traceparent
	}
	return ""
}

// watched are the types generators read, in a fixed order: the mesh, its
// dataplanes, VIPs, other zones' ZoneIngresses and every policy type
// (policy.Types); the rest of the store (insights written by the replicas
// themselves, secrets) is ignored.
var watched = append([]*resource.Type{resource.MeshType, resource.DataplaneType, resource.VirtualIPType, resource.ZoneIngressType}, policy.Types...)

// relevant are the watched types as a set.
var relevant = func() map[*resource.Type]bool {
	m := map[*resource.Type]bool{}
	for _, t := range watched {
		m[t] = true
	}
	return m
}()

type meshState struct {
	mesh *resource.Resource
	// by type, then name
	items map[*resource.Type]map[string]*resource.Resource
	view  *meshview.Mesh
}

func newMeshState() *meshState {
	return &meshState{items: map[*resource.Type]map[string]*resource.Resource{}}
}

// Model is the in-memory per-mesh view.
type Model struct {
	st      *store.Store
	reader  func(*resource.Type) store.Reader
	log     *slog.Logger
	changes chan []Change
	// lastBehind is when deliver last logged that the consumer is behind
	// (under applyMu).
	lastBehind time.Time

	// applyMu serialises the informers' batches: each is applied and
	// delivered before the next.
	applyMu  sync.Mutex
	mu       sync.RWMutex
	meshes   map[string]*meshState
	revision int64
	synced   chan struct{}
	once     sync.Once
	// zone is this control plane's zone: ZoneIngresses of other zones are
	// cross-zone endpoints. Empty (standalone, or not configured): none is.
	zone string
	// ingresses are the other zones' ZoneIngresses by name; ZoneIngress is
	// not in a mesh, each one touches the meshes it offers services of.
	ingresses map[string]*resource.Resource
	// own are this zone's ZoneIngresses by name (their listen address is
	// the ingress listener's); a change of one is a Change with Mesh ""
	// and Type ZoneIngressType.
	own map[string]*resource.Resource
}

// SetZone names this control plane's zone before Run: other zones'
// ZoneIngresses become cross-zone endpoints of the meshes they serve.
func (m *Model) SetZone(zone string) { m.zone = zone }

// ingressMeshes lists the meshes a ZoneIngress offers services of.
func ingressMeshes(r *resource.Resource) map[string]bool {
	out := map[string]bool{}
	if r == nil {
		return out
	}
	zi, _ := r.Spec.(*meshv1.ZoneIngress)
	for _, s := range zi.GetAvailableServices() {
		out[s.GetMesh()] = true
	}
	return out
}

// applyIngressLocked folds a ZoneIngress event into the model: only other
// zones' ingresses count, and each change is a whole-mesh change of every
// mesh the old or new version serves.
func (m *Model) applyIngressLocked(ev store.Event, now time.Time) []Change {
	touched := map[string]bool{}
	ownTouched := map[string]bool{}
	set := func(name string, r *resource.Resource) {
		if _, was := m.own[name]; was {
			delete(m.own, name)
			ownTouched[name] = true
		}
		if r != nil && m.zone != "" && meshview.IngressZone(r) == m.zone {
			m.own[name] = r
			ownTouched[name] = true
		}
		for mesh := range ingressMeshes(m.ingresses[name]) {
			touched[mesh] = true
		}
		if r == nil || m.zone == "" || meshview.IngressZone(r) == "" || meshview.IngressZone(r) == m.zone {
			delete(m.ingresses, name)
		} else {
			m.ingresses[name] = r
			for mesh := range ingressMeshes(r) {
				touched[mesh] = true
			}
		}
	}
	switch ev.Kind {
	case store.EventSync:
		for name := range m.ingresses {
			set(name, nil)
		}
		for name := range m.own {
			set(name, nil)
		}
		for _, r := range ev.Resources {
			set(r.Meta.GetName(), r)
		}
	case store.EventPut:
		set(ev.Resource.Meta.GetName(), ev.Resource)
	case store.EventDelete:
		set(ev.Resource.Meta.GetName(), nil)
	}
	out := make([]Change, 0, len(touched))
	for mesh := range touched {
		if ms := m.meshes[mesh]; ms != nil {
			ms.view = nil
		}
		out = append(out, Change{Mesh: mesh, Sync: true, Seen: now})
	}
	for name := range ownTouched {
		out = append(out, Change{Type: resource.ZoneIngressType, Name: name, Seen: now})
	}
	return out
}

// OwnIngress is this zone's ZoneIngress of that name (nil when none).
func (m *Model) OwnIngress(name string) *resource.Resource {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.own[name]
}

// Meshes lists the meshes with a Mesh resource, sorted.
func (m *Model) Meshes() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]string, 0, len(m.meshes))
	for name, ms := range m.meshes {
		if ms.mesh != nil {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// ChangeBuffer is how many batches of changes Changes holds before Run
// waits for its consumer.
const ChangeBuffer = 64

// New returns a model fed by st. Each batch of changes is delivered on
// Changes after the model applied it; one consumer must read it while Run
// runs.
func New(st *store.Store, log *slog.Logger) *Model {
	inf := store.NewInformers(st)
	return &Model{st: st, reader: func(t *resource.Type) store.Reader { return inf.For(t) }, log: log,
		changes: make(chan []Change, ChangeBuffer), meshes: map[string]*meshState{}, synced: make(chan struct{}),
		ingresses: map[string]*resource.Resource{}, own: map[string]*resource.Resource{}}
}

// Changes delivers each batch of changes, in order, after the model applied
// it (so View already reflects it). Run waits for the reader when
// ChangeBuffer batches are pending, and closes it when it returns; call Run
// once.
func (m *Model) Changes() <-chan []Change { return m.changes }

// Run follows the store until ctx ends. The informers resume by
// themselves after disconnects and re-list after compaction (EventSync).
func (m *Model) Run(ctx context.Context) error {
	defer close(m.changes)
	var pending atomic.Int32
	pending.Store(int32(len(watched)))
	subs := make([]*store.Subscription, 0, len(watched))
	for _, t := range watched {
		var first sync.Once
		subs = append(subs, m.reader(t).Subscribe(ctx, "xds model", func(b store.Batch) error {
			m.applyMu.Lock()
			defer m.applyMu.Unlock()
			var changes []Change
			for _, ev := range b.Events {
				changes = append(changes, m.apply(t, ev)...)
			}
			// The first batch of each type starts with its full view.
			first.Do(func() {
				if pending.Add(-1) == 0 {
					m.once.Do(func() { close(m.synced) })
				}
			})
			if len(changes) > 0 {
				m.deliver(ctx, changes)
			}
			return nil
		}))
	}
	<-ctx.Done()
	for _, s := range subs {
		<-s.Done()
	}
	return nil
}

// Synced is closed once the model holds the store's initial state.
func (m *Model) Synced() <-chan struct{} { return m.synced }

// Revision is the last store revision applied.
func (m *Model) Revision() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.revision
}

func meshOf(r *resource.Resource) string {
	if r.Type() == resource.MeshType {
		return r.Meta.GetName()
	}
	return r.Meta.GetMesh()
}

func (m *Model) apply(t *resource.Type, ev store.Event) []Change {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if ev.Revision > m.revision {
		m.revision = ev.Revision
	}
	if t == resource.ZoneIngressType {
		return m.applyIngressLocked(ev, now)
	}
	switch ev.Kind {
	case store.EventSync:
		// A full view of one type replaces that type in every mesh.
		touched := map[string]bool{}
		for name, ms := range m.meshes {
			if t == resource.MeshType && ms.mesh != nil {
				ms.mesh, ms.view = nil, nil
				touched[name] = true
			} else if t != resource.MeshType && len(ms.items[t]) > 0 {
				delete(ms.items, t)
				ms.view = nil
				touched[name] = true
			}
		}
		for _, r := range ev.Resources {
			m.put(r)
			touched[meshOf(r)] = true
		}
		out := make([]Change, 0, len(touched))
		for name := range touched {
			m.pruneLocked(name)
			out = append(out, Change{Mesh: name, Sync: true, Seen: now})
		}
		return out
	case store.EventPut:
		r := ev.Resource
		if r == nil || !relevant[r.Type()] {
			return nil
		}
		old := m.put(r)
		return []Change{{Mesh: meshOf(r), Type: r.Type(), Name: r.Meta.GetName(), Old: old, New: r, Seen: now}}
	case store.EventDelete:
		r := ev.Resource
		if r == nil || !relevant[r.Type()] {
			return nil
		}
		old := m.delete(r, ev.Revision)
		if r.Type() == resource.MeshType {
			return []Change{{Mesh: meshOf(r), Sync: true, Seen: now}}
		}
		return []Change{{Mesh: meshOf(r), Type: r.Type(), Name: r.Meta.GetName(), Old: old, Seen: now}}
	}
	return nil
}

// deliver hands a batch to the consumer, waiting while ChangeBuffer batches
// are pending (and saying so, at most once a minute). It reports false when
// ctx ended first.
func (m *Model) deliver(ctx context.Context, changes []Change) bool {
	select {
	case m.changes <- changes:
		return true
	default:
	}
	if now := time.Now(); now.Sub(m.lastBehind) > time.Minute {
		m.lastBehind = now
		m.log.Warn("the reconciler is behind: the model waits for it before applying more store changes; if this persists, give the xds-server more CPU or run more replicas",
			"pending_batches", ChangeBuffer)
	}
	select {
	case m.changes <- changes:
		return true
	case <-ctx.Done():
		return false
	}
}

// pruneLocked forgets a mesh that holds nothing any more.
func (m *Model) pruneLocked(name string) {
	ms := m.meshes[name]
	if ms == nil || ms.mesh != nil {
		return
	}
	for _, byName := range ms.items {
		if len(byName) > 0 {
			return
		}
	}
	delete(m.meshes, name)
}

func (m *Model) state(mesh string) *meshState {
	ms := m.meshes[mesh]
	if ms == nil {
		ms = newMeshState()
		m.meshes[mesh] = ms
	}
	return ms
}

func (m *Model) put(r *resource.Resource) *resource.Resource {
	t := r.Type()
	if !relevant[t] {
		return nil
	}
	ms := m.state(meshOf(r))
	ms.view = nil
	if t == resource.MeshType {
		old := ms.mesh
		ms.mesh = r
		return old
	}
	byName := ms.items[t]
	if byName == nil {
		byName = map[string]*resource.Resource{}
		ms.items[t] = byName
	}
	old := byName[r.Meta.GetName()]
	byName[r.Meta.GetName()] = r
	return old
}

func (m *Model) delete(r *resource.Resource, rev int64) *resource.Resource {
	t := r.Type()
	ms := m.meshes[meshOf(r)]
	if ms == nil {
		return nil
	}
	ms.view = nil
	if t == resource.MeshType {
		old := ms.mesh
		// Deleting a mesh deletes its contents in the same transaction.
		// Each type has its own watch, so a newer mesh of the same name
		// may already have contents here: only what the delete covers
		// (written at or before it) goes.
		ms.mesh = nil
		for _, byName := range ms.items {
			for name, item := range byName {
				if item.Meta.GetVersion() <= rev {
					delete(byName, name)
				}
			}
		}
		m.pruneLocked(r.Meta.GetName())
		return old
	}
	old := ms.items[t][r.Meta.GetName()]
	delete(ms.items[t], r.Meta.GetName())
	return old
}

// View returns the mesh as the model holds it, building it at most once per
// change: the same pointer until the mesh changes. It is nil for a mesh the
// model knows nothing of.
func (m *Model) View(mesh string) *meshview.Mesh {
	m.mu.RLock()
	ms := m.meshes[mesh]
	if ms == nil || ms.view != nil {
		var v *meshview.Mesh
		if ms != nil {
			v = ms.view
		}
		m.mu.RUnlock()
		return v
	}
	m.mu.RUnlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	ms = m.meshes[mesh]
	if ms == nil {
		return nil
	}
	var ingresses []*resource.Resource
	for _, r := range m.ingresses {
		if ingressMeshes(r)[mesh] {
			ingresses = append(ingresses, r)
		}
	}
	if ms.view == nil {
		var spec *meshv1.Mesh
		if ms.mesh != nil {
			spec, _ = ms.mesh.Spec.(*meshv1.Mesh)
		}
		ms.view = &meshview.Mesh{Name: mesh, Spec: spec,
			Dataplanes:         values(ms.items[resource.DataplaneType]),
			TrafficPermissions: values(ms.items[resource.TrafficPermissionType]),
			VirtualIPs:         values(ms.items[resource.VirtualIPType]),
			ZoneIngresses:      ingresses}
		for _, t := range policy.Types {
			if t != resource.TrafficPermissionType {
				ms.view.Policies = append(ms.view.Policies, values(ms.items[t])...)
			}
		}
	}
	return ms.view
}

func values(m map[string]*resource.Resource) []*resource.Resource {
	out := make([]*resource.Resource, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	return out
}
