package store

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/telemetry"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	storev1 "github.com/weftmesh/weft/proto/gen/go/weft/store/v1"
)

// DefaultPrefix is where resources live in etcd.
const DefaultPrefix = "/weft/resources/"

// Limits on list pages.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// Store is the etcd-backed resource store. It is safe for concurrent use.
type Store struct {
	cli     *clientv3.Client
	prefix  string
	keys    *seal.Keyring
	now     func() time.Time
	log     *slog.Logger
	latency *prometheus.HistogramVec
	tracer  trace.Tracer
	timeout time.Duration

	undecodable *prometheus.CounterVec
	badMu       sync.Mutex
	badLogged   map[string]int64 // key -> mod revision already logged
}

// DefaultTimeout bounds every store call (each page of a list, each
// transaction): etcd without quorum makes calls hang, and a caller must get
// ErrUnavailable or ErrOutcomeUnknown instead.
const DefaultTimeout = 5 * time.Second

// WithTimeout sets the deadline of every store call (default
// DefaultTimeout). Watches are not bounded.
func WithTimeout(d time.Duration) Option {
	return func(s *Store) {
		if d > 0 {
			s.timeout = d
		}
	}
}

// Option configures a Store.
type Option func(*Store)

// WithPrefix stores resources under another etcd prefix (it must end in "/").
func WithPrefix(p string) Option { return func(s *Store) { s.prefix = p } }

// WithKeyring seals sensitive types with the keyring. Without one, writing
// or reading a sensitive type fails: secrets are never stored in the clear.
func WithKeyring(k *seal.Keyring) Option { return func(s *Store) { s.keys = k } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.log = l } }

// WithClock sets the clock used for creation and modification times.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// WithTracerProvider makes the store's spans with tp, the service's own
// provider (default: the global one).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(s *Store) { s.tracer = tp.Tracer("github.com/weftmesh/weft/pkg/store") }
}

// WithMetrics records operation latency in reg as weft_store_operation_seconds.
func WithMetrics(reg prometheus.Registerer) Option {
	return func(s *Store) {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "weft_store_operation_seconds",
			Help:    "Latency of resource store operations against etcd.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"operation", "type", "result"})
		s.latency = telemetry.MustRegister(reg, h)
		s.undecodable = telemetry.MustRegister(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_store_undecodable_total",
			Help: "Stored values that could not be decoded (sealed with a removed key, tampered or corrupt) and were skipped by a list or watch.",
		}, []string{"type"}))
	}
}

// New returns a store on an etcd client.
func New(cli *clientv3.Client, opts ...Option) *Store {
	s := &Store{cli: cli, prefix: DefaultPrefix, now: time.Now, log: slog.New(slog.DiscardHandler), tracer: otel.Tracer("github.com/weftmesh/weft/pkg/store"),
		timeout: DefaultTimeout, badLogged: map[string]int64{}}
	for _, o := range opts {
		o(s)
	}
	s.log = s.log.With("component", "store")
	return s
}

// Client returns the etcd client, for leases and elections.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Prefix returns the etcd prefix resources are stored under.
func (s *Store) Prefix() string { return s.prefix }

// Key returns the etcd key of a resource.
func (s *Store) Key(t *resource.Type, mesh, name string) string {
	if t.MeshScoped() {
		return s.prefix + t.Name + "/" + mesh + "/" + name
	}
	return s.prefix + t.Name + "/" + name
}

// TypePrefix returns the etcd prefix of a type's resources, within one mesh
// when mesh is set.
func (s *Store) TypePrefix(t *resource.Type, mesh string) string {
	if t == nil {
		return s.prefix
	}
	if t.MeshScoped() && mesh != "" {
		return s.prefix + t.Name + "/" + mesh + "/"
	}
	return s.prefix + t.Name + "/"
}

// ParseKey splits an etcd key into type, mesh and name.
func (s *Store) ParseKey(key string) (*resource.Type, string, string, error) {
	rest, ok := strings.CutPrefix(key, s.prefix)
	if !ok {
		return nil, "", "", fmt.Errorf("key %q is outside %q", key, s.prefix)
	}
	typ, rest, ok := strings.Cut(rest, "/")
	t, found := resource.ByName(typ)
	if !ok || !found {
		return nil, "", "", fmt.Errorf("key %q has no known type", key)
	}
	if !t.MeshScoped() {
		return t, "", rest, nil
	}
	mesh, name, ok := strings.Cut(rest, "/")
	if !ok {
		return nil, "", "", fmt.Errorf("key %q has no mesh", key)
	}
	return t, mesh, name, nil
}

