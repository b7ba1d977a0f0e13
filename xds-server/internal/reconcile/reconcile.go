// Package reconcile keeps every connected proxy's snapshot in the xDS cache
// up to date. A store change recomputes only the proxies it affects (a
// dependency index: the services each proxy consumes, the tags of its
// inbounds); a proxy whose generated resources hash to the versions it
// already has gets nothing new, so unchanged resources are never resent.
package reconcile

import (
	"context"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/weftmesh/weft/pkg/policy"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/telemetry"
	"github.com/weftmesh/weft/pkg/token"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	"github.com/weftmesh/weft/xds-server/internal/generator"
	"github.com/weftmesh/weft/xds-server/internal/meshview"
	"github.com/weftmesh/weft/xds-server/internal/model"
)

// Certs is what the reconciler needs from the certificate manager.
type Certs interface {
	// Acquire starts keeping a certificate; token is the proxy's dataplane
	// token, ca-service's proof of the workload.
	// cause is the reconcile span that asked for it: the first signing
	// request continues that trace (renewals start their own).
	Acquire(mesh, name, token string, cause trace.SpanContext)
	Release(mesh, name string)
	Get(mesh, name string) *meshview.Identity
}

// Observer receives measurements (metrics and insights).
type Observer interface {
	Generated(nodeID, kind string, d time.Duration, err error)
	Pushed(nodeID, typeURL, version string)
	ConnectedChanged(kind string, delta int)
}

// Reconciler owns the cache snapshots.
type Reconciler struct {
	model  *model.Model
	cache  cachev3.SnapshotCache
	certs  Certs
	obs    Observer
	log    *slog.Logger
	tracer trace.Tracer

	mu      sync.Mutex
	proxies map[string]*proxy
	byMesh  map[string]map[string]*proxy // mesh → node id → proxy
	dirty   map[string]time.Time
	// causes holds, per dirty proxy, the traceparent of the first store
	// write that dirtied it: its xds.Reconcile is a child of that write.
	causes map[string]string
	wake   chan struct{}
	// snaps caches each mesh's generator snapshot by the model view it was
	// built from, so a mesh is built once per change, not once per proxy.
	snaps map[string]*meshSnapshot
	// built is each mesh's latest built snapshot: the next build reuses
	// what the change cannot have touched (generator.FromViewAfter).
	built map[string]*generator.Snapshot
	// genErrs hears when a proxy's generation error changes.
	genErrs func(mesh, name, msg string)
	// endpointPushes counts endpoint-only pushes (tests).
	endpointPushes atomic.Int64
}

type meshSnapshot struct {
	view *meshview.Mesh
	once sync.Once
	snap *generator.Snapshot
}

type pending struct {
	version string
	seen    time.Time
}

// nTypes is len(generator.TypeURLs).
const nTypes = 5

// typeVersions is a version per type of generator.TypeURLs.
type typeVersions [nTypes]string

// typeIndex is typeURL's index in generator.TypeURLs, -1 when this server
// does not serve it.
func typeIndex(typeURL string) int {
	return slices.Index(generator.TypeURLs, typeURL)
}

func init() {
	if len(generator.TypeURLs) != nTypes {
		panic("reconcile: nTypes is not len(generator.TypeURLs)")
	}
}

// Credential is what a proxy authenticated with: the tags its token
// requires, the token itself and its verified claims.
type Credential struct {
	Tags   map[string]string
	Token  string
	Claims *token.Claims
}

