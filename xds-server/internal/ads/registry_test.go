package ads

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/token"
)

// changeSource is token.Keys.Changed's contract: a channel closed (and
// replaced) on every change.
type changeSource struct {
	mu sync.Mutex
	ch chan struct{}
}

func (c *changeSource) changes() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.ch
}

func (c *changeSource) fire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch != nil {
		close(c.ch)
		c.ch = nil
	}
}

// TestTokenRegistry: on a change every registered stream is verified again
// (at most maxRecheckers at once) and exactly those whose token no longer
// verifies are cut; the registry's goroutine ends with its last stream.
func TestTokenRegistry(t *testing.T) {
	src := &changeSource{}
	r := &tokenRegistry{changes: src.changes}
	var revoked sync.Map // stream index → true
	var inFlight, maxInFlight, calls atomic.Int64
	const n = 50
	streams := make([]*authStream, n)
	for i := range streams {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		s := &authStream{ctx: ctx, cancel: cancel, id: Identity{NodeID: "m.dp", Mesh: "m", Name: "dp"}, cut: make(chan struct{})}
		s.recheck = func(context.Context) error {
			defer calls.Add(1)
			cur := inFlight.Add(1)
			defer inFlight.Add(-1)
			for {
				m := maxInFlight.Load()
				if cur <= m || maxInFlight.CompareAndSwap(m, cur) {
					break
				}
			}
			if _, ok := revoked.Load(i); ok {
				return &token.Error{Reason: "token revoked"}
			}
			return nil
		}
		streams[i] = s
		r.add(s)
	}
	for i := 0; i < n; i += 5 {
		revoked.Store(i, true)
	}
	src.fire()
	for i, s := range streams {
		if i%5 != 0 {
			continue
		}
		select {
		case <-s.cut:
		case <-time.After(10 * time.Second):
			t.Fatalf("stream %d with a revoked token not cut", i)
		}
		select {
		case <-s.ctx.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("stream %d cut but its context not cancelled", i)
		}
	}
	// The round ends when every stream has been verified once.
	for deadline := time.Now().Add(10 * time.Second); calls.Load() < n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d streams verified after a change", calls.Load(), n)
		}
		time.Sleep(time.Millisecond) // polling the count
	}
	for i, s := range streams {
		select {
		case <-s.cut:
			if i%5 != 0 {
				t.Fatalf("stream %d cut, its token verifies", i)
			}
		default:
		}
	}
	if m := maxInFlight.Load(); m > maxRecheckers {
		t.Fatalf("%d verifications at once, want ≤ %d", m, maxRecheckers)
	}
	for _, s := range streams {
		r.remove(s)
	}
	r.mu.Lock()
	stopped := r.stop == nil && len(r.streams) == 0
	r.mu.Unlock()
	if !stopped {
		t.Fatal("registry still running without streams")
	}
}