// span starts a store call: a trace span, latency, and the call's deadline
// (end releases it).
func (s *Store) span(ctx context.Context, op string, t *resource.Type, mesh, name string) (context.Context, func(*error)) {
	typ := "*"
	if t != nil {
		typ = t.Name
	}
	ctx, sp := s.tracer.Start(ctx, "store."+op, trace.WithAttributes(
		attribute.String("weft.type", typ), attribute.String("weft.mesh", mesh), attribute.String("weft.name", name)))
	if _, nested := ctx.Value(parentKey{}).(context.Context); !nested {
		ctx = context.WithValue(ctx, parentKey{}, ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	start := time.Now()
	return ctx, func(errp *error) {
		cancel()
		result := "ok"
		if err := *errp; err != nil {
			result = errorResult(err)
			// A caller that went away (a disconnect, a shutdown) is not a
			// failure of the store.
			if result != "not_found" && result != "conflict" && result != "mesh_not_found" && !errors.Is(err, context.Canceled) {
				sp.RecordError(err)
				sp.SetStatus(codes.Error, err.Error())
			}
		}
		if s.latency != nil {
			s.latency.WithLabelValues(op, typ, result).Observe(time.Since(start).Seconds())
		}
		sp.End()
	}
}

func errorResult(err error) string {
	switch {
	case IsNotFound(err):
		return "not_found"
	case IsConflict(err), IsAlreadyExists(err):
		return "conflict"
	case IsMeshNotFound(err):
		return "mesh_not_found"
	case IsUnavailable(err):
		return "unavailable"
	case IsOutcomeUnknown(err):
		return "outcome_unknown"
	case IsUndecodable(err):
		return "undecodable"
	}
	return "error"
}

// encode serialises r for key; the value records the traceparent of ctx's
// span (the store call's own span), so watchers continue the writer's trace.
func (s *Store) encode(ctx context.Context, key string, r *resource.Resource) ([]byte, error) {
	t := r.Type()
	spec, err := proto.MarshalOptions{Deterministic: true}.Marshal(r.Spec)
	if err != nil {
		return nil, fmt.Errorf("marshal %s: %w", r.Key(), err)
	}
	meta := proto.Clone(r.Meta).(*meshv1.Meta)
	meta.Version = 0
	sr := &storev1.StoredResource{Meta: meta, Traceparent: telemetry.Traceparent(ctx)}
	if t.Sensitive {
		if s.keys == nil {
			return nil, fmt.Errorf("store %s: no encryption key configured, refusing to store a secret in the clear", r.Key())
		}
		if sr.Sealed, err = s.keys.Seal(spec, []byte(key)); err != nil {
			return nil, err
		}
	} else {
		sr.Spec = spec
	}
	return proto.Marshal(sr)
}

func (s *Store) decode(key string, value []byte, modRev int64) (*resource.Resource, error) {
	t, _, _, err := s.ParseKey(key)
	if err != nil {
		return nil, err
	}
	bad := func(reason string) error {
		return &Error{Err: ErrUndecodable, Key: s.displayKey(key), Reason: reason}
	}
	sr := &storev1.StoredResource{}
	if err := proto.Unmarshal(value, sr); err != nil {
		return nil, bad("corrupt record: " + err.Error())
	}
	spec := sr.GetSpec()
	if sr.GetSealed() != nil {
		if s.keys == nil {
			return nil, bad("sealed value and no encryption key configured")
		}
		if spec, err = s.keys.Open(sr.GetSealed(), []byte(key)); err != nil {
			return nil, bad(err.Error())
		}
	} else if t.Sensitive {
		return nil, bad("secret stored unsealed")
	}
	msg := t.NewSpec()
	if err := proto.Unmarshal(spec, msg); err != nil {
		return nil, bad("corrupt spec: " + err.Error())
	}
	meta := sr.GetMeta()
	if meta == nil {
		meta = &meshv1.Meta{}
	}
	meta.Version = modRev
	out := &resource.Resource{Meta: meta, Spec: msg}
	if tp := sr.GetTraceparent(); len(tp) == telemetry.TraceparentLen {
		// Anything else was not written by a store: ignored, bounded.
		out.Traceparent = tp
	}
	return out, nil
}

// displayKey names an etcd key as type/mesh/name for errors and logs.
func (s *Store) displayKey(key string) string {
	if t, mesh, name, err := s.ParseKey(key); err == nil {
		return resource.Key(t.Name, mesh, name)
	}
	return key
}

// maxBadLogged bounds the memory of which undecodable values were logged.
const maxBadLogged = 10000

// skipUndecodable counts and logs (once per key and revision, with the
// reason and never the value) a value a list or watch skips.
func (s *Store) skipUndecodable(key string, modRev int64, err error) {
	typ := "unknown"
	if t, _, _, perr := s.ParseKey(key); perr == nil {
		typ = t.Name
	}
	if s.undecodable != nil {
		s.undecodable.WithLabelValues(typ).Inc()
	}
	s.badMu.Lock()
	seen := s.badLogged[key] == modRev
	if !seen {
		if len(s.badLogged) >= maxBadLogged {
			clear(s.badLogged)
		}
		s.badLogged[key] = modRev
	}
	s.badMu.Unlock()
	if !seen {
		s.log.Error("skipping a stored value that cannot be decoded; restore the encryption key that sealed it, or delete it (weftctl delete, see docs/deploy.md 'Repairing an unreadable value')",
			"key", s.displayKey(key), "revision", modRev, "error", err)
	}
}

func checkType(r *resource.Resource) (*resource.Type, error) {
	if r == nil || r.Meta == nil {
		return nil, errors.New("store: nil resource")
	}
	t := r.Type()
	if t == nil {
		return nil, fmt.Errorf("store: unknown type %q", r.Meta.GetType())
	}
	if r.Spec == nil {
		return nil, fmt.Errorf("store %s: nil spec", r.Key())
	}
	if !t.MeshScoped() && r.Meta.GetMesh() != "" {
		return nil, fmt.Errorf("store %s: %s is not mesh-scoped", r.Key(), t.Name)
	}
	if t.MeshScoped() && r.Meta.GetMesh() == "" {
		return nil, fmt.Errorf("store %s: mesh must be set", r.Key())
	}
	return t, nil
}

// Get reads one resource.
func (s *Store) Get(ctx context.Context, t *resource.Type, mesh, name string) (_ *resource.Resource, err error) {
	ctx, end := s.span(ctx, "Get", t, mesh, name)
	defer end(&err)
	key := s.Key(t, mesh, name)
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return nil, classify(parentCtx(ctx), err, resource.Key(t.Name, mesh, name), false)
	}
	if len(resp.Kvs) == 0 {
		return nil, &Error{Err: ErrNotFound, Key: resource.Key(t.Name, mesh, name)}
	}
	return s.decode(key, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
}

// ID names a resource of a known type: mesh (empty for global-scoped
// types) and name.
type ID struct{ Mesh, Name string }

// getManyBatch stays under etcd's default --max-txn-ops (128).
const getManyBatch = 100

// GetMany reads several resources of one type in as few round trips as
// etcd's transaction limit allows (one per 100). The result is in the order
// of ids; a resource that does not exist, or cannot be decoded (counted and
// logged), is nil.
func (s *Store) GetMany(ctx context.Context, t *resource.Type, ids []ID) (_ []*resource.Resource, err error) {
	ctx, end := s.span(ctx, "GetMany", t, "", "")
	defer end(&err)
	out := make([]*resource.Resource, len(ids))
	for start := 0; start < len(ids); start += getManyBatch {
		batch := ids[start:min(start+getManyBatch, len(ids))]
		ops := make([]clientv3.Op, len(batch))
		for i, id := range batch {
			ops[i] = clientv3.OpGet(s.Key(t, id.Mesh, id.Name))
		}
		resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, classify(parentCtx(ctx), err, fmt.Sprintf("get %d %s", len(batch), t.Name), false)
		}
		for i, r := range resp.Responses {
			kvs := r.GetResponseRange().GetKvs()
			if len(kvs) == 0 {
				continue
			}
			if out[start+i], err = s.decode(string(kvs[0].Key), kvs[0].Value, kvs[0].ModRevision); err != nil {
				// One unreadable value is reported as absent, not an
				// error for the whole batch.
				s.skipUndecodable(string(kvs[0].Key), kvs[0].ModRevision, err)
				out[start+i] = nil
			}
		}
	}
	return out, nil
}

// ListOptions pages a list.
type ListOptions struct {
	// Limit is the page size; 0 means DefaultPageSize, capped at MaxPageSize.
	Limit int
	// Continue is the Next token of the previous page.
	Continue string
	// Revision reads at a past store revision (0: latest).
	Revision int64
}

// ListResult is one page.
type ListResult struct {
	Items []*resource.Resource
	// Total counts every resource the list covers, on all pages.
	Total int64
	// Next continues the list; empty on the last page.
	Next string
	// Revision is the store revision the page was read at.
	Revision int64
	// Skipped names (type/mesh/name) the values of this page that could not
	// be decoded; they are not in Items and not counted in Total.
	Skipped []string
}

// List reads one page of a type's resources in key order, within a mesh when
// mesh is set. Values that cannot be decoded are skipped, counted and logged
// (see ListResult.Skipped): one bad value never fails the list.
func (s *Store) List(ctx context.Context, t *resource.Type, mesh string, o ListOptions) (_ *ListResult, err error) {
	ctx, end := s.span(ctx, "List", t, mesh, "")
	defer end(&err)
	prefix := s.TypePrefix(t, mesh)
	limit := o.Limit
	if limit <= 0 {
		limit = DefaultPageSize
	}
	if limit > MaxPageSize {
		limit = MaxPageSize
	}
	start := prefix
	if o.Continue != "" {
		raw, err := base64.RawURLEncoding.DecodeString(o.Continue)
		if err != nil || len(raw) == 0 {
			return nil, ErrInvalidContinue
		}
		start = prefix + string(raw) + "\x00"
	}
	rangeEnd := clientv3.GetPrefixRangeEnd(prefix)
	var revOpt []clientv3.OpOption
	if o.Revision > 0 {
		revOpt = append(revOpt, clientv3.WithRev(o.Revision))
	}
	txn, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(start, append([]clientv3.OpOption{clientv3.WithRange(rangeEnd), clientv3.WithLimit(int64(limit))}, revOpt...)...),
		clientv3.OpGet(prefix, append([]clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithCountOnly()}, revOpt...)...),
	).Commit()
	if err != nil {
		return nil, classify(parentCtx(ctx), err, "list "+strings.TrimPrefix(prefix, s.prefix), false)
	}
	page := txn.Responses[0].GetResponseRange()
	res := &ListResult{Total: txn.Responses[1].GetResponseRange().Count, Revision: txn.Header.Revision}
	if o.Revision > 0 {
		res.Revision = o.Revision
	}
	for _, kv := range page.Kvs {
		r, err := s.decode(string(kv.Key), kv.Value, kv.ModRevision)
		if err != nil {
			// One bad value degrades that value only: the list goes on.
			s.skipUndecodable(string(kv.Key), kv.ModRevision, err)
			res.Skipped = append(res.Skipped, s.displayKey(string(kv.Key)))
			res.Total--
			continue
		}
		res.Items = append(res.Items, r)
	}
	if page.More && len(page.Kvs) > 0 {
		last := strings.TrimPrefix(string(page.Kvs[len(page.Kvs)-1].Key), prefix)
		res.Next = base64.RawURLEncoding.EncodeToString([]byte(last))
	}
	return res, nil
}

