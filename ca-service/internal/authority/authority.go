// Package authority is the heart of ca-service: it follows Meshes,
// Dataplanes, ZoneIngresses and Secrets in etcd, keeps every mesh's
// signing CA and trust bundle ready, creates builtin roots when a mesh
// enables them, signs workload certificates and streams bundle changes.
package authority

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weftmesh/weft/ca-service/internal/backend"
	"github.com/weftmesh/weft/ca-service/internal/issued"
	"github.com/weftmesh/weft/ca-service/internal/signer"
	"github.com/weftmesh/weft/pkg/ca"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/token"
	cav1 "github.com/weftmesh/weft/proto/gen/go/weft/ca/v1"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// ZoneIngressIdentity is the SPIFFE path of a ZoneIngress's certificate:
// spiffe://<mesh>/zone-ingress/<name>. It has two segments, so it can never
// equal a service identity (service names are DNS labels).
const ZoneIngressIdentity = "zone-ingress/"

// Config tunes a Manager.
type Config struct {
	Store   *store.Store
	Loader  *backend.Loader
	Tracker *issued.Tracker
	Log     *slog.Logger
	Metrics *Metrics
	Now     func() time.Time
	// Recheck is how often bundles are recomputed for expired records
	// (default 10s).
	Recheck time.Duration
	// Informers are the process's shared store informers; nil makes the
	// manager its own on Store.
	Informers *store.Informers
}

// Manager keeps every mesh's CA state.
type Manager struct {
	cfg Config
	log *slog.Logger
	now func() time.Time

	mu         sync.RWMutex
	meshes     map[string]*meshState
	dataplanes map[string][]string // "<mesh>/<name>" → services (resource.DataplaneServices)
	ingresses  map[string]bool

	dirty    chan string
	isSynced atomic.Bool
}

type meshState struct {
	name string
	gen  atomic.Uint64
	spec atomic.Pointer[meshv1.Mesh]
	view atomic.Pointer[view]

	mu      sync.Mutex // serialises rebuilds
	cas     map[string]*loaded
	changed chan struct{}
	deleted bool
}

type loaded struct {
	a   *ca.Authority
	err error
}

// view is an immutable snapshot of a mesh's CA state.
type view struct {
	gen      uint64
	enabled  string
	backend  *meshv1.CertificateAuthorityBackend
	signer   *ca.Authority
	err      error
	validity time.Duration
	bundle   *cav1.TrustBundle
	roots    map[string]*x509.Certificate
}

// New returns a manager; call Run.
func New(cfg Config) *Manager {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Recheck <= 0 {
		cfg.Recheck = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Informers == nil {
		cfg.Informers = store.NewInformers(cfg.Store)
	}
	m := &Manager{cfg: cfg, log: cfg.Log.With("component", "authority"), now: cfg.Now,
		meshes: map[string]*meshState{}, dataplanes: map[string][]string{}, ingresses: map[string]bool{},
		dirty: make(chan string, 1024)}
	if cfg.Metrics != nil {
		cfg.Metrics.bind(m)
	}
	return m
}

// Changed tells the manager that a mesh's inputs changed (the issued
// tracker calls it).
func (m *Manager) Changed(mesh string) {
	m.mu.RLock()
	ms := m.meshes[mesh]
	m.mu.RUnlock()
	if ms != nil {
		ms.gen.Add(1)
	}
	select {
	case m.dirty <- mesh:
	default:
		// The worker is behind; the recheck ticker catches up.
	}
}

// Ready reports whether the initial state of etcd has been read.
func (m *Manager) Ready() bool { return m.isSynced.Load() }

// Run watches etcd and rebuilds meshes until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	// A bundle computed before the issued-certificate records are read
	// would drop rotated-out roots that workloads still use.
	select {
	case <-m.cfg.Tracker.Synced():
	case <-ctx.Done():
		return nil
	}
	type watched struct {
		t     *resource.Type
		apply func(store.Event)
	}
	ws := []watched{
		{resource.MeshType, m.applyMesh},
		{resource.DataplaneType, m.applyDataplane},
		{resource.ZoneIngressType, m.applyIngress},
		{resource.SecretType, m.applySecret},
	}
	// Each informer's first batch starts with its full view (EventSync);
	// the manager is ready once every type has delivered one.
	var pending atomic.Int32
	pending.Store(int32(len(ws)))
	subs := make([]*store.Subscription, 0, len(ws))
	for _, w := range ws {
		var first sync.Once
		subs = append(subs, m.cfg.Informers.For(w.t).Subscribe(ctx, "ca authority", func(b store.Batch) error {
			for _, ev := range b.Events {
				w.apply(ev)
			}
			first.Do(func() {
				if pending.Add(-1) == 0 && ctx.Err() == nil {
					m.isSynced.Store(true)
				}
			})
			return nil
		}))
	}
	// Run returns only after its handlers have: nothing outlives it.
	defer func() {
		for _, s := range subs {
			<-s.Done()
		}
	}()
	tick := time.NewTicker(m.cfg.Recheck)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case mesh := <-m.dirty:
			m.rebuild(ctx, mesh)
		case <-tick.C:
			m.recheck(ctx)
		}
	}
}