type proxy struct {
	id, mesh, name, kind string
	tags                 map[string]string
	cred                 *Credential
	bindingErr           string // last identity-binding refusal, logged once
	ingressDropped       string // an ingress's names left out as invalid, logged once
	streams              int
	certs                bool
	// requested is what a proxyless proxy's streams asked for (nil: every
	// service's resources; always nil for other kinds); requestedAll
	// notes the fallback was logged.
	requested    *generator.Requested
	requestedAll bool
	// pushedRequested is the requested of the snapshot last set.
	pushedRequested *generator.Requested
	// gen serialises the proxy's generations and SetSnapshot calls: the
	// worker's and Requested's, so a snapshot set after a request was
	// recorded always reflects it.
	gen sync.Mutex

	// Written by the worker under Reconciler.mu, indexed by the type's
	// position in generator.TypeURLs (fixed arrays: three maps per proxy
	// cost about 1 KB at 10k proxies' scale, these 0.4 KB in the struct).
	//
	// versions is what the cache holds per type (pushed: set at least
	// once); pending a pushed version not yet ACKed (version "": none).
	versions typeVersions
	pushed   bool
	pending  [nTypes]pending
	// held is what the proxy said it holds per type (the version of its
	// latest ACK, or of a new stream's first request): a push of that
	// version gets no response and so waits for no ACK.
	held typeVersions
	// deltaHolds are delta streams' first requests' held resources
	// waiting for the next snapshot (HoldsResources); nil: none.
	deltaHolds  *[nTypes]*deltaHold
	deps        map[string]bool // services consumed; "*" all
	inboundTags []map[string]string
	transparent bool
	lastErr     string
	// stream is the span of the proxy's latest stream start: generation
	// and push spans link to it.
	stream trace.SpanContext

	// What the cache snapshot was last generated from in full (written
	// under gen): a generation at a snapshot of the same epoch, for the
	// same Dataplane object, identity and credential, changes only the
	// ClusterLoadAssignments (generator.GenerateEndpoints). epoch 0: none.
	genEpoch    uint64
	genInbound  uint64 // the snapshot's InboundEpoch, for Proxy.Reuse
	genDP       *meshv1.Dataplane
	genIdentity *meshview.Identity
	genCred     *Credential
}

// New returns a reconciler of m's proxies; call Run (it consumes
// m.Changes).
func New(m *model.Model, cache cachev3.SnapshotCache, certs Certs, obs Observer, log *slog.Logger) *Reconciler {
	return &Reconciler{model: m, cache: cache, certs: certs, obs: obs, log: log,
		tracer:  otel.Tracer("github.com/weftmesh/weft/xds-server"),
		proxies: map[string]*proxy{}, byMesh: map[string]map[string]*proxy{}, dirty: map[string]time.Time{}, causes: map[string]string{}, wake: make(chan struct{}, 1),
		snaps: map[string]*meshSnapshot{}, built: map[string]*generator.Snapshot{}}
}

// SetTracerProvider makes the reconciler's spans with tp, the service's
// own provider; call it before Run.
func (r *Reconciler) SetTracerProvider(tp trace.TracerProvider) {
	r.tracer = tp.Tracer("github.com/weftmesh/weft/xds-server")
}

// OnGenerationError calls f (under the reconciler's lock: f must not call
// back) whenever the reason a proxy's configuration cannot be generated
// changes; "" means it was generated again. The proxy keeps the snapshot
// it had meanwhile. Call it before Run.
func (r *Reconciler) OnGenerationError(f func(mesh, name, msg string)) { r.genErrs = f }

// setErrLocked records p's generation error and reports a change.
func (r *Reconciler) setErrLocked(p *proxy, msg string) {
	if p.lastErr == msg {
		return
	}
	p.lastErr = msg
	if r.genErrs != nil {
		r.genErrs(p.mesh, p.name, msg)
	}
}

func (r *Reconciler) kick() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Reconciler) markLocked(id string, seen time.Time) {
	if t, ok := r.dirty[id]; !ok || seen.Before(t) {
		r.dirty[id] = seen
	}
}

// Connect registers a stream of a proxy; the first stream of a node
// triggers its generation.
//
// cred is the stream's credential; nil only in tests of generation alone
// (no binding check, no token forwarded).
func (r *Reconciler) Connect(nodeID, mesh, name, kind string, cred *Credential) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var requiredTags map[string]string
	if cred != nil {
		requiredTags = cred.Tags
	}
	p := r.proxies[nodeID]
	if p != nil && cred != nil {
		// A newer stream of the node (a reconnect with a fresh token):
		// its credential is the one to use from now on.
		p.cred, p.tags = cred, requiredTags
		r.markLocked(nodeID, time.Now())
		r.kick()
	}
	if p == nil {
		p = &proxy{id: nodeID, mesh: mesh, name: name, kind: kind, tags: requiredTags, cred: cred}
		if kind == generator.KindGRPC {
			p.requested = generator.NewRequested()
		}
		r.proxies[nodeID] = p
		if r.byMesh[mesh] == nil {
			r.byMesh[mesh] = map[string]*proxy{}
		}
		r.byMesh[mesh][nodeID] = p
		r.obs.ConnectedChanged(kind, 1)
		r.markLocked(nodeID, time.Now())
		r.kick()
	}
	p.streams++
}

// Disconnect unregisters a stream; the last one drops the node's snapshot.
// Link records the span of a proxy's stream start; the spans of later
// generations and pushes for the proxy link to it.
func (r *Reconciler) Link(nodeID string, sc trace.SpanContext) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.proxies[nodeID]; p != nil && sc.IsValid() {
		p.stream = sc
	}
}

