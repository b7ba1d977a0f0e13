// Package issued tracks which CA backend signed the current certificate of
// every workload, and until when it is valid, so a rotated-out root stays
// in the trust bundle exactly as long as a workload may still present a
// certificate chaining to it.
//
// Storage: one etcd key per workload, outside the resource tree,
//
//	/weft/ca/issued/<mesh>/<Type>/<name> = {"backend":..,"notAfter":..,"issuedAt":..}
//
// overwritten when the workload is issued a new certificate (so re-issuing
// under the new backend retires the old record) and deleted by a sweep
// after it expires. Writes are batched (write-behind, every flush interval)
// so signing never waits for etcd; every replica watches the prefix and
// holds the same index. A replica that crashes loses at most one flush
// interval of records: those workloads renew under the enabled backend
// anyway, and their old certificates are covered by records written before.
package issued

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultPrefix is where records live.
const DefaultPrefix = "/weft/ca/issued/"

// maxTxnOps stays under etcd's default --max-txn-ops (128).
const maxTxnOps = 100

// Record is the latest certificate of one workload.
type Record struct {
	Backend  string    `json:"backend"`
	NotAfter time.Time `json:"notAfter"`
	IssuedAt time.Time `json:"issuedAt"`
	rev      int64
}

// Tracker records issued certificates and indexes everyone's records.
type Tracker struct {
	cli      *clientv3.Client
	prefix   string
	interval time.Duration
	log      *slog.Logger
	now      func() time.Time
	onChange func(mesh string)

	mu      sync.Mutex
	records map[string]map[string]Record // mesh → "<Type>/<name>" → record
	pending map[string]Record            // full key → record to write
	synced  chan struct{}
	once    sync.Once
}

// New returns a tracker; onChange is called (from the tracker's goroutine)
// when a mesh's set of backends with live certificates may have changed.
func New(cli *clientv3.Client, interval time.Duration, log *slog.Logger, onChange func(mesh string)) *Tracker {
	if interval <= 0 {
		interval = time.Second
	}
	if onChange == nil {
		onChange = func(string) {}
	}
	return &Tracker{cli: cli, prefix: DefaultPrefix, interval: interval, log: log.With("component", "issued"), now: time.Now,
		onChange: onChange, records: map[string]map[string]Record{}, pending: map[string]Record{}, synced: make(chan struct{})}
}

// WithPrefix moves the records (tests).
func (t *Tracker) WithPrefix(p string) *Tracker { t.prefix = p; return t }

// WithClock sets the clock.
func (t *Tracker) WithClock(now func() time.Time) *Tracker { t.now = now; return t }

// Synced is closed once the index holds every stored record.
func (t *Tracker) Synced() <-chan struct{} { return t.synced }

// Record notes that workload typ/name of mesh got a certificate from
// backend valid until notAfter. It is visible locally at once and written
// to etcd at the next flush.
func (t *Tracker) Record(mesh, typ, name, backend string, issuedAt, notAfter time.Time) {
	id := typ + "/" + name
	r := Record{Backend: backend, NotAfter: notAfter.UTC(), IssuedAt: issuedAt.UTC()}
	t.mu.Lock()
	m := t.records[mesh]
	if m == nil {
		m = map[string]Record{}
		t.records[mesh] = m
	}
	old, had := m[id]
	r.rev = old.rev
	m[id] = r
	t.pending[t.prefix+mesh+"/"+id] = r
	t.mu.Unlock()
	if had && old.Backend != backend {
		t.onChange(mesh)
	}
}

// Backends returns, for mesh, every backend some workload's current
// certificate still chains to at now, with the latest expiry among them.
func (t *Tracker) Backends(mesh string, now time.Time) map[string]time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string]time.Time{}
	for _, r := range t.records[mesh] {
		if r.NotAfter.After(now) && r.NotAfter.After(out[r.Backend]) {
			out[r.Backend] = r.NotAfter
		}
	}
	return out
}

// Meshes lists the meshes with records.
func (t *Tracker) Meshes() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.records))
	for m := range t.records {
		out = append(out, m)
	}
	return out
}

// Run flushes, watches and sweeps until ctx ends, then flushes once more.
func (t *Tracker) Run(ctx context.Context) error {
	go t.watch(ctx)
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	sweepEvery := max(int(time.Minute/t.interval), 1)
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			t.Flush(fctx)
			cancel()
			return nil
		case <-tick.C:
			t.Flush(ctx)
			if (n+1)%sweepEvery == 0 {
				t.Sweep(ctx)
			}
		}
	}
}