// recheck rebuilds meshes whose set of live backends changed by expiry,
// and retries meshes whose CA failed to load.
func (m *Manager) recheck(ctx context.Context) {
	now := m.now()
	for _, ms := range m.all() {
		v := ms.view.Load()
		if v == nil || v.err != nil {
			ms.gen.Add(1)
			m.rebuild(ctx, ms.name)
			continue
		}
		if v.gen != ms.gen.Load() { // a change notification was dropped
			m.rebuild(ctx, ms.name)
			continue
		}
		live := m.cfg.Tracker.Backends(ms.name, now)
		for name := range v.roots {
			if _, ok := live[name]; !ok && name != v.enabled {
				ms.gen.Add(1)
				m.rebuild(ctx, ms.name)
				break
			}
		}
	}
}

func (m *Manager) all() []*meshState {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*meshState, 0, len(m.meshes))
	for _, ms := range m.meshes {
		out = append(out, ms)
	}
	return out
}

func (m *Manager) applyMesh(ev store.Event) {
	switch ev.Kind {
	case store.EventSync:
		seen := map[string]bool{}
		for _, r := range ev.Resources {
			seen[r.Meta.GetName()] = true
			m.putMesh(r)
		}
		m.mu.Lock()
		var gone []string
		for name := range m.meshes {
			if !seen[name] {
				gone = append(gone, name)
			}
		}
		m.mu.Unlock()
		for _, name := range gone {
			m.deleteMesh(name)
		}
	case store.EventPut:
		m.putMesh(ev.Resource)
	case store.EventDelete:
		m.deleteMesh(ev.Resource.Meta.GetName())
	}
}

func (m *Manager) putMesh(r *resource.Resource) {
	name := r.Meta.GetName()
	m.mu.Lock()
	ms := m.meshes[name]
	if ms == nil {
		ms = &meshState{name: name, cas: map[string]*loaded{}, changed: make(chan struct{})}
		m.meshes[name] = ms
	}
	m.mu.Unlock()
	ms.spec.Store(r.Spec.(*meshv1.Mesh))
	ms.mu.Lock()
	ms.cas = map[string]*loaded{} // backend settings may have changed
	ms.mu.Unlock()
	m.Changed(name)
}

func (m *Manager) deleteMesh(name string) {
	m.mu.Lock()
	ms := m.meshes[name]
	delete(m.meshes, name)
	m.mu.Unlock()
	if ms == nil {
		return
	}
	ms.mu.Lock()
	ms.deleted = true
	close(ms.changed)
	ms.changed = make(chan struct{})
	ms.mu.Unlock()
}

// Identities returns the SPIFFE IDs of a Dataplane: one per service of
// resource.DataplaneServices (the identity rule shared by every component).
func Identities(mesh string, dp *meshv1.Dataplane) []string {
	svcs := resource.DataplaneServices(dp)
	ids := make([]string, 0, len(svcs))
	for _, s := range svcs {
		ids = append(ids, signer.SPIFFEID(mesh, s))
	}
	return ids
}

func (m *Manager) applyDataplane(ev store.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch ev.Kind {
	case store.EventSync:
		m.dataplanes = map[string][]string{}
		for _, r := range ev.Resources {
			m.dataplanes[r.Meta.GetMesh()+"/"+r.Meta.GetName()] = resource.DataplaneServices(r.Spec.(*meshv1.Dataplane))
		}
	case store.EventPut:
		r := ev.Resource
		m.dataplanes[r.Meta.GetMesh()+"/"+r.Meta.GetName()] = resource.DataplaneServices(r.Spec.(*meshv1.Dataplane))
	case store.EventDelete:
		delete(m.dataplanes, ev.Resource.Meta.GetMesh()+"/"+ev.Resource.Meta.GetName())
	}
}

