package gui

import (
	"sync"

	"github.com/weftmesh/weft/pkg/resource"
)

// listCache keeps the sorted dataplane list of each mesh ("" every mesh)
// at the Dataplanes view's revision: the informer sorts 10,000 names on
// every List, and every open tab asks every 2 s while dataplanes rarely
// change (their insights, which change often, are another view).
type listCache struct {
	mu    sync.Mutex
	lists map[string]cachedList
}

type cachedList struct {
	rev   int64
	items []*resource.Resource
}

// maxCachedLists caps the meshes whose lists are kept (all are dropped
// past it).
const maxCachedLists = 1024

// WithListCache returns r keeping sorted dataplane lists between calls
// (NewWithReaders does it).
func (r Readers) WithListCache() Readers {
	if r.lists == nil {
		r.lists = &listCache{lists: map[string]cachedList{}}
	}
	return r
}

// dataplanes is r.Dataplanes.List(mesh), from the cache while the view
// is unchanged. Callers must not modify the slice.
func (r Readers) dataplanes(mesh string) []*resource.Resource {
	if r.lists == nil {
		return r.Dataplanes.List(mesh)
	}
	// The revision is read first: a change landing during List makes the
	// entry look older than it is, never newer.
	rev := r.Dataplanes.Revision()
	c := r.lists
	c.mu.Lock()
	e, ok := c.lists[mesh]
	c.mu.Unlock()
	if ok && e.rev == rev {
		return e.items
	}
	items := r.Dataplanes.List(mesh)
	c.mu.Lock()
	if len(c.lists) >= maxCachedLists {
		clear(c.lists)
	}
	c.lists[mesh] = cachedList{rev: rev, items: items}
	c.mu.Unlock()
	return items
}