func (r *Reconciler) Disconnect(nodeID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.proxies[nodeID]
	if p == nil {
		return
	}
	if p.streams--; p.streams > 0 {
		// The holds may be the closed stream's: another stream of the
		// proxy is not known to hold them.
		p.deltaHolds = nil
		return
	}
	delete(r.proxies, nodeID)
	delete(r.byMesh[p.mesh], nodeID)
	if len(r.byMesh[p.mesh]) == 0 {
		delete(r.byMesh, p.mesh)
	}
	delete(r.dirty, nodeID)
	delete(r.causes, nodeID)
	r.cache.ClearSnapshot(nodeID)
	r.obs.ConnectedChanged(p.kind, -1)
	if p.certs {
		r.certs.Release(p.mesh, p.name)
	}
}

// Acked records an ACK and returns how long the push took since the change
// that caused it was seen.
func (r *Reconciler) Acked(nodeID, typeURL, version string) (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.proxies[nodeID]
	if p == nil {
		return 0, false
	}
	i := typeIndex(typeURL)
	if i < 0 {
		return 0, false
	}
	p.held[i] = version
	pd := p.pending[i]
	if pd.version == "" || pd.version != version {
		return 0, false
	}
	p.pending[i] = pending{}
	return time.Since(pd.seen), true
}

// Holds records that a proxy's new stream already holds version of
// typeURL (its first request's version_info): a proxy reconnecting to this
// replica asks with the versions it has, and when this replica computes the
// same, go-control-plane sends nothing, so no ACK would ever clear the push.
func (r *Reconciler) Holds(nodeID, typeURL, version string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.proxies[nodeID]
	if p == nil || version == "" {
		return
	}
	i := typeIndex(typeURL)
	if i < 0 {
		return // bounded: only the types this server serves
	}
	p.held[i] = version
	if p.pending[i].version == version {
		p.pending[i] = pending{}
	}
}

// Pending is the number of types pushed to a proxy and not yet ACKed.
func (r *Reconciler) Pending(nodeID string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	if p := r.proxies[nodeID]; p != nil {
		for _, pd := range p.pending {
			if pd.version != "" {
				n++
			}
		}
	}
	return n
}

// CertUpdated marks a proxy whose certificate changed.
func (r *Reconciler) CertUpdated(mesh, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := generator.NodeID(mesh, name)
	if _, ok := r.proxies[id]; ok {
		r.markLocked(id, time.Now())
		r.kick()
	}
}

// OnChanges marks the proxies a batch of store changes affects.
func (r *Reconciler) OnChanges(changes []model.Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range changes {
		tp := c.Traceparent()
		if affectsIngresses(c) {
			for id, p := range r.byMesh[ingressMesh] {
				if c.Mesh != "" || c.Name == p.name {
					r.markLocked(id, c.Seen)
				}
			}
		}
		if c.Mesh == ingressMesh {
			continue
		}
		for id, p := range r.byMesh[c.Mesh] {
			if affects(c, p) {
				r.markLocked(id, c.Seen)
				if _, ok := r.causes[id]; !ok && tp != "" {
					r.causes[id] = tp
				}
			}
		}
	}
	if len(r.dirty) > 0 {
		r.kick()
	}
}

// ingressMesh is the byMesh key of zone ingresses: they serve every mesh
// of the zone, not one.
const ingressMesh = ""

// affectsIngresses reports whether a change may change the zone ingresses'
// configuration: local Dataplanes, Meshes and TrafficRoutes (which name the
// subsets) of any mesh, and this zone's ZoneIngresses (their listen
// address; Mesh "", Name the ingress).
func affectsIngresses(c model.Change) bool {
	if c.Mesh == "" {
		return c.Type == resource.ZoneIngressType
	}
	return c.Sync || c.Type == resource.MeshType || c.Type == resource.DataplaneType || c.Type == resource.TrafficRouteType
}

