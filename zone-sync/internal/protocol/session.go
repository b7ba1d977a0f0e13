package protocol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	syncv1 "github.com/weftmesh/weft/proto/gen/go/weft/sync/v1"
)

// Stream is either end of the gRPC stream.
type Stream interface {
	Send(*syncv1.SyncMessage) error
	Recv() (*syncv1.SyncMessage, error)
}

// Policy is what one end decides about the resources the other sends it.
type Policy interface {
	// InitialVersions lists what this end holds of t from the peer, by the
	// peer's wire name.
	InitialVersions(ctx context.Context, t *resource.Type) (map[string]string, error)
	// Local returns an incoming resource as it is stored here. A *Rejection
	// refuses the whole response.
	Local(in Incoming) (*resource.Resource, error)
	// LocalName maps the wire name of a removed resource to the local mesh
	// and name.
	LocalName(t *resource.Type, wire string) (mesh, name string, err error)
	// FromPeer reports whether a stored resource came from the peer, so the
	// peer may overwrite or delete it.
	FromPeer(r *resource.Resource) bool
}

// Rejection is an incoming resource this end refuses on principle (not a
// malformed message): it is counted by Reason.
type Rejection struct {
	Reason string
	Err    error
}

func (r *Rejection) Error() string { return r.Err.Error() }

// Reject builds a Rejection.
func Reject(reason, format string, args ...any) error {
	return &Rejection{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// SessionConfig sets up both halves of a stream.
type SessionConfig struct {
	// Peer is the zone the stream links (metric label).
	Peer    string
	Log     *slog.Logger
	Metrics *Metrics
	Store   *store.Store

	// Sending half: types served from Cache, filtered per peer.
	Cache         *Cache
	Serve         []*resource.Type
	Filter        func(*Entry) bool
	Origin        func(*Entry) string
	SendDirection string

	// Receiving half.
	Receive       []*resource.Type
	Policy        Policy
	RecvDirection string
	// ApplyWorkers writes a response's resources in parallel (default 8).
	ApplyWorkers int
	// TracerProvider makes the zonesync.Send and zonesync.Apply spans of
	// each response (nil: none); see trace.go.
	TracerProvider oteltrace.TracerProvider
	// RetryDelay is the wait before resending resources the peer failed to
	// apply for a transient reason (default 1s). Resources it refused on
	// principle are not resent until they change or the stream reconnects.
	RetryDelay time.Duration
}

// Session runs the protocol on one stream.
type Session struct {
	cfg     SessionConfig
	sendMu  sync.Mutex
	stream  Stream
	nonce   atomic.Uint64
	serves  map[*resource.Type]bool
	accepts map[*resource.Type]bool
	tracer  oteltrace.Tracer
	Stats   *Stats
}

// NewSession prepares a session.
func NewSession(cfg SessionConfig) *Session {
	if cfg.ApplyWorkers <= 0 {
		cfg.ApplyWorkers = 8
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = time.Second
	}
	if cfg.Filter == nil {
		cfg.Filter = func(*Entry) bool { return true }
	}
	if cfg.Origin == nil {
		cfg.Origin = func(e *Entry) string { return e.Resource.Meta.GetOrigin() }
	}
	s := &Session{cfg: cfg, serves: map[*resource.Type]bool{}, accepts: map[*resource.Type]bool{}, Stats: NewStats(),
		tracer: tracerOf(cfg.TracerProvider)}
	for _, t := range cfg.Serve {
		s.serves[t] = true
	}
	for _, t := range cfg.Receive {
		s.accepts[t] = true
	}
	return s
}

func (s *Session) send(m *syncv1.SyncMessage) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.stream.Send(m)
}

// Run runs the session until the stream fails or ctx ends. It returns nil
// when ctx ends, else the cause.
func (s *Session) Run(ctx context.Context, st Stream) error {
	s.stream = st
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	reqs := make(chan *syncv1.DeltaRequest, 64)
	resps := make(chan *syncv1.DeltaResponse, 4)
	var notifier *Notifier
	if s.cfg.Cache != nil {
		notifier = s.cfg.Cache.Subscribe()
		defer s.cfg.Cache.Unsubscribe(notifier)
	}
	// Recv blocks until the stream ends, which the caller arranges when
	// Run returns (handler return or stream context cancel); it is not
	// waited for.
	go func() {
		for {
			m, err := st.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = status.Error(codes.Unavailable, "peer closed the stream")
				}
				cancel(err)
				return
			}
			switch x := m.GetMessage().(type) {
			case *syncv1.SyncMessage_Request:
				select {
				case reqs <- x.Request:
				case <-ctx.Done():
					return
				}
			case *syncv1.SyncMessage_Response:
				select {
				case resps <- x.Response:
				case <-ctx.Done():
					return
				}
			default:
				cancel(status.Errorf(codes.InvalidArgument, "unexpected %T after the handshake", m.GetMessage()))
				return
			}
		}
	}()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := s.runSender(ctx, reqs, notifier); err != nil {
			cancel(err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := s.runReceiver(ctx, resps); err != nil {
			cancel(err)
		}
	}()
	wg.Wait()
	return context.Cause(ctx)
}