func (m *Manager) applyIngress(ev store.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch ev.Kind {
	case store.EventSync:
		m.ingresses = map[string]bool{}
		for _, r := range ev.Resources {
			m.ingresses[r.Meta.GetName()] = true
		}
	case store.EventPut:
		m.ingresses[ev.Resource.Meta.GetName()] = true
	case store.EventDelete:
		delete(m.ingresses, ev.Resource.Meta.GetName())
	}
}

func (m *Manager) applySecret(ev store.Event) {
	meshes := map[string]bool{}
	switch ev.Kind {
	case store.EventSync:
		for _, ms := range m.all() {
			meshes[ms.name] = true
		}
	default:
		meshes[ev.Resource.Meta.GetMesh()] = true
	}
	for name := range meshes {
		m.mu.RLock()
		ms := m.meshes[name]
		m.mu.RUnlock()
		if ms == nil {
			continue
		}
		ms.mu.Lock()
		ms.cas = map[string]*loaded{}
		ms.mu.Unlock()
		m.Changed(name)
	}
}

// current returns an up-to-date view of a mesh, rebuilding it when its
// inputs changed since the last one.
func (m *Manager) current(ctx context.Context, mesh string) (*meshState, *view, error) {
	select {
	case <-m.cfg.Tracker.Synced():
	default:
		select {
		case <-m.cfg.Tracker.Synced():
		case <-ctx.Done():
			return nil, nil, status.Error(codes.Unavailable, "ca-service is starting: issued-certificate records not read yet")
		}
	}
	m.mu.RLock()
	ms := m.meshes[mesh]
	m.mu.RUnlock()
	if ms == nil {
		// The watch may lag a Mesh created a moment ago.
		r, err := m.cfg.Store.Get(ctx, resource.MeshType, "", mesh)
		if store.IsNotFound(err) {
			return nil, nil, status.Errorf(codes.NotFound, "mesh %q not found", mesh)
		}
		if err != nil {
			return nil, nil, err
		}
		m.putMesh(r)
		m.mu.RLock()
		ms = m.meshes[mesh]
		m.mu.RUnlock()
		if ms == nil {
			return nil, nil, status.Errorf(codes.NotFound, "mesh %q not found", mesh)
		}
	}
	v := ms.view.Load()
	if v == nil || v.gen != ms.gen.Load() {
		v = m.rebuild(ctx, mesh)
		if v == nil {
			return nil, nil, status.Errorf(codes.NotFound, "mesh %q not found", mesh)
		}
	}
	return ms, v, nil
}

