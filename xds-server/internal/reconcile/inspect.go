package reconcile

import "github.com/weftmesh/weft/xds-server/internal/generator"

// Connected returns the kind of a proxy with an open stream on this
// replica (the inspect service's config dump).
func (r *Reconciler) Connected(nodeID string) (kind string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.proxies[nodeID]
	if p == nil {
		return "", false
	}
	return p.kind, true
}

// Snapshot returns the generator snapshot of a mesh as this replica's
// model holds it now: the one the reconciler generates from (built at most
// once per change of the mesh). It never returns nil.
func (r *Reconciler) Snapshot(mesh string) *generator.Snapshot { return r.snapshot(mesh) }
