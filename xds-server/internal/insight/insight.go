// Package insight writes a DataplaneInsight for every proxy connected to
// this replica: replica id, connect time, last ACK/NACK per type, and the
// certificate's expiry. Insights live under this replica's etcd lease, so
// when the replica dies its proxies show offline within the lease TTL.
package insight

import (
	"context"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// CertInfo is a dataplane's certificate state.
type CertInfo struct {
	NotAfter      time.Time
	Issued        time.Time
	Regenerations uint64
	Backend       string
}

// Recorder collects stream state and flushes it to the store.
type Recorder struct {
	st       *store.Store
	instance string
	ttl      time.Duration
	interval time.Duration
	log      *slog.Logger
	certInfo func(mesh, name string) (CertInfo, bool)

	mu      sync.Mutex
	streams map[string]*stream
	byDP    map[string]map[string]*stream // "mesh/name" → stream id → stream
	dirty   map[string]bool               // "mesh/name"
	lease   clientv3.LeaseID
	kick    chan struct{}

	// genErr is, per "mesh/name", why the latest generation failed and
	// since when; every stream of the dataplane reports it.
	genErr map[string]genError

	// written is the metadata of what this replica last stored per
	// "mesh/name" (no spec), so a rewrite is one conditional put
	// (store.WithCurrent), not a create-conflict-read-update. Only the
	// flush loop touches it.
	written map[string]*resource.Resource
}

type genError struct {
	msg   string
	since *timestamppb.Timestamp
}

// MaxGenerationError bounds the generation error kept in an insight.
const MaxGenerationError = 4096

type stream struct {
	mesh, name string
	sub        *meshv1.DiscoverySubscription
}

// New returns a recorder for replica instance; ttl is the lease TTL.
func New(st *store.Store, instance string, ttl time.Duration, log *slog.Logger, certInfo func(mesh, name string) (CertInfo, bool)) *Recorder {
	return &Recorder{st: st, instance: instance, ttl: ttl, interval: 200 * time.Millisecond, log: log, certInfo: certInfo,
		streams: map[string]*stream{}, byDP: map[string]map[string]*stream{}, dirty: map[string]bool{}, genErr: map[string]genError{},
		kick: make(chan struct{}, 1), written: map[string]*resource.Resource{}}
}

func dpKey(mesh, name string) string { return mesh + "/" + name }

func (r *Recorder) markLocked(mesh, name string) {
	r.dirty[dpKey(mesh, name)] = true
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Opened records a new stream.
func (r *Recorder) Opened(id, mesh, name, kind string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &stream{mesh: mesh, name: name, sub: &meshv1.DiscoverySubscription{
		Id: r.instance + "/" + id, ControlPlaneInstanceId: r.instance, ConnectTime: timestamppb.Now(),
		ProxyKind: kind, Types: map[string]*meshv1.SyncTypeStatus{},
	}}
	r.streams[id] = s
	k := dpKey(mesh, name)
	if r.byDP[k] == nil {
		r.byDP[k] = map[string]*stream{}
	}
	r.byDP[k][id] = s
	r.markLocked(mesh, name)
}

// Closed forgets a stream.
func (r *Recorder) Closed(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.streams[id]
	if s == nil {
		return
	}
	delete(r.streams, id)
	k := dpKey(s.mesh, s.name)
	delete(r.byDP[k], id)
	if len(r.byDP[k]) == 0 {
		delete(r.byDP, k)
		delete(r.genErr, k) // a new stream generates afresh
	}
	r.markLocked(s.mesh, s.name)
}

func (r *Recorder) typeStatus(id, typeURL string) (*stream, *meshv1.SyncTypeStatus) {
	s := r.streams[id]
	if s == nil {
		return nil, nil
	}
	ts := s.sub.Types[typeURL]
	if ts == nil {
		ts = &meshv1.SyncTypeStatus{}
		s.sub.Types[typeURL] = ts
	}
	return s, ts
}

// Sent records a response.
func (r *Recorder) Sent(id, typeURL, version string, resources int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ts := r.typeStatus(id, typeURL)
	if s == nil {
		return
	}
	ts.ResponsesSent++
	ts.Resources = uint64(resources)
	ts.LastUpdateTime = timestamppb.Now()
	r.markLocked(s.mesh, s.name)
}

// Acked records an ACK of version.
func (r *Recorder) Acked(id, typeURL, version string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ts := r.typeStatus(id, typeURL)
	if s == nil {
		return
	}
	ts.Acks++
	ts.LastVersion = version
	ts.LastError = ""
	ts.LastUpdateTime = timestamppb.Now()
	r.markLocked(s.mesh, s.name)
}

// Holds records the version a new stream's first request says the proxy
// already has (it reconnected with its configuration): its last version
// until a response and an ACK say otherwise. No ACK is counted.
func (r *Recorder) Holds(id, typeURL, version string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ts := r.typeStatus(id, typeURL)
	if s == nil || ts.LastVersion == version {
		return
	}
	ts.LastVersion = version
	ts.LastUpdateTime = timestamppb.Now()
	r.markLocked(s.mesh, s.name)
}

// Nacked records a NACK with the proxy's error detail.
func (r *Recorder) Nacked(id, typeURL, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ts := r.typeStatus(id, typeURL)
	if s == nil {
		return
	}
	ts.Nacks++
	ts.LastError = detail
	ts.LastUpdateTime = timestamppb.Now()
	r.markLocked(s.mesh, s.name)
}

// GenerationFailed records why the latest generation of a dataplane's
// configuration failed ("" when it succeeded again): the proxy keeps its
// previous configuration meanwhile. Only a change of message is written.
func (r *Recorder) GenerationFailed(mesh, name, msg string) {
	if len(msg) > MaxGenerationError {
		// Cut on a rune boundary: a proto string must be valid UTF-8.
		msg = strings.ToValidUTF8(msg[:MaxGenerationError], "")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	k := dpKey(mesh, name)
	if r.genErr[k].msg == msg {
		return
	}
	if msg == "" {
		delete(r.genErr, k)
	} else {
		r.genErr[k] = genError{msg: msg, since: timestamppb.Now()}
	}
	// Before the stream is recorded (the reconciler may be first) there is
	// nothing to write yet: Opened writes it with the error.
	if len(r.byDP[k]) > 0 {
		r.markLocked(mesh, name)
	}
}

// CertChanged marks a dataplane whose certificate changed.
func (r *Recorder) CertChanged(mesh, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.markLocked(mesh, name)
}

// Run keeps the lease alive and flushes changes until ctx ends; on the way
// out it removes this replica's insights.
func (r *Recorder) Run(ctx context.Context) error {
	cli := r.st.Client()
	for ctx.Err() == nil {
		ttl := int64(r.ttl / time.Second)
		if ttl < 1 {
			ttl = 1
		}
		lease, err := cli.Grant(ctx, ttl)
		if err != nil {
			r.log.Warn("insight lease", "err", err)
			if !sleep(ctx, time.Second) {
				break
			}
			continue
		}
		kactx, cancel := context.WithCancel(ctx)
		ka, err := cli.KeepAlive(kactx, lease.ID)
		if err != nil {
			cancel()
			continue
		}
		r.mu.Lock()
		r.lease = lease.ID
		for _, s := range r.streams {
			r.dirty[dpKey(s.mesh, s.name)] = true // rewrite under the new lease
		}
		r.mu.Unlock()
		clear(r.written) // values under the old lease may be gone
		r.loop(ctx, ka)
		cancel()
	}
	// Revoking the lease removes every insight it holds at once.
	r.mu.Lock()
	lease := r.lease
	r.mu.Unlock()
	if lease != 0 {
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, _ = cli.Revoke(rctx, lease)
		cancel()
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (r *Recorder) loop(ctx context.Context, ka <-chan *clientv3.LeaseKeepAliveResponse) {
	tick := time.NewTicker(r.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ka:
			if !ok {
				if ctx.Err() != nil {
					return // shutting down: the keep-alive ended with ctx
				}
				r.log.Warn("insight lease lost, re-granting")
				return
			}
		case <-tick.C:
			r.flush(ctx)
		}
	}
}

type job struct {
	mesh, name string
	subs       []*meshv1.DiscoverySubscription
}

// collect takes the dirty set and copies what each dirty dataplane's
// streams say. It runs under the lock the ADS callbacks (Sent, Acked) also
// need, so its cost is proportional to the dirty dataplanes' own streams,
// never to every stream on the replica.
func (r *Recorder) collect() ([]job, clientv3.LeaseID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.dirty) == 0 {
		return nil, 0
	}
	dirty := r.dirty
	r.dirty = map[string]bool{}
	jobs := make([]job, 0, len(dirty))
	for k := range dirty {
		var j job
		ge := r.genErr[k]
		for _, s := range r.byDP[k] {
			j.mesh, j.name = s.mesh, s.name
			sub := proto.Clone(s.sub).(*meshv1.DiscoverySubscription)
			sub.GenerationError, sub.GenerationErrorTime = ge.msg, ge.since
			j.subs = append(j.subs, sub)
		}
		if j.mesh == "" {
			j.mesh, j.name, _ = cut(k)
		}
		jobs = append(jobs, j)
	}
	return jobs, r.lease
}

func (r *Recorder) flush(ctx context.Context) {
	jobs, lease := r.collect()
	for _, j := range jobs {
		if err := r.write(ctx, j.mesh, j.name, j.subs, lease); err != nil && ctx.Err() == nil {
			r.log.Debug("write insight", "dataplane", dpKey(j.mesh, j.name), "err", err)
			r.mu.Lock()
			r.dirty[dpKey(j.mesh, j.name)] = true
			r.mu.Unlock()
		}
	}
}

func cut(k string) (string, string, bool) {
	for i := 0; i < len(k); i++ {
		if k[i] == '/' {
			return k[:i], k[i+1:], true
		}
	}
	return k, "", false
}

func (r *Recorder) write(ctx context.Context, mesh, name string, subs []*meshv1.DiscoverySubscription, lease clientv3.LeaseID) error {
	k := dpKey(mesh, name)
	if len(subs) == 0 {
		delete(r.written, k)
		// Gone from this replica: remove the insight unless another replica
		// wrote it since.
		cur, err := r.st.Get(ctx, resource.DataplaneInsightType, mesh, name)
		if store.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, s := range cur.Spec.(*meshv1.DataplaneInsight).GetSubscriptions() {
			if s.GetControlPlaneInstanceId() != r.instance {
				return nil
			}
		}
		err = r.st.Delete(ctx, resource.DataplaneInsightType, mesh, name, cur.Meta.GetVersion())
		if store.IsNotFound(err) || store.IsConflict(err) {
			return nil
		}
		return err
	}
	sort.Slice(subs, func(i, j int) bool { return subs[i].GetId() < subs[j].GetId() })
	ins := &meshv1.DataplaneInsight{Subscriptions: subs}
	if ci, ok := r.certInfo(mesh, name); ok {
		ins.Mtls = &meshv1.DataplaneInsight_MTLS{
			CertificateExpirationTime:   timestamppb.New(ci.NotAfter),
			LastCertificateRegeneration: timestamppb.New(ci.Issued),
			CertificateRegenerations:    ci.Regenerations,
			IssuedBackend:               ci.Backend,
		}
	}
	res := resource.New(resource.DataplaneInsightType, mesh, name)
	res.Spec = ins
	var (
		out *resource.Resource
		err error
	)
	if prev := r.written[k]; prev != nil {
		out, err = r.st.Update(ctx, res, store.WithLease(lease), store.WithCurrent(prev))
		if store.IsNotFound(err) {
			out, _, err = r.st.Upsert(ctx, res, store.WithLease(lease))
		}
	} else {
		out, _, err = r.st.Upsert(ctx, res, store.WithLease(lease))
	}
	if err != nil {
		delete(r.written, k)
		return err
	}
	// Only the metadata: store.WithCurrent reads the version, creation
	// time and origin of what it is given, never the spec. Keeping the
	// spec kept a second copy of every proxy's subscriptions (their
	// per-type statuses and timestamps), one to two kilobytes per proxy.
	r.written[k] = &resource.Resource{Meta: out.Meta}
	return nil
}