type sendState struct {
	t          *resource.Type
	url        string
	subscribed bool
	known      map[string]string
	pending    map[string]struct{}
	inflight   string
	sent       map[string]string
}

// nackedVersion marks a resource whose state on the receiver is unknown
// after a NACK: it differs from every real version, so the next change is
// sent (and a later removal too).
const nackedVersion = "nacked"

func (s *Session) runSender(ctx context.Context, reqs <-chan *syncv1.DeltaRequest, n *Notifier) error {
	states := map[*resource.Type]*sendState{}
	for _, t := range s.cfg.Serve {
		states[t] = &sendState{t: t, url: TypeURL(t), pending: map[string]struct{}{}}
	}
	if s.cfg.Cache != nil {
		select {
		case <-ctx.Done():
			return nil
		case <-s.cfg.Cache.Ready():
		}
	}
	var notify <-chan struct{}
	if n != nil {
		notify = n.C()
	}
	retry := make(chan []Key, len(states))
	for {
		for _, t := range s.cfg.Serve {
			if err := s.flush(states[t]); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-notify:
			for _, k := range n.Take() {
				if st := states[k.Type]; st != nil && st.subscribed {
					st.pending[k.Wire] = struct{}{}
				}
			}
		case req := <-reqs:
			if err := s.onRequest(ctx, states, req, retry); err != nil {
				return err
			}
		case keys := <-retry:
			for _, k := range keys {
				if st := states[k.Type]; st != nil && st.subscribed {
					st.pending[k.Wire] = struct{}{}
				}
			}
		}
	}
}

// transient reports whether a NACK code means "try again" rather than "no".
func transient(c codes.Code) bool {
	switch c {
	case codes.Aborted, codes.Unavailable, codes.Internal, codes.DeadlineExceeded, codes.ResourceExhausted:
		return true
	}
	return false
}