// ListAll reads every resource of a type (in a mesh when set) at one
// consistent revision, page by page.
func (s *Store) ListAll(ctx context.Context, t *resource.Type, mesh string) ([]*resource.Resource, int64, error) {
	var out []*resource.Resource
	o := ListOptions{Limit: MaxPageSize}
	for {
		page, err := s.List(ctx, t, mesh, o)
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

// WriteOption changes how a write is done.
type WriteOption func(*writeOpts)

type writeOpts struct {
	lease       clientv3.LeaseID
	skipMeshChk bool
	guards      []guard
	current     *resource.Resource
}

type guard struct {
	key, display string
	version      int64 // unchanged at this version; 0 with exists
	exists       bool  // must exist
}

// IfExists makes a Create, Update or Delete conditional on another
// resource existing; otherwise the write fails with ErrConflict naming it.
// For example, a Mesh whose CA reads a Secret is stored only while the
// Secret (checked before) still exists.
func (s *Store) IfExists(t *resource.Type, mesh, name string) WriteOption {
	if !t.MeshScoped() {
		mesh = ""
	}
	return func(o *writeOpts) {
		o.guards = append(o.guards, guard{key: s.Key(t, mesh, name), display: resource.Key(t.Name, mesh, name), exists: true})
	}
}

func (o writeOpts) guardCmps() []clientv3.Cmp {
	var out []clientv3.Cmp
	for _, g := range o.guards {
		if g.exists {
			out = append(out, clientv3.Compare(clientv3.CreateRevision(g.key), ">", 0))
		} else {
			out = append(out, clientv3.Compare(clientv3.ModRevision(g.key), "=", g.version))
		}
	}
	return out
}

func (o writeOpts) guardReads() []clientv3.Op {
	var out []clientv3.Op
	for _, g := range o.guards {
		out = append(out, clientv3.OpGet(g.key, clientv3.WithKeysOnly()))
	}
	return out
}

// failedGuard returns the error of the first guard that does not hold in
// resps (the answers of guardReads, in order), or nil.
func (o writeOpts) failedGuard(resps []*etcdserverpb.ResponseOp) error {
	for i, g := range o.guards {
		if i >= len(resps) {
			break
		}
		kvs := resps[i].GetResponseRange().GetKvs()
		switch {
		case g.exists && len(kvs) == 0:
			return &Error{Err: ErrConflict, Key: g.display, Reason: "it no longer exists"}
		case !g.exists && (len(kvs) == 0 || kvs[0].ModRevision != g.version):
			return &Error{Err: ErrConflict, Key: g.display}
		}
	}
	return nil
}

// IfUnchanged makes a Delete conditional on another resource still being at
// version (as read before deciding to delete); otherwise the delete fails
// with ErrConflict naming that resource. For example, a Secret is deleted
// only while the Mesh that was checked not to use it is unchanged.
func (s *Store) IfUnchanged(t *resource.Type, mesh, name string, version int64) WriteOption {
	if !t.MeshScoped() {
		mesh = ""
	}
	return func(o *writeOpts) {
		o.guards = append(o.guards, guard{key: s.Key(t, mesh, name), display: resource.Key(t.Name, mesh, name), version: version})
	}
}

// WithLease attaches the written key to an etcd lease: it disappears when the
// lease expires. Insights use it so status is never stale past a TTL.
func WithLease(id clientv3.LeaseID) WriteOption { return func(o *writeOpts) { o.lease = id } }

// WithoutMeshCheck skips the check that the resource's mesh exists (for sync
// paths that apply a zone's resources in any order).
func WithoutMeshCheck() WriteOption { return func(o *writeOpts) { o.skipMeshChk = true } }

// WithCurrent gives an Update the value its writer believes is stored (as
// returned by its own last write), saving the read before the conditional
// write: one round trip instead of two. When the belief is stale, the Update
// falls back to reading the current value. Insight writers, which rewrite the
// same keys over and over, use it.
func WithCurrent(cur *resource.Resource) WriteOption {
	return func(o *writeOpts) { o.current = cur }
}

func (s *Store) meshKey(mesh string) string { return s.Key(resource.MeshType, "", mesh) }

// Create stores a new resource. It fails with ErrAlreadyExists when the name
// is taken and ErrMeshNotFound when the mesh does not exist.
func (s *Store) Create(ctx context.Context, r *resource.Resource, opts ...WriteOption) (_ *resource.Resource, err error) {
	t, err := checkType(r)
	if err != nil {
		return nil, err
	}
	ctx, end := s.span(ctx, "Create", t, r.Meta.GetMesh(), r.Meta.GetName())
	defer end(&err)
	o := applyWriteOpts(opts)
	out := r.Clone()
	now := resource.Timestamp(s.now())
	out.Meta.CreationTime, out.Meta.ModificationTime = now, now
	key := s.Key(t, r.Meta.GetMesh(), r.Meta.GetName())
	val, err := s.encode(ctx, key, out)
	if err != nil {
		return nil, err
	}
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)}
	checkMesh := t.MeshScoped() && !o.skipMeshChk
	if checkMesh {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.meshKey(r.Meta.GetMesh())), ">", 0))
	}
	cmps = append(cmps, o.guardCmps()...)
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(clientv3.OpPut(key, string(val), o.putOpts()...)).
		Else(append([]clientv3.Op{clientv3.OpGet(key, clientv3.WithCountOnly())}, o.guardReads()...)...).Commit()
	if err != nil {
		return nil, classify(parentCtx(ctx), err, r.Key(), true)
	}
	if !resp.Succeeded {
		if resp.Responses[0].GetResponseRange().Count > 0 {
			return nil, &Error{Err: ErrAlreadyExists, Key: r.Key()}
		}
		if err := o.failedGuard(resp.Responses[1:]); err != nil {
			return nil, err
		}
		return nil, &Error{Err: ErrMeshNotFound, Key: r.Key(), Mesh: r.Meta.GetMesh()}
	}
	out.Meta.Version = resp.Header.Revision
	return out, nil
}