func affects(c model.Change, p *proxy) bool {
	if c.Sync || c.Type == resource.MeshType || !p.pushed {
		return true
	}
	switch c.Type {
	case resource.DataplaneType:
		if c.Name == p.name {
			return true
		}
		if p.deps["*"] {
			return true
		}
		for _, r := range []*resource.Resource{c.Old, c.New} {
			if r == nil {
				continue
			}
			for _, in := range r.Spec.(*meshv1.Dataplane).GetNetworking().GetInbound() {
				if p.deps[in.GetTags()[resource.ServiceTag]] {
					return true
				}
			}
		}
		return false
	case resource.TrafficPermissionType:
		for _, r := range []*resource.Resource{c.Old, c.New} {
			if r == nil {
				continue
			}
			tp := r.Spec.(*meshv1.TrafficPermission)
			for _, tags := range p.inboundTags {
				if resource.BestSelector(tp.GetDestinations(), tags).Matched() {
					return true
				}
			}
		}
		return false
	case resource.VirtualIPType:
		return p.transparent
	}
	// Every other policy type (TrafficRoute, Retry, …, ProxyTemplate) may
	// change any proxy of the mesh: as callers, as destinations, or as
	// selected dataplanes.
	return policy.IsPolicy(c.Type)
}

// Run consumes the model's changes and generates dirty proxies until ctx
// ends, once the model has synced.
func (r *Reconciler) Run(ctx context.Context) {
	var consumer sync.WaitGroup
	defer consumer.Wait()
	consumer.Add(1)
	go func() {
		defer consumer.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case cs, ok := <-r.model.Changes():
				if !ok {
					return
				}
				r.OnChanges(cs)
			}
		}
	}()
	select {
	case <-ctx.Done():
		return
	case <-r.model.Synced():
	}
	// GOMAXPROCS workers for the reconciler's life, not a goroutine per
	// dirty proxy: generating a proxy grows a fresh goroutine's stack
	// (protobuf marshalling is deep), and in a connect storm, where
	// batches are small and frequent, every first generation paid the
	// growth and the copy again (≈ 2% of the xds-server's connect CPU).
	jobs := make(chan reconcileJob)
	var workers sync.WaitGroup
	defer workers.Wait()
	defer close(jobs)
	for range runtime.GOMAXPROCS(0) {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for j := range jobs {
				r.reconcile(ctx, j.id, j.seen, j.cause)
				j.wg.Done()
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		r.mu.Lock()
		batch := r.dirty
		r.dirty = map[string]time.Time{}
		// Take the causes only when there are any (no allocation per
		// batch otherwise); never keep a reference to r.causes itself,
		// which Disconnect and OnChanges modify under r.mu.
		var causes map[string]string
		if len(r.causes) > 0 {
			causes, r.causes = r.causes, map[string]string{}
		}
		r.mu.Unlock()
		var wg sync.WaitGroup
		wg.Add(len(batch))
		for id, seen := range batch {
			jobs <- reconcileJob{id: id, seen: seen, cause: causes[id], wg: &wg}
		}
		wg.Wait()
	}
}

// reconcileJob is one dirty proxy of a batch, for Run's workers.
type reconcileJob struct {
	id, cause string
	seen      time.Time
	wg        *sync.WaitGroup
}

// Requested records the names a stream of a proxyless proxy asked for
// (an SotW request of typeURL). A name it had not asked for before
// regenerates the proxy at once, on the caller's goroutine: the callback
// runs before go-control-plane answers the request, and in ADS mode it
// drops a named request the snapshot cannot fully answer, so the snapshot
// must already hold the new name (when the mesh has it). ACKs, which
// repeat known names, cost a lookup. Other kinds are ignored.
func (r *Reconciler) Requested(ctx context.Context, nodeID, typeURL string, names []string) {
	r.updateRequested(ctx, nodeID, func(p *proxy) (*generator.Requested, bool) {
		return p.requested.With(typeURL, names)
	})
}

// RequestedAll makes a proxyless proxy get every service's resources: its
// names are not tracked (a delta stream).
func (r *Reconciler) RequestedAll(ctx context.Context, nodeID string) {
	r.updateRequested(ctx, nodeID, func(p *proxy) (*generator.Requested, bool) {
		return nil, p.requested != nil
	})
}

// updateRequested applies next to a proxyless proxy's requested names
// (under its generation lock, then r.mu) and regenerates it at once when
// they changed. Other kinds are ignored.
func (r *Reconciler) updateRequested(ctx context.Context, nodeID string, next func(*proxy) (*generator.Requested, bool)) {
	r.mu.Lock()
	p := r.proxies[nodeID]
	r.mu.Unlock()
	if p == nil || p.kind != generator.KindGRPC {
		return
	}
	p.gen.Lock()
	defer p.gen.Unlock()
	r.mu.Lock()
	q, changed := next(p)
	if changed {
		r.setRequestedLocked(p, q)
	}
	r.mu.Unlock()
	if changed {
		r.regenerateNow(ctx, p)
	}
}