func (s *Session) onRequest(ctx context.Context, states map[*resource.Type]*sendState, req *syncv1.DeltaRequest, retry chan<- []Key) error {
	if t, ok := TypeByURL(req.GetTypeUrl()); ok && !s.serves[t] {
		s.cfg.Log.Warn("peer asked for a type this end does not serve; ignored", "type", t.Name)
		return nil
	}
	t, err := CheckRequest(req, func(t *resource.Type) bool { return s.serves[t] })
	if err != nil {
		s.cfg.Metrics.Rejected.WithLabelValues(s.cfg.Peer, "invalid_request").Inc()
		return status.Errorf(codes.InvalidArgument, "invalid request: %v", err)
	}
	st := states[t]
	dir := s.cfg.SendDirection
	if req.GetResponseNonce() == "" {
		// Subscribe: the receiver says what it holds; everything cached
		// and everything it holds is compared on the next flush.
		st.subscribed = true
		st.inflight, st.sent = "", nil
		st.known = make(map[string]string, len(req.GetInitialResourceVersions()))
		for name, v := range req.GetInitialResourceVersions() {
			st.known[name] = v
			st.pending[name] = struct{}{}
		}
		for _, name := range s.cfg.Cache.Names(t) {
			st.pending[name] = struct{}{}
		}
		s.cfg.Log.Debug("peer subscribed", "type", t.Name, "held", len(st.known))
		return nil
	}
	if req.GetResponseNonce() != st.inflight {
		return nil // a stale ACK/NACK (from before a re-subscribe)
	}
	if ed := req.GetErrorDetail(); ed != nil {
		for name := range st.sent {
			st.known[name] = nackedVersion
		}
		msg := ed.GetMessage()
		if len(msg) > MaxErrorLength {
			msg = msg[:MaxErrorLength]
		}
		s.cfg.Metrics.Nacks.WithLabelValues(s.cfg.Peer, t.Name, dir).Inc()
		s.Stats.nack(dir, st.url, msg)
		s.cfg.Log.Warn("peer rejected a response (NACK)", "type", t.Name, "nonce", st.inflight, "code", codes.Code(ed.GetCode()).String(), "error", msg, "resources", len(ed.GetResources()))
		if transient(codes.Code(ed.GetCode())) {
			keys := make([]Key, 0, len(st.sent))
			for name := range st.sent {
				keys = append(keys, Key{t, name})
			}
			time.AfterFunc(s.cfg.RetryDelay, func() {
				select {
				case retry <- keys:
				case <-ctx.Done():
				}
			})
		}
	} else {
		for name, v := range st.sent {
			if v == "" {
				delete(st.known, name)
			} else {
				st.known[name] = v
			}
		}
		s.cfg.Metrics.Acks.WithLabelValues(s.cfg.Peer, t.Name, dir).Inc()
		s.Stats.ack(dir, st.url, len(st.known))
	}
	st.inflight, st.sent = "", nil
	return nil
}

