package ads

import (
	"context"
	"slices"
	"sync"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// OrderedCache hands a snapshot's responses to each stream in the xDS
// protocol's order for ADS: clusters, endpoints, listeners, routes, then
// secrets (generator.TypeURLs), so a change that adds a cluster and a
// listener routing to it reaches an Envoy cluster first ("make before
// break"; the protocol's "eventual consistency considerations").
//
// go-control-plane orders responses only in its ADS mode, which answers a
// request only when it names every resource of the type in the snapshot;
// proxyless gRPC names a subset (one listener, one cluster), so the cache
// cannot be in that mode. Outside it, SetSnapshot answers a node's open
// watches in map order. OrderedCache gives the cache a channel of its own
// per watch and, after the cache's SetSnapshot (or CreateWatch) returns,
// moves what arrived to the streams' channels in type order. With the
// ordered loop (sotwOptions), one channel per stream, that is the order on
// the wire.
//
// Delta watches are ordered the same way (go-control-plane's delta loop
// reads one channel per stream too). Only responses produced together are
// ordered: a type whose watch is not open (its ACK still in flight) gets
// its response when the watch opens, possibly after a later type's.
//
// Cost: a small record per open watch (channels are reused per node and
// type), and one extra channel send per response, under a per-node lock;
// about 5% of BenchmarkSotWLoop's CPU. The move's send to a stream's
// channel never blocks, which the per-node lock relies on (a stream
// cancelling a watch waits for it): a stream has at most one unread
// answer per served type (go-control-plane's loops drain a type's answer
// before they replace its watch), and its channel holds more than that —
// the ordered SotW loop's 10 (sotwOptions), the delta loop's 20, and a
// single-type stream's one per watch.
type OrderedCache struct {
	cachev3.SnapshotCache

	// nodes holds a node's record from its first watch or snapshot until
	// ClearSnapshot (the reconciler's, when the node's last stream ends):
	// no process-wide lock on the push and ACK paths.
	nodes sync.Map // node ID → *orderedNode
}

type orderedNode struct {
	mu      sync.Mutex
	watches []*orderedWatch // by rank
	// spare is a cancelled watch's (empty) channel per type, for the next
	// watch of the type: a stream replaces its watch of a type on every
	// ACK.
	spare      [typeCount]chan cachev3.Response
	spareDelta [typeCount]chan cachev3.DeltaResponse
}

// orderedWatch is a SotW watch (inner, outer) or a delta one (dInner,
// dOuter).
type orderedWatch struct {
	rank           int // position of the type in generator.TypeURLs
	inner, outer   chan cachev3.Response
	dInner, dOuter chan cachev3.DeltaResponse
	cancelled      bool
}

// NewOrderedCache wraps c, a cache not in ADS mode.
func NewOrderedCache(c cachev3.SnapshotCache) *OrderedCache {
	return &OrderedCache{SnapshotCache: c}
}

// node returns id's record.
func (o *OrderedCache) node(id string) *orderedNode {
	if n, ok := o.nodes.Load(id); ok {
		return n.(*orderedNode)
	}
	n, _ := o.nodes.LoadOrStore(id, &orderedNode{})
	return n.(*orderedNode)
}

// Len is how many nodes the cache keeps a record of.
func (o *OrderedCache) Len() int {
	n := 0
	o.nodes.Range(func(any, any) bool { n++; return true })
	return n
}

// ClearSnapshot forgets the node (its streams have ended: a watch still
// being cancelled holds its record itself).
func (o *OrderedCache) ClearSnapshot(node string) {
	o.SnapshotCache.ClearSnapshot(node)
	o.nodes.Delete(node)
}

// move hands what the cache answered to the streams, in type order (under
// n.mu).
func (n *orderedNode) move() {
	for _, w := range n.watches {
		if w.inner != nil {
			select {
			case r := <-w.inner:
				w.outer <- r
			default:
			}
			continue
		}
		select {
		case r := <-w.dInner:
			w.dOuter <- r
		default:
		}
	}
}

// SetSnapshot sets the node's snapshot and hands the responses it caused
// to the node's streams in type order.
func (o *OrderedCache) SetSnapshot(ctx context.Context, node string, snapshot cachev3.ResourceSnapshot) error {
	// Always through the node's lock, even with no watch recorded: a
	// watch being created meanwhile must not get an answer nobody moves.
	n := o.node(node)
	n.mu.Lock()
	defer n.mu.Unlock()
	err := o.SnapshotCache.SetSnapshot(ctx, node, snapshot)
	n.move()
	return err
}

// CreateWatch opens a SotW watch whose responses reach value in type order
// with the node's other watches'.
func (o *OrderedCache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, value chan cachev3.Response) (func(), error) {
	rank := typeIndex(req.GetTypeUrl())
	if rank < 0 {
		// Not a served type (refused before the cache by checkRequest).
		return o.SnapshotCache.CreateWatch(req, sub, value)
	}
	return o.watch(req.GetNode().GetId(), &orderedWatch{rank: rank, outer: value}, func(w *orderedWatch) (func(), error) {
		return o.SnapshotCache.CreateWatch(req, sub, w.inner)
	})
}

// CreateDeltaWatch opens a delta watch whose responses reach value in type
// order with the node's other watches'.
func (o *OrderedCache) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, value chan cachev3.DeltaResponse) (func(), error) {
	rank := typeIndex(req.GetTypeUrl())
	if rank < 0 {
		return o.SnapshotCache.CreateDeltaWatch(req, sub, value)
	}
	return o.watch(req.GetNode().GetId(), &orderedWatch{rank: rank, dOuter: value}, func(w *orderedWatch) (func(), error) {
		return o.SnapshotCache.CreateDeltaWatch(req, sub, w.dInner)
	})
}

// watch records w on node id's list and opens it in the cache with
// create, which answers on w's inner channel (taken from the spares).
func (o *OrderedCache) watch(id string, w *orderedWatch, create func(*orderedWatch) (func(), error)) (func(), error) {
	n := o.node(id)
	n.mu.Lock()
	rank, delta := w.rank, w.dOuter != nil
	if delta {
		if w.dInner = n.spareDelta[rank]; w.dInner == nil {
			w.dInner = make(chan cachev3.DeltaResponse, 1)
		}
		n.spareDelta[rank] = nil
	} else {
		if w.inner = n.spare[rank]; w.inner == nil {
			w.inner = make(chan cachev3.Response, 1)
		}
		n.spare[rank] = nil
	}
	// keep gives w's channel back as the type's spare (it is empty: every
	// answer is moved before n.mu is let go).
	keep := func() {
		if delta {
			n.spareDelta[rank] = w.dInner
		} else {
			n.spare[rank] = w.inner
		}
	}
	cancel, err := create(w)
	if err != nil {
		keep()
		n.mu.Unlock()
		return nil, err
	}
	i, _ := slices.BinarySearchFunc(n.watches, rank, func(w *orderedWatch, r int) int { return w.rank - r })
	for i < len(n.watches) && n.watches[i].rank == rank {
		i++ // after the same type's watches of other streams
	}
	n.watches = slices.Insert(n.watches, i, w)
	n.move()
	n.mu.Unlock()
	return func() {
		n.mu.Lock()
		if w.cancelled {
			n.mu.Unlock()
			return
		}
		w.cancelled = true
		if cancel != nil {
			cancel()
		}
		n.watches = slices.DeleteFunc(n.watches, func(x *orderedWatch) bool { return x == w })
		keep()
		n.mu.Unlock()
	}, nil
}