func (r *Reconciler) setRequestedLocked(p *proxy, next *generator.Requested) {
	if next == nil && !p.requestedAll {
		p.requestedAll = true
		r.log.Info("proxyless proxy gets every service's configuration: its names are not tracked (a wildcard or delta subscription, or more than the names limit)",
			"node", p.id, "names", p.requested.Len(), "limit", generator.MaxRequestedNames)
	}
	p.requested = next
}

// regenerateNow generates p on the caller's goroutine (p.gen held), once
// the model has synced; before that the worker's first generation will
// see the names.
func (r *Reconciler) regenerateNow(ctx context.Context, p *proxy) {
	select {
	case <-r.model.Synced():
	default:
		return
	}
	r.reconcileHeld(ctx, p, time.Now(), "")
}

// reconcile regenerates one proxy; cause is the traceparent of the store
// write that dirtied it ("" when none was traced).
func (r *Reconciler) reconcile(ctx context.Context, id string, seen time.Time, cause string) {
	r.mu.Lock()
	p := r.proxies[id]
	r.mu.Unlock()
	if p == nil {
		return
	}
	p.gen.Lock()
	defer p.gen.Unlock()
	r.reconcileHeld(ctx, p, seen, cause)
}

// reconcileHeld is reconcile with p.gen held.
func (r *Reconciler) reconcileHeld(ctx context.Context, p *proxy, seen time.Time, cause string) {
	id := p.id
	r.mu.Lock()
	if r.proxies[id] != p {
		r.mu.Unlock()
		return // disconnected (and maybe connected again as another proxy)
	}
	mesh, name, kind, tags, stream, cred, requested := p.mesh, p.name, p.kind, p.tags, p.stream, p.cred, p.requested
	r.mu.Unlock()
	ingress := kind == generator.KindIngress && mesh == ingressMesh

	// One short span per reconcile of a proxy (generation and push as
	// children), linked to the proxy's stream: a child of the store write
	// that caused it (so a REST PUT and the proxy push are one trace), or
	// a new root when the cause was not traced (a connect, a cert renewal).
	opts := []trace.SpanStartOption{trace.WithAttributes(attribute.String("weft.node", id), attribute.String("weft.proxy_kind", kind))}
	if stream.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: stream}))
	}
	if sc := telemetry.SpanFromTraceparent(cause); sc.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
	} else {
		opts = append(opts, trace.WithNewRoot())
	}
	ctx, rspan := r.tracer.Start(ctx, "xds.Reconcile", opts...)
	defer rspan.End()

	if ingress {
		r.reconcileIngress(ctx, p, id, name, seen)
		return
	}
	snap := r.snapshot(mesh)
	mtls, _ := snap.MTLS()
	dp := snap.Dataplanes[name]
	bound := true
	if mtls && dp != nil && cred != nil && cred.Claims != nil {
		// Never ask for a certificate naming a service the proxy's token
		// is not bound to (ca-service would refuse it too).
		err := cred.Claims.CheckServices(resource.DataplaneServices(dp))
		bound = err == nil
		r.noteBinding(id, err)
	}
	r.syncCerts(id, mtls && dp != nil && bound, cred, rspan.SpanContext())
	var identity *meshview.Identity
	if mtls {
		identity = r.certs.Get(mesh, name)
	}
	_, span := r.tracer.Start(ctx, "xds.Generate", trace.WithAttributes(
		attribute.String("weft.node", id), attribute.String("weft.proxy_kind", kind)))
	start := time.Now()
	gp := &generator.Proxy{Mesh: mesh, Name: name, Kind: kind, Dataplane: dp, Identity: identity, RequiredTags: tags, Requested: requested}
	// An endpoint-only change: build the ClusterLoadAssignments alone and
	// keep the other types of the snapshot in the cache (they hold the
	// wire forms already, so no second copy per proxy).
	var (
		res  generator.Resources
		err  error
		base *cachev3.Snapshot
	)
	same := p.genDP == dp && dp != nil && p.genIdentity == identity && p.genCred == cred && (kind == generator.KindEnvoy || kind == "")
	if same && p.genEpoch != 0 && p.genEpoch == snap.Epoch() {
		res, base = r.endpointsOnly(snap, gp, id)
	}
	if base == nil {
		if same && p.genInbound != 0 && p.genInbound == snap.InboundEpoch() {
			// The inbound listeners and clusters are as pushed: take
			// them from the cache snapshot (wire forms, not built again).
			gp.Reuse = r.pushedResources(id)
		}
		res, err = generator.Generate(snap, gp)
	}
	var versions map[string]string
	if err == nil && kind == generator.KindGRPC && requested != nil {
		// A proxyless proxy's versions do not depend on what it requested
		// (generator.Snapshot.VersionsFor).
		versions, err = snap.VersionsFor(gp, res)
	}
	r.obs.Generated(id, kind, time.Since(start), err)
	if err != nil {
		span.RecordError(err)
	}
	span.End()

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proxies[id] != p {
		return // disconnected meanwhile
	}
	p.deps, p.inboundTags, p.transparent = dependencies(dp, kind)
	if err != nil {
		p.genEpoch, p.genInbound = 0, 0
		if p.lastErr != err.Error() {
			r.log.Info("no configuration for proxy", "node", id, "err", err)
		}
		r.setErrLocked(p, err.Error())
		return
	}
	// Each resource is serialized once, for its version and for every
	// response that carries it (generator.Wire).
	wire, wireVersions := snap.Wire(res)
	// Versions that hash the resources themselves (all but a proxyless
	// proxy's VersionsFor) let proxies share the cache's resource groups.
	byContent := versions == nil
	if byContent {
		versions = wireVersions
	}
	if base != nil {
		for _, typ := range generator.TypeURLs {
			if typ != resourcev3.EndpointType {
				versions[typ] = base.GetVersion(typ)
			}
		}
	}
	// A newly requested name leaves the versions as they were: its
	// resource must reach the cache all the same.
	changed := requested != p.pushedRequested
	for i, typ := range generator.TypeURLs {
		if cacheVersion(versions[typ]) != p.versions[i] {
			changed = true
		}
	}
	if !changed {
		r.setErrLocked(p, "")
		p.genEpoch, p.genInbound, p.genDP, p.genIdentity, p.genCred = snap.Epoch(), snap.InboundEpoch(), dp, identity, cred
		return
	}
	if kind != generator.KindGRPC && base == nil {
		// An endpoint-only push keeps the names of the pushed
		// ClusterLoadAssignments and every reference to them, so it
		// stays consistent (endpointsOnly checks the names).
		// Consistent does not follow api_listener route names, so proxyless
		// snapshots skip it (their references are checked by construction).
		// It reads the resources' fields: the originals, not the wire forms.
		if err := snap.Consistent(res); err != nil {
			r.log.Error("generated an inconsistent snapshot, keeping the previous one", "node", id, "err", err)
			r.setErrLocked(p, err.Error())
			p.genEpoch, p.genInbound = 0, 0
			return
		}
	}
	var cs *cachev3.Snapshot
	switch {
	case base != nil:
		// The other types' groups (version and items) are shared with the
		// previous cache snapshot, which the cache drops now; the
		// endpoints' group with every proxy of this mesh snapshot that
		// gets the same version (SharedGroup).
		cs = &cachev3.Snapshot{Resources: base.Resources}
		eds := cachev3.GetResponseType(resourcev3.EndpointType)
		cs.Resources[eds] = snap.SharedGroup(resourcev3.EndpointType, cacheVersion(versions[resourcev3.EndpointType]), wire[resourcev3.EndpointType])
		r.endpointPushes.Add(1)
	case byContent:
		cs = snap.SharedCacheSnapshot(wire, versions)
	default:
		cs = wire.CacheSnapshot(versions)
	}
	_, pspan := r.tracer.Start(ctx, "xds.Push", trace.WithAttributes(attribute.String("weft.node", id)))
	if err := r.cache.SetSnapshot(ctx, id, cs); err != nil {
		pspan.RecordError(err)
		pspan.End()
		r.log.Error("set snapshot", "node", id, "err", err)
		p.genEpoch, p.genInbound = 0, 0
		return
	}
	pspan.End()
	p.genEpoch, p.genInbound, p.genDP, p.genIdentity, p.genCred = snap.Epoch(), snap.InboundEpoch(), dp, identity, cred
	r.setErrLocked(p, "")
	p.pushedRequested = requested
	r.resolveHoldsLocked(p, cs)
	for i, typ := range generator.TypeURLs {
		v := cs.GetVersion(typ)
		if v != p.versions[i] {
			r.obs.Pushed(id, typ, v)
			if p.held[i] != v {
				p.pending[i] = pending{version: v, seen: seen}
			}
		}
		p.versions[i] = v
	}
	p.pushed = true
}