// rebuild computes a mesh's view: the enabled backend's CA (creating a
// builtin root if needed) and the trust bundle — the enabled root plus the
// root of every other backend some workload's current certificate still
// chains to.
func (m *Manager) rebuild(ctx context.Context, mesh string) *view {
	m.mu.RLock()
	ms := m.meshes[mesh]
	m.mu.RUnlock()
	if ms == nil {
		return nil
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	gen := ms.gen.Load()
	if v := ms.view.Load(); v != nil && v.gen == gen {
		return v
	}
	spec := ms.spec.Load()
	v := &view{gen: gen, enabled: spec.GetMtls().GetEnabledBackend(), roots: map[string]*x509.Certificate{}}
	backends := map[string]*meshv1.CertificateAuthorityBackend{}
	for _, b := range spec.GetMtls().GetBackends() {
		backends[b.GetName()] = b
	}
	load := func(name string) (*ca.Authority, error) {
		if l, ok := ms.cas[name]; ok && l.err == nil {
			return l.a, nil
		}
		b := backends[name]
		if b == nil {
			// Removed from the Mesh while workloads still hold its
			// certificates: a builtin root is still in its Secret.
			b = &meshv1.CertificateAuthorityBackend{Name: name, Type: ca.TypeBuiltin}
			lo := *m.cfg.Loader
			lo.Create = false
			a, err := lo.Builtin(ctx, mesh, b)
			ms.cas[name] = &loaded{a, err}
			return a, err
		}
		a, err := m.cfg.Loader.Load(ctx, mesh, b)
		ms.cas[name] = &loaded{a, err}
		return a, err
	}
	if v.enabled != "" {
		v.backend = backends[v.enabled]
		v.validity = signer.DefaultValidity
		if s := v.backend.GetDpCert().GetRotation().GetExpiration(); s != "" {
			if d, err := resource.ParseDuration(s); err == nil && d > 0 {
				v.validity = d
			}
		}
		a, err := load(v.enabled)
		if err != nil {
			v.err = err
			// Retried every recheck: log only when the problem changes.
			if prev := ms.view.Load(); prev == nil || prev.err == nil || prev.err.Error() != err.Error() {
				if errors.Is(err, backend.ErrNoRoot) {
					// Expected for a moment: the root is being created (or, in
					// a zone, has not arrived from global yet).
					m.log.Info("waiting for the builtin root of a mesh; signing in it waits too", "mesh", mesh, "backend", v.enabled)
				} else {
					m.log.Error("cannot load the enabled CA of a mesh; signing in it fails until this is fixed", "mesh", mesh, "backend", v.enabled, "error", err)
				}
			}
		} else {
			v.signer = a
			v.roots[v.enabled] = a.Cert
		}
	}
	for name := range m.cfg.Tracker.Backends(mesh, m.now()) {
		if name == v.enabled {
			continue
		}
		a, err := load(name)
		if err != nil {
			m.log.Warn("cannot load a rotated-out CA still in use; it is left out of the bundle", "mesh", mesh, "backend", name, "error", err)
			continue
		}
		v.roots[name] = a.Cert
	}
	v.bundle = bundleOf(mesh, v.roots)
	old := ms.view.Load()
	ms.view.Store(v)
	if old == nil || old.bundle.GetVersion() != v.bundle.GetVersion() {
		if old != nil {
			m.log.Info("trust bundle changed", "mesh", mesh, "backends", v.bundle.GetBackends(), "version", v.bundle.GetVersion())
		}
		close(ms.changed)
		ms.changed = make(chan struct{})
	}
	return v
}

func bundleOf(mesh string, roots map[string]*x509.Certificate) *cav1.TrustBundle {
	names := make([]string, 0, len(roots))
	for n := range roots {
		names = append(names, n)
	}
	sort.Strings(names)
	b := &cav1.TrustBundle{Mesh: mesh, Backends: names}
	h := sha256.New()
	for _, n := range names {
		b.Pem = append(b.Pem, pemCert(roots[n])...)
		h.Write(roots[n].Raw)
	}
	b.Version = hex.EncodeToString(h.Sum(nil)[:8])
	return b
}

// SignRequest is a validated signing request.
type SignRequest struct {
	Mesh      string
	Dataplane string
	CSR       []byte
	PublicKey []byte
	Validity  time.Duration
	// Token is the verified dataplane token of mesh/Dataplane: only
	// services it is bound to are certified. Nil only for callers that
	// checked nothing (tests of the manager itself).
	Token *token.Claims
}

// Sign issues a workload certificate.
func (m *Manager) Sign(ctx context.Context, r SignRequest) (*cav1.SignWorkloadCertificateResponse, error) {
	start := time.Now()
	if r.Mesh == "" {
		return nil, status.Error(codes.InvalidArgument, "mesh is required")
	}
	if r.Dataplane == "" {
		return nil, status.Error(codes.InvalidArgument, "dataplane is required")
	}
	nv := resource.NewValidator()
	resource.CheckName(nv.Field("mesh"), r.Mesh)
	resource.CheckName(nv.Field("dataplane"), r.Dataplane)
	if err := nv.Err(); err != nil {
		return nil, err
	}
	pub, err := signer.ParsePublicKey(r.CSR, r.PublicKey)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if r.Validity < 0 || (r.Validity > 0 && r.Validity < signer.MinValidity) {
		return nil, status.Errorf(codes.InvalidArgument, "validity must be at least %s", signer.MinValidity)
	}
	_, v, err := m.current(ctx, r.Mesh)
	if err != nil {
		return nil, err
	}
	if v.enabled == "" {
		return nil, status.Errorf(codes.FailedPrecondition, "mesh %q has mTLS disabled (mtls.enabledBackend is empty)", r.Mesh)
	}
	if v.signer == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "mesh %q: CA backend %q is not usable: %v", r.Mesh, v.enabled, v.err)
	}
	ids, typ, err := m.identity(ctx, r.Mesh, r.Dataplane)
	if err != nil {
		return nil, err
	}
	if typ == resource.DataplaneType.Name {
		// The identity binding: every service the certificate would name
		// must be one the workload's own token is bound to.
		if r.Token != nil {
			if err := r.Token.CheckServices(ids); err != nil {
				m.cfg.Log.Warn("refused to sign a certificate for services the dataplane token is not bound to", "dataplane", r.Mesh+"/"+r.Dataplane, "err", err)
				return nil, status.Error(codes.PermissionDenied, err.Error())
			}
		}
		svcs := ids
		ids = make([]string, 0, len(svcs))
		for _, s := range svcs {
			ids = append(ids, signer.SPIFFEID(r.Mesh, s))
		}
	}
	validity := v.validity
	if r.Validity > 0 && r.Validity < validity {
		validity = r.Validity
	}
	now := m.now()
	if now.After(v.signer.Cert.NotAfter) {
		return nil, status.Errorf(codes.FailedPrecondition, "mesh %q: CA backend %q expired at %s", r.Mesh, v.enabled, v.signer.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	leaf, err := signer.Sign(v.signer, signer.Request{SPIFFEIDs: ids, PublicKey: pub, Validity: validity, Now: now})
	if err != nil {
		return nil, fmt.Errorf("sign for %s/%s: %w", r.Mesh, r.Dataplane, err)
	}
	m.cfg.Tracker.Record(r.Mesh, typ, r.Dataplane, v.enabled, now, leaf.NotAfter)
	if mt := m.cfg.Metrics; mt != nil {
		mt.issued.WithLabelValues(r.Mesh, v.enabled).Inc()
		mt.latency.Observe(time.Since(start).Seconds())
	}
	chain := append(leaf.PEM, v.signer.ChainPEM...)
	return &cav1.SignWorkloadCertificateResponse{
		CertificateChainPem: chain,
		TrustBundlePem:      v.bundle.GetPem(),
		SpiffeIds:           ids,
		NotBefore:           timestamppb.New(leaf.NotBefore),
		NotAfter:            timestamppb.New(leaf.NotAfter),
		Backend:             v.enabled,
	}, nil
}

// identity finds the Dataplane (or ZoneIngress) a certificate is for.
func (m *Manager) identity(ctx context.Context, mesh, name string) ([]string, string, error) {
	m.mu.RLock()
	ids, ok := m.dataplanes[mesh+"/"+name]
	zi := m.ingresses[name]
	m.mu.RUnlock()
	if !ok && !zi {
		// Not in the cache yet (just created): read etcd.
		r, err := m.cfg.Store.Get(ctx, resource.DataplaneType, mesh, name)
		switch {
		case err == nil:
			ids, ok = resource.DataplaneServices(r.Spec.(*meshv1.Dataplane)), true
		case !store.IsNotFound(err):
			return nil, "", err
		default:
			if _, err := m.cfg.Store.Get(ctx, resource.ZoneIngressType, "", name); err == nil {
				zi = true
			} else if !store.IsNotFound(err) {
				return nil, "", err
			}
		}
	}
	switch {
	case ok:
		if len(ids) == 0 {
			return nil, "", status.Errorf(codes.FailedPrecondition, "dataplane %s/%s has no %s tag to certify", mesh, name, resource.ServiceTag)
		}
		return ids, resource.DataplaneType.Name, nil
	case zi:
		return []string{signer.SPIFFEID(mesh, ZoneIngressIdentity+name)}, resource.ZoneIngressType.Name, nil
	}
	return nil, "", status.Errorf(codes.NotFound, "no Dataplane %q in mesh %q (and no ZoneIngress of that name)", name, mesh)
}

func checkMesh(mesh string) error {
	if mesh == "" {
		return status.Error(codes.InvalidArgument, "mesh is required")
	}
	v := resource.NewValidator()
	resource.CheckName(v.Field("mesh"), mesh)
	return v.Err()
}

// Bundle returns a mesh's current trust bundle.
func (m *Manager) Bundle(ctx context.Context, mesh string) (*cav1.TrustBundle, error) {
	if err := checkMesh(mesh); err != nil {
		return nil, err
	}
	_, v, err := m.current(ctx, mesh)
	if err != nil {
		return nil, err
	}
	return v.bundle, nil
}

// WatchBundle sends the current bundle and then every change until ctx
// ends or the mesh is deleted.
func (m *Manager) WatchBundle(ctx context.Context, mesh string, send func(*cav1.TrustBundle) error) error {
	if err := checkMesh(mesh); err != nil {
		return err
	}
	last := ""
	for {
		ms, v, err := m.current(ctx, mesh)
		if err != nil {
			return err
		}
		ms.mu.Lock()
		ch, deleted := ms.changed, ms.deleted
		ms.mu.Unlock()
		if deleted {
			return status.Errorf(codes.NotFound, "mesh %q was deleted", mesh)
		}
		if v.bundle.GetVersion() != last {
			if err := send(v.bundle); err != nil {
				return err
			}
			last = v.bundle.GetVersion()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Roots lists every mesh's roots in its current bundle (for metrics).
func (m *Manager) Roots() map[string]map[string]*x509.Certificate {
	out := map[string]map[string]*x509.Certificate{}
	for _, ms := range m.all() {
		if v := ms.view.Load(); v != nil {
			out[ms.name] = v.roots
		}
	}
	return out
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