// Flush writes pending records now.
func (t *Tracker) Flush(ctx context.Context) {
	t.mu.Lock()
	pending := t.pending
	t.pending = map[string]Record{}
	t.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	ops := make([]clientv3.Op, 0, min(len(pending), maxTxnOps))
	commit := func() {
		if len(ops) == 0 {
			return
		}
		if _, err := t.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			if ctx.Err() == nil {
				t.log.Warn("writing issued-certificate records failed; retrying at next flush", "records", len(ops), "error", err)
			}
			t.mu.Lock()
			for _, op := range ops {
				k := string(op.KeyBytes())
				if _, newer := t.pending[k]; !newer {
					t.pending[k] = pending[k]
				}
			}
			t.mu.Unlock()
		}
		ops = ops[:0]
	}
	for k, r := range pending {
		v, _ := json.Marshal(r)
		ops = append(ops, clientv3.OpPut(k, string(v)))
		if len(ops) == maxTxnOps {
			commit()
		}
	}
	commit()
}

// Sweep deletes expired records (conditionally, so a record renewed
// meanwhile survives).
func (t *Tracker) Sweep(ctx context.Context) {
	cutoff := t.now().Add(-time.Minute)
	type del struct {
		key string
		rev int64
	}
	var dels []del
	t.mu.Lock()
	for mesh, m := range t.records {
		for id, r := range m {
			if r.NotAfter.Before(cutoff) && r.rev > 0 {
				dels = append(dels, del{t.prefix + mesh + "/" + id, r.rev})
			}
		}
	}
	t.mu.Unlock()
	for _, d := range dels {
		if _, err := t.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(d.key), "=", d.rev)).Then(clientv3.OpDelete(d.key)).Commit(); err != nil {
			t.log.Debug("sweep failed", "key", d.key, "error", err)
			return
		}
	}
}

func (t *Tracker) parseKey(k string) (mesh, id string, ok bool) {
	rest, ok := strings.CutPrefix(k, t.prefix)
	if !ok {
		return "", "", false
	}
	mesh, id, ok = strings.Cut(rest, "/")
	return mesh, id, ok && mesh != "" && id != ""
}

// apply stores a record read from etcd unless the local one is newer.
func (t *Tracker) apply(key string, val []byte, rev int64, deleted bool) (mesh string, changed bool) {
	mesh, id, ok := t.parseKey(key)
	if !ok {
		return "", false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.records[mesh]
	if m == nil {
		m = map[string]Record{}
		t.records[mesh] = m
	}
	old, had := m[id]
	if deleted {
		// Only the sweep deletes, and only expired records: a local record
		// that is fresh again was renewed after the sweep read it.
		if had && !old.NotAfter.After(t.now()) {
			delete(m, id)
			return mesh, true
		}
		return mesh, false
	}
	var r Record
	if err := json.Unmarshal(val, &r); err != nil {
		t.log.Warn("ignoring malformed issued-certificate record", "key", key, "error", err)
		return mesh, false
	}
	r.rev = rev
	if had && old.IssuedAt.After(r.IssuedAt) {
		return mesh, false
	}
	m[id] = r
	return mesh, !had || old.Backend != r.Backend
}

func (t *Tracker) list(ctx context.Context) (int64, error) {
	resp, err := t.cli.Get(ctx, t.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	changed := map[string]bool{}
	seen := map[string]bool{}
	for _, kv := range resp.Kvs {
		seen[string(kv.Key)] = true
		if mesh, c := t.apply(string(kv.Key), kv.Value, kv.ModRevision, false); c {
			changed[mesh] = true
		}
	}
	// Records deleted while we were not watching.
	t.mu.Lock()
	for mesh, m := range t.records {
		for id, r := range m {
			if r.rev != 0 && !seen[t.prefix+mesh+"/"+id] {
				delete(m, id)
				changed[mesh] = true
			}
		}
	}
	t.mu.Unlock()
	for mesh := range changed {
		t.onChange(mesh)
	}
	return resp.Header.Revision, nil
}

func (t *Tracker) watch(ctx context.Context) {
	backoff := 200 * time.Millisecond
	rev := int64(0)
	for ctx.Err() == nil {
		if rev == 0 {
			r, err := t.list(ctx)
			if err != nil {
				t.log.Warn("listing issued-certificate records failed", "error", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, 5*time.Second)
				continue
			}
			rev = r
			t.once.Do(func() { close(t.synced) })
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range t.cli.Watch(wctx, t.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
			if err := resp.Err(); err != nil {
				if err == rpctypes.ErrCompacted {
					rev = 0
				}
				break
			}
			changed := map[string]bool{}
			for _, ev := range resp.Events {
				mesh, c := t.apply(string(ev.Kv.Key), ev.Kv.Value, ev.Kv.ModRevision, ev.Type == clientv3.EventTypeDelete)
				if c {
					changed[mesh] = true
				}
			}
			rev = resp.Header.Revision
			for mesh := range changed {
				t.onChange(mesh)
			}
		}
		cancel()
	}
}