func applyWriteOpts(opts []WriteOption) writeOpts {
	var o writeOpts
	for _, f := range opts {
		f(&o)
	}
	return o
}

func (o writeOpts) putOpts() []clientv3.OpOption {
	if o.lease != 0 {
		return []clientv3.OpOption{clientv3.WithLease(o.lease)}
	}
	return nil
}

// Update replaces an existing resource. When r.Meta.Version is set, the write
// succeeds only while the stored version is still that one (else
// ErrConflict); version 0 overwrites whatever is stored, a value that
// cannot be decoded included. Creation time is
// kept; origin is kept unless r sets one.
func (s *Store) Update(ctx context.Context, r *resource.Resource, opts ...WriteOption) (_ *resource.Resource, err error) {
	t, err := checkType(r)
	if err != nil {
		return nil, err
	}
	ctx, end := s.span(ctx, "Update", t, r.Meta.GetMesh(), r.Meta.GetName())
	defer end(&err)
	o := applyWriteOpts(opts)
	key := s.Key(t, r.Meta.GetMesh(), r.Meta.GetName())
	for attempt := 0; ; attempt++ {
		var cur *resource.Resource
		if attempt == 0 && o.current != nil && o.current.Meta != nil {
			cur, err = o.current, nil
		} else {
			cur, err = s.Get(ctx, t, r.Meta.GetMesh(), r.Meta.GetName())
		}
		if IsUndecodable(err) && r.Meta.GetVersion() == 0 {
			// An unconditional write replaces a value that cannot be read
			// (a resync repairs a broken copy); its times start afresh.
			cur, err = s.undecodableAsCurrent(ctx, key)
		}
		if err != nil {
			return nil, err
		}
		expect := r.Meta.GetVersion()
		if expect == 0 {
			expect = cur.Meta.GetVersion()
		} else if expect != cur.Meta.GetVersion() {
			return nil, &Error{Err: ErrConflict, Key: r.Key()}
		}
		out := r.Clone()
		out.Meta.CreationTime = cur.Meta.GetCreationTime()
		out.Meta.ModificationTime = resource.Timestamp(s.now())
		if out.Meta.GetOrigin() == "" {
			out.Meta.Origin = cur.Meta.GetOrigin()
		}
		val, err := s.encode(ctx, key, out)
		if err != nil {
			return nil, err
		}
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", expect)}
		if t.MeshScoped() && !o.skipMeshChk {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.meshKey(r.Meta.GetMesh())), ">", 0))
		}
		cmps = append(cmps, o.guardCmps()...)
		resp, err := s.cli.Txn(ctx).If(cmps...).Then(clientv3.OpPut(key, string(val), o.putOpts()...)).
			Else(append([]clientv3.Op{clientv3.OpGet(key, clientv3.WithCountOnly()), clientv3.OpGet(s.meshKey(r.Meta.GetMesh()), clientv3.WithCountOnly())},
				o.guardReads()...)...).Commit()
		if err != nil {
			return nil, classify(parentCtx(ctx), err, r.Key(), true)
		}
		if resp.Succeeded {
			out.Meta.Version = resp.Header.Revision
			return out, nil
		}
		switch {
		case resp.Responses[0].GetResponseRange().Count == 0:
			return nil, &Error{Err: ErrNotFound, Key: r.Key()}
		case t.MeshScoped() && !o.skipMeshChk && resp.Responses[1].GetResponseRange().Count == 0:
			return nil, &Error{Err: ErrMeshNotFound, Key: r.Key(), Mesh: r.Meta.GetMesh()}
		case o.failedGuard(resp.Responses[2:]) != nil:
			return nil, o.failedGuard(resp.Responses[2:])
		case r.Meta.GetVersion() != 0 || attempt >= 10:
			return nil, &Error{Err: ErrConflict, Key: r.Key()}
		}
		// An unconditional update raced another writer: read again.
	}
}