// cacheVersion is a type's version as CacheSnapshot stores it.
func cacheVersion(v string) string {
	if v == "" {
		return "empty"
	}
	return v
}

// pushedResources looks resources up in a node's cache snapshot (nil: it
// has none).
func (r *Reconciler) pushedResources(id string) func(typeURL, name string) types.Resource {
	rs, err := r.cache.GetSnapshot(id)
	if err != nil {
		return nil
	}
	cs, ok := rs.(*cachev3.Snapshot)
	if !ok {
		return nil
	}
	return func(typeURL, name string) types.Resource {
		typ := cachev3.GetResponseType(typeURL)
		if typ >= types.UnknownType {
			return nil
		}
		return cs.Resources[typ].Items[name].Resource
	}
}

// endpointsOnly generates a sidecar's ClusterLoadAssignments alone, for a
// snapshot whose epoch is the one its cache snapshot was generated at
// (caller's check), and returns them with that cache snapshot. A nil
// snapshot means: generate in full (no cache snapshot, an error, or
// ClusterLoadAssignments named otherwise than those pushed — Generate then
// reports the error or decides).
func (r *Reconciler) endpointsOnly(snap *generator.Snapshot, gp *generator.Proxy, id string) (generator.Resources, *cachev3.Snapshot) {
	rs, err := r.cache.GetSnapshot(id)
	if err != nil {
		return nil, nil
	}
	base, ok := rs.(*cachev3.Snapshot)
	if !ok {
		return nil, nil
	}
	eds, err := generator.GenerateEndpoints(snap, gp)
	if err != nil {
		return nil, nil
	}
	pushed := base.Resources[cachev3.GetResponseType(resourcev3.EndpointType)].Items
	if len(pushed) != len(eds) {
		return nil, nil
	}
	for _, cla := range eds {
		if _, ok := pushed[cachev3.GetResourceName(cla)]; !ok {
			return nil, nil
		}
	}
	res := generator.Resources{}
	if len(eds) > 0 {
		res[resourcev3.EndpointType] = eds
	}
	return res, base
}

