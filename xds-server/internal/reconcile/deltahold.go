package reconcile

import (
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/weftmesh/weft/xds-server/internal/generator"
)

// deltaHold is what a delta stream's first request of a type says the
// proxy holds (its initial_resource_versions), kept until the proxy's
// next snapshot is compared with it.
type deltaHold struct {
	held     map[string]string // name → version, as the proxy sent it
	names    []string          // subscribed names (wildcard: unused)
	wildcard bool
	then     func(version string)
}

// HoldsResources records what a delta stream's first request of typeURL
// says the proxy holds: held is its initial_resource_versions (name →
// go-control-plane's per-resource version), names its
// resource_names_subscribe (none, or "*": a wildcard subscription).
//
// go-control-plane's delta cache sends only resources whose version
// differs from what the stream holds (and removals). When held is exactly
// what the proxy's snapshot of typeURL would send — for a wildcard the
// same names with the same versions, else each subscribed name's version
// (absent where the snapshot has no such resource) — nothing is sent, so
// no ACK would ever end the push: the proxy holds the type's snapshot
// version, recorded as Holds does, and then(version) is called (under the
// reconciler's lock: it must not call back into it). With no snapshot yet
// the comparison is made with the proxy's next one, as the cache does.
//
// The work is bounded by the caller's caps on held and names
// (ads.MaxResourceNames): one hash per compared resource.
func (r *Reconciler) HoldsResources(nodeID, typeURL string, held map[string]string, names []string, then func(version string)) {
	i := typeIndex(typeURL)
	if i < 0 || len(held) == 0 {
		return
	}
	h := &deltaHold{held: held, names: names, wildcard: len(names) == 0 || slices.Contains(names, "*"), then: then}
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.proxies[nodeID]
	if p == nil {
		return
	}
	if p.pushed {
		if s, err := r.cache.GetSnapshot(nodeID); err == nil {
			r.resolveHoldLocked(p, i, typeURL, h, s)
			return
		}
	}
	if p.deltaHolds == nil {
		p.deltaHolds = new([nTypes]*deltaHold)
	}
	p.deltaHolds[i] = h
}

// resolveHoldsLocked compares the holds waiting for a snapshot with s, the
// one just set, before its pushes are recorded as pending.
func (r *Reconciler) resolveHoldsLocked(p *proxy, s cachev3.ResourceSnapshot) {
	if p.deltaHolds == nil {
		return
	}
	for i, h := range p.deltaHolds {
		if h != nil {
			r.resolveHoldLocked(p, i, generator.TypeURLs[i], h, s)
		}
	}
	p.deltaHolds = nil
}

func (r *Reconciler) resolveHoldLocked(p *proxy, i int, typeURL string, h *deltaHold, s cachev3.ResourceSnapshot) {
	if !h.matches(s.GetResources(typeURL)) {
		return
	}
	v := s.GetVersion(typeURL)
	p.held[i] = v
	if p.pending[i].version == v {
		p.pending[i] = pending{}
	}
	if h.then != nil {
		h.then(v)
	}
}

// matches reports whether the cache would send nothing for h against res
// (go-control-plane v0.14 cache/v3 createDeltaResponse).
func (h *deltaHold) matches(res map[string]types.Resource) bool {
	if h.wildcard {
		if len(res) != len(h.held) {
			return false
		}
		for name, r := range res {
			if v, ok := h.held[name]; !ok || !sameVersion(v, r) {
				return false
			}
		}
		return true
	}
	for _, name := range h.names {
		v, had := h.held[name]
		r, ok := res[name]
		if !ok {
			if had {
				return false // the cache would send its removal
			}
			continue
		}
		if !had || !sameVersion(v, r) {
			return false
		}
	}
	return true
}

// sameVersion reports whether v is the delta cache's version of r
// (cachev3.Snapshot.ConstructVersionMap: the SHA-256 of its deterministic
// serialisation). Computed here rather than read from the snapshot's
// VersionMap, which the cache builds lazily without a lock.
func sameVersion(v string, r types.Resource) bool {
	if len(v) != 64 {
		return false // not a hex SHA-256: no need to hash
	}
	b, err := cachev3.MarshalResource(r)
	return err == nil && cachev3.HashResource(b) == v
}