// flush sends the next response of a type when none is in flight.
func (s *Session) flush(st *sendState) error {
	if !st.subscribed || st.inflight != "" || len(st.pending) == 0 {
		return nil
	}
	names := make([]string, 0, len(st.pending))
	for n := range st.pending {
		names = append(names, n)
	}
	sort.Strings(names)
	nonce := strconv.FormatUint(s.nonce.Add(1), 10)
	resp := &syncv1.DeltaResponse{TypeUrl: st.url, Nonce: nonce,
		SystemVersionInfo: strconv.FormatInt(s.cfg.Cache.Revision(st.t), 10)}
	sent := map[string]string{}
	var origins []string
	size := 0
	for _, n := range names {
		if len(resp.Resources) >= chunkResources || size >= chunkBytes || len(resp.RemovedResources) >= MaxRemovedPerResponse {
			break
		}
		delete(st.pending, n)
		e := s.cfg.Cache.Get(st.t, n)
		if e != nil && s.cfg.Filter(e) {
			if st.known[n] == e.Version {
				continue
			}
			m := e.Resource.Meta
			sr := &syncv1.SyncResource{Name: n, Version: e.Version, Spec: e.Spec,
				Meta: &meshv1.Meta{Type: m.GetType(), Mesh: m.GetMesh(), Name: m.GetName(), Origin: s.cfg.Origin(e), Labels: m.GetLabels()}}
			if !e.Commit.IsZero() {
				sr.CommitTime = timestamppb.New(e.Commit)
			}
			resp.Resources = append(resp.Resources, sr)
			origins = append(origins, e.Resource.Traceparent)
			sent[n] = e.Version
			size += proto.Size(sr)
		} else if _, held := st.known[n]; held {
			resp.RemovedResources = append(resp.RemovedResources, n)
			sent[n] = ""
			if at := s.cfg.Cache.RemovedAt(st.t, n); !at.IsZero() {
				if resp.RemovedTimes == nil {
					resp.RemovedTimes = map[string]*timestamppb.Timestamp{}
				}
				resp.RemovedTimes[n] = timestamppb.New(at)
			}
		}
	}
	if len(sent) == 0 {
		return nil
	}
	resp.SendTime = timestamppb.Now()
	pctx, popts := sendParent(origins)
	sctx, span := s.tracer.Start(pctx, sendSpan, append(popts, oteltrace.WithSpanKind(oteltrace.SpanKindProducer),
		oteltrace.WithAttributes(attribute.String("weft.zone", s.cfg.Peer), attribute.String("weft.type", st.t.Name),
			attribute.String("weft.sync.direction", s.cfg.SendDirection), attribute.String("weft.sync.nonce", nonce),
			attribute.Int("weft.sync.resources", len(resp.Resources)), attribute.Int("weft.sync.removed", len(resp.RemovedResources))))...)
	resp.Traceparent = traceparentOf(sctx)
	if err := s.send(&syncv1.SyncMessage{Message: &syncv1.SyncMessage_Response{Response: resp}}); err != nil {
		endSpan(span, err)
		return err
	}
	span.End()
	st.inflight, st.sent = nonce, sent
	dir := s.cfg.SendDirection
	s.cfg.Metrics.Responses.WithLabelValues(s.cfg.Peer, st.t.Name, dir).Inc()
	s.cfg.Metrics.SentBytes.WithLabelValues(s.cfg.Peer, st.t.Name, dir).Add(float64(size))
	s.cfg.Metrics.SentResources.WithLabelValues(s.cfg.Peer, st.t.Name, dir).Add(float64(len(resp.Resources)))
	s.cfg.Metrics.RemovedResources.WithLabelValues(s.cfg.Peer, st.t.Name, dir).Add(float64(len(resp.RemovedResources)))
	s.Stats.sent(dir, st.url, resp.SystemVersionInfo)
	return nil
}

func (s *Session) runReceiver(ctx context.Context, resps <-chan *syncv1.DeltaResponse) error {
	for _, t := range s.cfg.Receive {
		iv, err := s.cfg.Policy.InitialVersions(ctx, t)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return status.Errorf(codes.Unavailable, "list %s held: %v", t.Name, err)
		}
		req := &syncv1.DeltaRequest{TypeUrl: TypeURL(t), InitialResourceVersions: iv}
		if err := s.send(&syncv1.SyncMessage{Message: &syncv1.SyncMessage_Request{Request: req}}); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case resp := <-resps:
			if err := s.onResponse(ctx, resp); err != nil {
				return err
			}
		}
	}
}

func (s *Session) nack(url, nonce string, code codes.Code, msg string, causes map[string]string) error {
	if len(nonce) > MaxNonceLength {
		nonce = nonce[:MaxNonceLength]
	}
	if _, ok := TypeByURL(url); !ok {
		url = ""
	}
	req := &syncv1.DeltaRequest{TypeUrl: url, ResponseNonce: nonce,
		ErrorDetail: &syncv1.ErrorDetail{Code: int32(code), Message: msg, Resources: causes}}
	return s.send(&syncv1.SyncMessage{Message: &syncv1.SyncMessage_Request{Request: req}})
}