// DefaultIngressAddress and DefaultIngressPort are the ingress listener's
// address until this zone's ZoneIngress of the ingress's name says
// otherwise (its networking address and port).
const (
	DefaultIngressAddress = "0.0.0.0"
	DefaultIngressPort    = 10001
)

// reconcileIngress generates a zone ingress's configuration: every mesh
// of the zone (generator.GenerateIngress). An ingress never has a
// Dataplane, a certificate or SDS secrets.
func (r *Reconciler) reconcileIngress(ctx context.Context, p *proxy, id, name string, seen time.Time) {
	_, span := r.tracer.Start(ctx, "xds.Generate", trace.WithAttributes(
		attribute.String("weft.node", id), attribute.String("weft.proxy_kind", generator.KindIngress)))
	start := time.Now()
	addr, port := DefaultIngressAddress, uint32(DefaultIngressPort)
	if zi := r.model.OwnIngress(name); zi != nil {
		nw := zi.Spec.(*meshv1.ZoneIngress).GetNetworking()
		if nw.GetAddress() != "" && nw.GetPort() != 0 {
			addr, port = nw.GetAddress(), nw.GetPort()
		}
	}
	var snaps []*generator.Snapshot
	for _, mesh := range r.model.Meshes() {
		snaps = append(snaps, r.snapshot(mesh))
	}
	res, dropped, err := generator.GenerateIngressReport(snaps, addr, port)
	r.obs.Generated(id, generator.KindIngress, time.Since(start), err)
	if err != nil {
		span.RecordError(err)
	}
	span.End()

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proxies[id] != p {
		return
	}
	if err != nil {
		if p.lastErr != err.Error() {
			r.log.Info("no configuration for ingress", "node", id, "err", err)
		}
		p.lastErr = err.Error()
		return
	}
	p.lastErr = ""
	if msg := strings.Join(dropped, "; "); msg != p.ingressDropped {
		if msg != "" {
			r.log.Warn("ingress configuration leaves out names whose configuration is invalid", "node", id, "dropped", msg)
		}
		p.ingressDropped = msg
	}
	r.pushLocked(ctx, p, id, res, seen)
}

