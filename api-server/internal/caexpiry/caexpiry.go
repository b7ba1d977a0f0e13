// Package caexpiry tells when each CA backend's root certificate of a mesh
// expires, for GET /meshes/{mesh}/ca, `weftctl inspect meshes` and the
// GUI. It reads the backends' Secrets from the store and keeps only their
// certificate blocks (ca.StoreMeshExpiry): a builtin root's key, in the
// same Secret, is never decoded. Answers are reused for TTL while the
// mesh's mTLS settings are unchanged, so a GUI polling every 2 s costs one
// read per backend per TTL.
package caexpiry

import (
	"context"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/pkg/ca"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// TTL bounds how long an answer is reused.
const TTL = 10 * time.Second

// maxCached caps the meshes remembered (all are dropped past it).
const maxCached = 10000

// Reader reads CA expiries from a store.
type Reader struct {
	st  *store.Store
	now func() time.Time

	mu    sync.Mutex
	cache map[string]entry
}

type entry struct {
	mtls *meshv1.Mesh_Mtls
	at   time.Time
	out  []ca.BackendExpiry
}

// New returns a reader over st.
func New(st *store.Store) *Reader {
	return &Reader{st: st, now: time.Now, cache: map[string]entry{}}
}

// Mesh returns the expiry of every CA backend of mesh m, in the order of
// its backends.
func (r *Reader) Mesh(ctx context.Context, mesh string, m *meshv1.Mesh) []ca.BackendExpiry {
	now := r.now()
	r.mu.Lock()
	e, ok := r.cache[mesh]
	r.mu.Unlock()
	if ok && now.Sub(e.at) < TTL && proto.Equal(e.mtls, m.GetMtls()) {
		return e.out
	}
	out := ca.StoreMeshExpiry(ctx, r.st, mesh, m)
	if ctx.Err() != nil {
		return out // a cancelled read is not remembered
	}
	r.mu.Lock()
	if len(r.cache) >= maxCached {
		clear(r.cache)
	}
	r.cache[mesh] = entry{mtls: proto.Clone(m.GetMtls()).(*meshv1.Mesh_Mtls), at: now, out: out}
	r.mu.Unlock()
	return out
}