func (s *Session) onResponse(ctx context.Context, resp *syncv1.DeltaResponse) (err error) {
	dir := s.cfg.RecvDirection
	actx, aopts := applyParent(ctx, resp.GetTraceparent())
	ctx, span := s.tracer.Start(actx, applySpan, append(aopts, oteltrace.WithSpanKind(oteltrace.SpanKindConsumer),
		oteltrace.WithLinks(applyLinks(resp.GetTraceparent())...),
		oteltrace.WithAttributes(attribute.String("weft.zone", s.cfg.Peer), attribute.String("weft.sync.direction", dir),
			attribute.String("weft.sync.type_url", clip(resp.GetTypeUrl())), attribute.String("weft.sync.nonce", clip(resp.GetNonce())),
			attribute.Int("weft.sync.resources", len(resp.GetResources())), attribute.Int("weft.sync.removed", len(resp.GetRemovedResources()))))...)
	defer func() { endSpan(span, err) }()
	d, err := DecodeResponse(resp, func(t *resource.Type) bool { return s.accepts[t] })
	if err != nil {
		s.cfg.Metrics.Rejected.WithLabelValues(s.cfg.Peer, "invalid").Inc()
		s.cfg.Log.Warn("rejected an invalid response from the peer", "error", err)
		s.Stats.recvError(dir, resp.GetTypeUrl(), err.Error())
		return s.nack(resp.GetTypeUrl(), resp.GetNonce(), codes.InvalidArgument, err.Error(), nil)
	}
	t := d.Type
	local := make([]*resource.Resource, len(d.Resources))
	for i, in := range d.Resources {
		r, err := s.cfg.Policy.Local(in)
		if err == nil {
			_, err = checkLocal(r)
		}
		if err != nil {
			reason := "invalid"
			var rj *Rejection
			if errors.As(err, &rj) {
				reason = rj.Reason
			}
			s.cfg.Metrics.Rejected.WithLabelValues(s.cfg.Peer, reason).Inc()
			s.cfg.Log.Warn("rejected a response from the peer: nothing written", "type", t.Name, "resource", in.Wire, "reason", reason, "error", err)
			s.Stats.recvError(dir, TypeURL(t), err.Error())
			return s.nack(resp.GetTypeUrl(), d.Nonce, codes.PermissionDenied, err.Error(), map[string]string{in.Wire: err.Error()})
		}
		local[i] = r
	}
	type del struct {
		wire, mesh, name string
		at               time.Time
	}
	dels := make([]del, 0, len(d.Removed))
	for _, w := range d.Removed {
		mesh, name, err := s.cfg.Policy.LocalName(t, w)
		if err != nil {
			s.cfg.Metrics.Rejected.WithLabelValues(s.cfg.Peer, "invalid").Inc()
			return s.nack(resp.GetTypeUrl(), d.Nonce, codes.PermissionDenied, err.Error(), map[string]string{w: err.Error()})
		}
		dels = append(dels, del{w, mesh, name, d.RemovedTimes[w]})
	}

	var mu sync.Mutex
	causes := map[string]string{}
	fail := func(wire string, err error) {
		mu.Lock()
		causes[wire] = err.Error()
		mu.Unlock()
	}
	work := make(chan func(), len(local)+len(dels))
	for i := range local {
		in, r := d.Resources[i], local[i]
		work <- func() {
			if err := s.put(ctx, r, in.Wire, in.Version); err != nil {
				fail(in.Wire, err)
				return
			}
			if !in.Commit.IsZero() {
				s.cfg.Metrics.Lag.WithLabelValues(s.cfg.Peer, t.Name, dir).Observe(time.Since(in.Commit).Seconds())
			}
		}
	}
	for _, dl := range dels {
		work <- func() {
			if err := s.remove(ctx, t, dl.mesh, dl.name); err != nil {
				fail(dl.wire, err)
				return
			}
			if !dl.at.IsZero() {
				s.cfg.Metrics.Lag.WithLabelValues(s.cfg.Peer, t.Name, dir).Observe(time.Since(dl.at).Seconds())
			}
		}
	}
	close(work)
	var wg sync.WaitGroup
	for i := 0; i < min(s.cfg.ApplyWorkers, len(local)+len(dels)); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				f()
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	applied := len(local) + len(dels) - len(causes)
	s.cfg.Metrics.AppliedResources.WithLabelValues(s.cfg.Peer, t.Name, dir).Add(float64(applied))
	if len(causes) > 0 {
		msg := fmt.Sprintf("%d of %d changes could not be applied", len(causes), len(local)+len(dels))
		s.cfg.Log.Warn("could not apply a response from the peer", "type", t.Name, "failed", len(causes), "causes", causes)
		s.Stats.recvError(dir, TypeURL(t), msg)
		return s.nack(resp.GetTypeUrl(), d.Nonce, codes.Aborted, msg, causes)
	}
	s.Stats.received(dir, TypeURL(t), d.Version, len(local), len(dels))
	req := &syncv1.DeltaRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: d.Nonce}
	return s.send(&syncv1.SyncMessage{Message: &syncv1.SyncMessage_Request{Request: req}})
}