// undecodableAsCurrent stands in for the current state of a value that
// cannot be decoded: only its revision, for the conditional write.
func (s *Store) undecodableAsCurrent(ctx context.Context, key string) (*resource.Resource, error) {
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return nil, classify(parentCtx(ctx), err, s.displayKey(key), false)
	}
	if len(resp.Kvs) == 0 {
		return nil, &Error{Err: ErrNotFound, Key: s.displayKey(key)}
	}
	now := resource.Timestamp(s.now())
	s.log.Warn("overwriting a stored value that cannot be decoded", "key", s.displayKey(key), "revision", resp.Kvs[0].ModRevision)
	return &resource.Resource{Meta: &meshv1.Meta{Version: resp.Kvs[0].ModRevision, CreationTime: now}}, nil
}

// Upsert creates the resource or updates it (conditionally when
// r.Meta.Version is set) and reports whether it was created.
func (s *Store) Upsert(ctx context.Context, r *resource.Resource, opts ...WriteOption) (*resource.Resource, bool, error) {
	for attempt := 0; ; attempt++ {
		if r.Meta.GetVersion() == 0 {
			out, err := s.Create(ctx, r, opts...)
			if err == nil {
				return out, true, nil
			}
			if !IsAlreadyExists(err) {
				return nil, false, err
			}
		}
		out, err := s.Update(ctx, r, opts...)
		if IsNotFound(err) && r.Meta.GetVersion() == 0 && attempt < 10 {
			continue // deleted between our create and update: try again
		}
		if IsNotFound(err) && r.Meta.GetVersion() != 0 {
			// A versioned write to something that no longer exists is stale.
			return nil, false, &Error{Err: ErrConflict, Key: r.Key()}
		}
		return out, false, err
	}
}

