package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// EventKind says what an event carries.
type EventKind int

const (
	// EventPut is a created or updated resource.
	EventPut EventKind = iota + 1
	// EventDelete is a removed resource; Resource holds its last state when
	// the store still had it, else only its identity.
	EventDelete
	// EventSync replaces everything the watcher holds with Resources: the
	// first event of a watch from revision 0, and the event after the store
	// compacted past the watcher's revision (so no change is lost silently).
	EventSync
)

func (k EventKind) String() string {
	switch k {
	case EventPut:
		return "PUT"
	case EventDelete:
		return "DELETE"
	case EventSync:
		return "SYNC"
	}
	return "UNKNOWN"
}

// Event is one change seen by a watch.
type Event struct {
	Kind      EventKind
	Resource  *resource.Resource
	Resources []*resource.Resource
	// Revision is the store revision of the change (or of the sync).
	Revision int64
}

// WatchOptions tunes a watch.
type WatchOptions struct {
	// Buffer is the event channel's capacity (default 256).
	Buffer int
	// RetryBackoff is the wait before re-establishing a failed watch
	// (default 200ms, doubling to 5s).
	RetryBackoff time.Duration
}

// Watch streams the changes to a type (every type when t is nil), within a
// mesh when mesh is set, after fromRevision. With fromRevision 0 it first
// sends an EventSync of the current state. It resumes after dropped
// connections from the last revision it delivered, and when etcd has
// compacted that revision it re-lists and sends an EventSync. The channel
// closes when ctx ends.
func (s *Store) Watch(ctx context.Context, t *resource.Type, mesh string, fromRevision int64, opts ...WatchOptions) (<-chan Event, error) {
	o := WatchOptions{Buffer: 256, RetryBackoff: 200 * time.Millisecond}
	if len(opts) > 0 {
		if opts[0].Buffer > 0 {
			o.Buffer = opts[0].Buffer
		}
		if opts[0].RetryBackoff > 0 {
			o.RetryBackoff = opts[0].RetryBackoff
		}
	}
	if fromRevision < 0 {
		return nil, fmt.Errorf("watch: negative revision %d", fromRevision)
	}
	out := make(chan Event, o.Buffer)
	w := &watcher{s: s, t: t, mesh: mesh, prefix: s.TypePrefix(t, mesh), out: out, backoff: o.RetryBackoff}
	go w.run(ctx, fromRevision)
	return out, nil
}

type watcher struct {
	s       *Store
	t       *resource.Type
	mesh    string
	prefix  string
	out     chan Event
	backoff time.Duration
}

func (w *watcher) send(ctx context.Context, ev Event) bool {
	select {
	case w.out <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// snapshot lists everything under the watch prefix at one revision.
func (w *watcher) snapshot(ctx context.Context) (Event, error) {
	var items []*resource.Resource
	var rev int64
	if w.t != nil {
		var err error
		items, rev, err = w.s.ListAll(ctx, w.t, w.mesh)
		if err != nil {
			return Event{}, err
		}
	} else {
		for _, t := range resource.Types() {
			page, prev, err := w.s.listAllAt(ctx, t, rev)
			if err != nil {
				return Event{}, err
			}
			rev = prev
			items = append(items, page...)
		}
	}
	return Event{Kind: EventSync, Resources: items, Revision: rev}, nil
}

func (s *Store) listAllAt(ctx context.Context, t *resource.Type, rev int64) ([]*resource.Resource, int64, error) {
	var out []*resource.Resource
	o := ListOptions{Limit: MaxPageSize, Revision: rev}
	for {
		page, err := s.List(ctx, t, "", o)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, page.Items...)
		if page.Next == "" {
			return out, page.Revision, nil
		}
		o.Continue, o.Revision = page.Next, page.Revision
	}
}

func (w *watcher) run(ctx context.Context, rev int64) {
	defer close(w.out)
	log := w.s.log.With("prefix", w.prefix)
	backoff := w.backoff
	wait := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
		return true
	}
	needSync := rev == 0
	for ctx.Err() == nil {
		if needSync {
			ev, err := w.snapshot(ctx)
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("watch: listing failed, retrying", "error", err)
				}
				if !wait() {
					return
				}
				continue
			}
			if !w.send(ctx, ev) {
				return
			}
			rev, needSync = ev.Revision, false
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := w.s.cli.Watch(wctx, w.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithPrevKV(), clientv3.WithProgressNotify())
		compacted := false
		for resp := range wch {
			if resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
				log.Info("watch: revision compacted, re-listing", "revision", rev, "compactRevision", resp.CompactRevision)
				compacted = true
				break
			}
			if err := resp.Err(); err != nil {
				log.Warn("watch: stream error, resuming", "revision", rev, "error", err)
				break
			}
			backoff = w.backoff
			if resp.IsProgressNotify() && resp.Header.Revision > rev {
				rev = resp.Header.Revision
				continue
			}
			for _, e := range resp.Events {
				ev, err := w.event(e)
				if err != nil {
					// A value we cannot read is reported and skipped, not
					// silently dropped: it is counted and logged with its key.
					w.s.skipUndecodable(string(e.Kv.Key), e.Kv.ModRevision, err)
					rev = e.Kv.ModRevision
					continue
				}
				if !w.send(ctx, ev) {
					cancel()
					return
				}
				rev = e.Kv.ModRevision
			}
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		if compacted {
			needSync = true
			continue
		}
		if !wait() {
			return
		}
	}
}

func (w *watcher) event(e *clientv3.Event) (Event, error) {
	key := string(e.Kv.Key)
	if e.Type == clientv3.EventTypeDelete {
		if e.PrevKv != nil {
			if r, err := w.s.decode(key, e.PrevKv.Value, e.PrevKv.ModRevision); err == nil {
				return Event{Kind: EventDelete, Resource: r, Revision: e.Kv.ModRevision}, nil
			}
		}
		t, mesh, name, err := w.s.ParseKey(key)
		if err != nil {
			return Event{}, err
		}
		return Event{Kind: EventDelete, Resource: &resource.Resource{Meta: &meshv1.Meta{Type: t.Name, Mesh: mesh, Name: name}, Spec: t.NewSpec()}, Revision: e.Kv.ModRevision}, nil
	}
	r, err := w.s.decode(key, e.Kv.Value, e.Kv.ModRevision)
	if err != nil {
		return Event{}, err
	}
	return Event{Kind: EventPut, Resource: r, Revision: e.Kv.ModRevision}, nil
}