func checkLocal(r *resource.Resource) (*resource.Resource, error) {
	if r == nil {
		return nil, errors.New("no resource")
	}
	if err := resource.Validate(r); err != nil {
		return nil, err
	}
	return r, nil
}

// put creates or replaces a resource from the peer; it never replaces one
// this end owns, and skips writes that would change nothing.
func (s *Session) put(ctx context.Context, r *resource.Resource, wire, version string) error {
	st := s.cfg.Store
	t := r.Type()
	for attempt := 0; attempt < 5; attempt++ {
		_, err := st.Create(ctx, r, store.WithoutMeshCheck())
		if err == nil || !store.IsAlreadyExists(err) {
			return err
		}
		cur, err := st.Get(ctx, t, r.Meta.GetMesh(), r.Meta.GetName())
		if store.IsNotFound(err) {
			continue
		}
		if store.IsUndecodable(err) && s.cfg.Policy.FromPeer(typeOnly(t)) {
			// An unreadable copy of a type the peer owns is replaced by
			// the peer's (the unconditional update overwrites it).
			u := r.Clone()
			u.Meta.Version = 0
			_, err = st.Update(ctx, u, store.WithoutMeshCheck())
			return err
		}
		if err != nil {
			return err
		}
		if !s.cfg.Policy.FromPeer(cur) {
			return fmt.Errorf("%s exists here with origin %q and is not overwritten", r.Key(), cur.Meta.GetOrigin())
		}
		if cur.Meta.GetOrigin() == r.Meta.GetOrigin() {
			if v, err := ResourceVersion(wire, cur); err == nil && v == version {
				return nil
			}
		}
		u := r.Clone()
		u.Meta.Version = cur.Meta.GetVersion()
		_, err = st.Update(ctx, u, store.WithoutMeshCheck())
		if store.IsConflict(err) || store.IsNotFound(err) {
			continue
		}
		return err
	}
	return fmt.Errorf("%s: kept changing while being written", r.Key())
}

// typeOnly stands for a resource of type t whose content cannot be read,
// for Policy.FromPeer: only its type (no origin) is known.
func typeOnly(t *resource.Type) *resource.Resource {
	return &resource.Resource{Meta: &meshv1.Meta{Type: t.Name}}
}

func (s *Session) remove(ctx context.Context, t *resource.Type, mesh, name string) error {
	st := s.cfg.Store
	for attempt := 0; attempt < 5; attempt++ {
		cur, err := st.Get(ctx, t, mesh, name)
		if store.IsNotFound(err) {
			return nil
		}
		if store.IsUndecodable(err) && s.cfg.Policy.FromPeer(typeOnly(t)) {
			if err := st.DeleteUndecodable(ctx, t, mesh, name, 0); store.IsNotFound(err) || store.IsConflict(err) {
				continue
			} else {
				return err
			}
		}
		if err != nil {
			return err
		}
		if !s.cfg.Policy.FromPeer(cur) {
			return fmt.Errorf("%s exists here with origin %q and is not deleted", cur.Key(), cur.Meta.GetOrigin())
		}
		err = st.Delete(ctx, t, mesh, name, cur.Meta.GetVersion())
		if store.IsNotFound(err) {
			return nil
		}
		if store.IsConflict(err) {
			continue
		}
		return err
	}
	return fmt.Errorf("%s: kept changing while being deleted", resource.Key(t.Name, mesh, name))
}