// Delete removes a resource; when version is non-zero only while it is
// current. Deleting a Mesh deletes every resource in the mesh in the same
// transaction.
func (s *Store) Delete(ctx context.Context, t *resource.Type, mesh, name string, version int64, opts ...WriteOption) (err error) {
	ctx, end := s.span(ctx, "Delete", t, mesh, name)
	defer end(&err)
	if !t.MeshScoped() {
		mesh = ""
	}
	o := applyWriteOpts(opts)
	key := s.Key(t, mesh, name)
	cmp := clientv3.Compare(clientv3.CreateRevision(key), ">", 0)
	if version != 0 {
		cmp = clientv3.Compare(clientv3.ModRevision(key), "=", version)
	}
	cmps := append([]clientv3.Cmp{cmp}, o.guardCmps()...)
	elses := append([]clientv3.Op{clientv3.OpGet(key, clientv3.WithCountOnly())}, o.guardReads()...)
	ops := []clientv3.Op{clientv3.OpDelete(key)}
	if t == resource.MeshType {
		for _, mt := range resource.MeshScopedTypes() {
			ops = append(ops, clientv3.OpDelete(s.TypePrefix(mt, name), clientv3.WithPrefix()))
		}
	}
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Else(elses...).Commit()
	if err != nil {
		return classify(parentCtx(ctx), err, resource.Key(t.Name, mesh, name), true)
	}
	if !resp.Succeeded {
		if resp.Responses[0].GetResponseRange().Count == 0 {
			return &Error{Err: ErrNotFound, Key: resource.Key(t.Name, mesh, name)}
		}
		if err := o.failedGuard(resp.Responses[1:]); err != nil {
			return err
		}
		return &Error{Err: ErrConflict, Key: resource.Key(t.Name, mesh, name)}
	}
	return nil
}

// Revision returns the store's current revision.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithCountOnly())
	if err != nil {
		return 0, classify(parent, err, "revision", false)
	}
	return resp.Header.Revision, nil
}

type parentKey struct{}

// parentCtx returns the caller's context of a store call (before span
// added the store deadline), so classify can tell the caller giving up from
// etcd not answering.
func parentCtx(ctx context.Context) context.Context {
	if p, ok := ctx.Value(parentKey{}).(context.Context); ok {
		return p
	}
	return ctx
}