// pushLocked sets a proxy's snapshot when its versions changed.
func (r *Reconciler) pushLocked(ctx context.Context, p *proxy, id string, res generator.Resources, seen time.Time) {
	var none *generator.Snapshot // an ingress's resources are its own
	wire, versions := none.Wire(res)
	changed := false
	for i, typ := range generator.TypeURLs {
		if versions[typ] != p.versions[i] {
			changed = true
		}
	}
	if !changed {
		return
	}
	if err := none.Consistent(res); err != nil {
		r.log.Error("generated an inconsistent snapshot, keeping the previous one", "node", id, "err", err)
		p.lastErr = err.Error()
		return
	}
	cs := wire.CacheSnapshot(versions)
	_, pspan := r.tracer.Start(ctx, "xds.Push", trace.WithAttributes(attribute.String("weft.node", id)))
	if err := r.cache.SetSnapshot(ctx, id, cs); err != nil {
		pspan.RecordError(err)
		pspan.End()
		r.log.Error("set snapshot", "node", id, "err", err)
		return
	}
	pspan.End()
	r.resolveHoldsLocked(p, cs)
	for i, typ := range generator.TypeURLs {
		v := cs.GetVersion(typ)
		if v != p.versions[i] {
			r.obs.Pushed(id, typ, v)
			if p.held[i] != v {
				p.pending[i] = pending{version: v, seen: seen}
			}
		}
		p.versions[i] = v
	}
	p.pushed = true
}

// snapshot returns the mesh's generator snapshot, built at most once per
// model view (that is, per change of the mesh). It never returns nil.
func (r *Reconciler) snapshot(mesh string) *generator.Snapshot {
	v := r.model.View(mesh)
	r.mu.Lock()
	e := r.snaps[mesh]
	if v == nil {
		delete(r.snaps, mesh)
		delete(r.built, mesh)
		e = &meshSnapshot{}
	} else if e == nil || e.view != v {
		e = &meshSnapshot{view: v}
		r.snaps[mesh] = e
	}
	r.mu.Unlock()
	e.once.Do(func() {
		if v == nil {
			e.snap = generator.FromView(mesh, nil)
			return
		}
		r.mu.Lock()
		prev := r.built[mesh]
		r.mu.Unlock()
		// Any earlier snapshot of the mesh is a correct base: the reuse
		// compares what it was built from with v.
		e.snap = generator.FromViewAfter(mesh, v, prev)
		r.mu.Lock()
		if r.snaps[mesh] == e {
			r.built[mesh] = e.snap
		}
		r.mu.Unlock()
	})
	return e.snap
}

// noteBinding logs a binding refusal once per distinct reason.
func (r *Reconciler) noteBinding(id string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.proxies[id]
	if p == nil {
		return
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg != "" && msg != p.bindingErr {
		r.log.Warn("not requesting a certificate: the Dataplane claims a service its token is not bound to; issue a token bound to it or fix the Dataplane", "node", id, "err", msg)
	}
	p.bindingErr = msg
}

func (r *Reconciler) syncCerts(id string, want bool, cred *Credential, cause trace.SpanContext) {
	r.mu.Lock()
	p := r.proxies[id]
	if p == nil || p.certs == want {
		r.mu.Unlock()
		return
	}
	p.certs = want
	mesh, name := p.mesh, p.name
	r.mu.Unlock()
	if want {
		tok := ""
		if cred != nil {
			tok = cred.Token
		}
		r.certs.Acquire(mesh, name, tok, cause)
	} else {
		r.certs.Release(mesh, name)
	}
}

func dependencies(dp *meshv1.Dataplane, kind string) (map[string]bool, []map[string]string, bool) {
	deps := map[string]bool{}
	var tags []map[string]string
	if dp == nil {
		return deps, nil, false
	}
	if kind == generator.KindGRPC {
		deps["*"] = true
	}
	for _, in := range dp.GetNetworking().GetInbound() {
		tags = append(tags, in.GetTags())
	}
	for _, ob := range dp.GetNetworking().GetOutbound() {
		deps[ob.GetTags()[resource.ServiceTag]] = true
	}
	transparent := dp.GetNetworking().GetTransparentProxying() != nil
	if transparent {
		// VIP listeners cover every service with a VIP.
		deps["*"] = true
	}
	return deps, tags, transparent
}

// Status is a proxy's state for insights and debugging.
type Status struct {
	Versions map[string]string
	LastErr  string
}

// ProxyStatus returns a connected proxy's state.
func (r *Reconciler) ProxyStatus(nodeID string) (Status, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.proxies[nodeID]
	if p == nil {
		return Status{}, false
	}
	v := map[string]string{}
	if p.pushed {
		for i, typ := range generator.TypeURLs {
			v[typ] = p.versions[i]
		}
	}
	return Status{Versions: v, LastErr: p.lastErr}, true
}
