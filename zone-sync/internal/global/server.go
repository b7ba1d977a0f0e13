// Package global is zone-sync's global side: it admits zone streams (zone
// token + enabled Zone resource), serves global-owned resources down,
// stores what zones send under their own names, and keeps ZoneInsights and
// the lease-backed online status.
package global

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weftmesh/weft/pkg/grpcx"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/token"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	syncv1 "github.com/weftmesh/weft/proto/gen/go/weft/sync/v1"

	"github.com/weftmesh/weft/zone-sync/internal/protocol"
)

// PresencePrefix holds one lease-attached key per open zone stream:
// PresencePrefix + "<zone>/<subscription id>". A zone is online while any
// key under PresencePrefix + "<zone>/" exists; a dead global replica's keys
// vanish when their lease expires.
const PresencePrefix = "/weft/zone-sync/presence/"

// Rejection reasons for refused streams.
const (
	ReasonBadToken     = "bad_token"
	ReasonWrongZone    = "token_for_other_zone"
	ReasonUnknownZone  = "unknown_zone"
	ReasonDisabledZone = "disabled_zone"
	ReasonBadHello     = "bad_hello"
)

// tokenLeeway is the clock skew pkg/token accepts past a token's expiry.
const tokenLeeway = 30 * time.Second

// maxSubscriptions is how many past streams a ZoneInsight keeps.
const maxSubscriptions = 5

// Config sets up the global side.
type Config struct {
	Store   *store.Store
	Keys    *token.Keys
	Metrics *protocol.Metrics
	// TracerProvider traces each sync response (nil: none).
	TracerProvider trace.TracerProvider
	Log            *slog.Logger
	InstanceID     string
	// LeaseTTL bounds how long a dead stream's zone still shows online.
	LeaseTTL time.Duration
	// Retention deletes the resources of a zone offline for longer (0:
	// keep until the Zone is deleted).
	Retention time.Duration
	// JanitorInterval is how often zones' leftovers are checked.
	JanitorInterval time.Duration
	// InsightInterval is how often a stream's ZoneInsight is refreshed.
	InsightInterval time.Duration
	// HelloTimeout bounds the wait for the zone's first message.
	HelloTimeout time.Duration
}

// Server implements ZoneSyncService.
type Server struct {
	syncv1.UnimplementedZoneSyncServiceServer
	cfg   Config
	cache *protocol.Cache

	mu   sync.Mutex
	seen map[string]bool
	// refusals throttles the "zone stream refused" log.
	refusals logThrottle
	// offlineSince is when the janitor first saw each zone offline.
	offlineSince map[string]time.Time
	// stopping is closed when Run's context ends: open streams end with
	// "global is shutting down" so a graceful stop does not wait.
	stopping chan struct{}
}

// New returns a server; Run must be running for streams to be served.
func New(cfg Config) *Server {
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 10 * time.Second
	}
	if cfg.JanitorInterval <= 0 {
		cfg.JanitorInterval = time.Minute
	}
	if cfg.InsightInterval <= 0 {
		cfg.InsightInterval = 5 * time.Second
	}
	if cfg.HelloTimeout <= 0 {
		cfg.HelloTimeout = 10 * time.Second
	}
	cfg.Log = cfg.Log.With("component", "zone-sync-global")
	types := append(protocol.DownTypes(), resource.ZoneType)
	return &Server{cfg: cfg, cache: protocol.NewCache(cfg.Store, types, cfg.Log), seen: map[string]bool{}, offlineSince: map[string]time.Time{}, stopping: make(chan struct{})}
}

// Ready is closed once the cache has loaded.
func (s *Server) Ready() <-chan struct{} { return s.cache.Ready() }

// Run watches the store and cleans up after zones until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	go s.janitor(ctx)
	go func() {
		<-ctx.Done()
		close(s.stopping)
	}()
	return s.cache.Run(ctx)
}

// refuse counts and logs a refused stream. zone must be authenticated (the
// zone of a verified token) or "": a name the client merely claims never
// becomes a metric label, and the log is rate limited (claimed names are
// clipped in the error message).
func (s *Server) refuse(zone, reason string, err error) error {
	s.cfg.Metrics.Rejected.WithLabelValues(zone, reason).Inc()
	if ok, suppressed := s.refusals.allow(time.Now()); ok {
		s.cfg.Log.Warn("zone stream refused", "zone", zone, "reason", reason, "error", status.Convert(err).Message(),
			"suppressed", suppressed)
	}
	return err
}

// logThrottle allows refusalLogBurst log lines, then one per
// refusalLogEvery; it counts what it suppressed in between.
type logThrottle struct {
	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int
}

const (
	refusalLogBurst = 10
	refusalLogEvery = time.Second
)

func (l *logThrottle) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last.IsZero() {
		l.tokens = refusalLogBurst
	} else {
		l.tokens = min(refusalLogBurst, l.tokens+float64(now.Sub(l.last))/float64(refusalLogEvery))
	}
	l.last = now
	if l.tokens < 1 {
		l.suppressed++
		return false, 0
	}
	l.tokens--
	n := l.suppressed
	l.suppressed = 0
	return true, n
}

// Sync serves one zone's stream.
func (s *Server) Sync(ss syncv1.ZoneSyncService_SyncServer) error {
	ctx := ss.Context()
	hello, err := s.recvHello(ss)
	if err != nil {
		return s.refuse("", ReasonBadHello, err)
	}
	zone := hello.GetZone()
	if !resource.IsLabel(zone) {
		return s.refuse("", ReasonBadHello, status.Errorf(codes.InvalidArgument, "hello: zone %q is not a valid zone name", clip(zone)))
	}
	claims, err := s.cfg.Keys.VerifyZone(ctx, grpcx.BearerToken(ctx), "")
	if err != nil {
		var te *token.Error
		if errors.As(err, &te) {
			// Not authenticated: the claimed zone is not a label.
			return s.refuse("", ReasonBadToken, status.Errorf(codes.Unauthenticated, "zone %q: zone token rejected: %s", zone, te.Reason))
		}
		return status.Errorf(codes.Unavailable, "verify zone token: %v", err)
	}
	if claims.Zone != zone {
		// Labelled with the token's zone, the one that is authenticated.
		return s.refuse(claims.Zone, ReasonWrongZone, status.Errorf(codes.PermissionDenied, "zone %q: the token is for zone %q", zone, claims.Zone))
	}
	if err := s.checkZone(ctx, zone); err != nil {
		return err
	}

	subID := newID()
	log := s.cfg.Log.With("zone", zone, "subscription", subID, "zoneInstance", hello.GetInstanceId())
	s.mu.Lock()
	if s.seen[zone] {
		s.cfg.Metrics.Reconnects.WithLabelValues(zone).Inc()
	}
	s.seen[zone] = true
	s.mu.Unlock()

	presenceCtx, stopPresence := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPresence()
	lease, presenceDone, err := s.presence(presenceCtx, zone, subID)
	if err != nil {
		return status.Errorf(codes.Unavailable, "record zone presence: %v", err)
	}
	defer func() {
		stopPresence()
		<-presenceDone
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, _ = s.cfg.Store.Client().Revoke(rctx, lease)
	}()

	sess := protocol.NewSession(protocol.SessionConfig{
		Peer: zone, Log: log, Metrics: s.cfg.Metrics, Store: s.cfg.Store,
		TracerProvider: s.cfg.TracerProvider,
		Cache:          s.cache, Serve: protocol.DownTypes(), Filter: Filter(zone), Origin: Origin, SendDirection: protocol.Down,
		Receive: protocol.UpTypes(), Policy: &ZonePolicy{Zone: zone, Store: s.cfg.Store, MeshExists: s.meshExists}, RecvDirection: protocol.Up,
	})
	connect := time.Now()
	sub := &meshv1.ZoneInsight_Subscription{Id: subID, GlobalInstanceId: s.cfg.InstanceID, ZoneInstanceId: hello.GetInstanceId(),
		ConnectTime: timestamppb.New(connect), Version: hello.GetVersion()}
	if err := s.updateInsight(ctx, zone, func(zi *meshv1.ZoneInsight) { addSubscription(zi, sub) }); err != nil {
		log.Warn("could not record the zone's insight", "error", err)
	}
	if err := ss.Send(&syncv1.SyncMessage{Message: &syncv1.SyncMessage_Welcome{Welcome: &syncv1.Welcome{
		GlobalInstanceId: s.cfg.InstanceID, SubscriptionId: subID}}}); err != nil {
		return err
	}
	s.cfg.Metrics.Streams.WithLabelValues(zone).Inc()
	defer s.cfg.Metrics.Streams.WithLabelValues(zone).Dec()
	log.Info("zone connected")

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go s.watchZone(runCtx, zone, cancel)
	if claims.ExpiresAt != nil {
		// A stream does not outlive its token (plus the leeway token
		// verification allows): the zone reconnects with the token file's
		// current content.
		expiry := time.AfterFunc(time.Until(claims.ExpiresAt.Time.Add(tokenLeeway)), func() {
			cancel(status.Errorf(codes.Unauthenticated, "zone %q: zone token expired; reconnect with a new one", zone))
		})
		defer expiry.Stop()
	}
	go s.recheckToken(runCtx, zone, grpcx.BearerToken(ctx), cancel)
	go func() {
		select {
		case <-s.stopping:
			cancel(status.Error(codes.Unavailable, "global zone-sync is shutting down"))
		case <-runCtx.Done():
		}
	}()
	go s.flushInsight(runCtx, zone, subID, sess)
	err = sess.Run(runCtx, ss)

	// Record the disconnect even though the stream's context is gone.
	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	types, _ := sess.Stats.Snapshot()
	if uerr := s.updateInsight(dctx, zone, func(zi *meshv1.ZoneInsight) {
		if cur := findSubscription(zi, subID); cur != nil {
			cur.DisconnectTime = timestamppb.Now()
			cur.Types = types
		}
	}); uerr != nil {
		log.Warn("could not record the zone's disconnect", "error", uerr)
	}
	log.Info("zone disconnected", "after", time.Since(connect).Round(time.Millisecond), "cause", err)
	if err != nil && ctx.Err() != nil {
		return nil
	}
	return err
}

func (s *Server) recvHello(ss syncv1.ZoneSyncService_SyncServer) (*syncv1.Hello, error) {
	type res struct {
		m   *syncv1.SyncMessage
		err error
	}
	ch := make(chan res, 1)
	go func() {
		m, err := ss.Recv()
		ch <- res{m, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		h := r.m.GetHello()
		if h == nil {
			return nil, status.Error(codes.InvalidArgument, "the first message must be a Hello")
		}
		if len(h.GetInstanceId()) > 253 || len(h.GetVersion()) > 128 {
			return nil, status.Error(codes.InvalidArgument, "hello: instance id or version too long")
		}
		return h, nil
	case <-time.After(s.cfg.HelloTimeout):
		return nil, status.Error(codes.DeadlineExceeded, "no Hello from the zone in time")
	case <-ss.Context().Done():
		return nil, status.FromContextError(ss.Context().Err()).Err()
	}
}

// meshExists: from the cache, confirmed against the store when the cache
// does not hold the mesh (it may lag a Mesh just created).
func (s *Server) meshExists(mesh string) bool {
	if s.cache.Get(resource.MeshType, mesh) != nil {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := s.cfg.Store.Get(ctx, resource.MeshType, "", mesh)
	// Unsure (etcd unavailable): refuse now; the zone retries the NACK.
	return err == nil
}

// checkZone admits a zone that exists on global and is not disabled.
func (s *Server) checkZone(ctx context.Context, zone string) error {
	z, err := s.cfg.Store.Get(ctx, resource.ZoneType, "", zone)
	if store.IsNotFound(err) {
		return s.refuse(zone, ReasonUnknownZone, status.Errorf(codes.PermissionDenied,
			"zone %q is not registered on global: create a Zone resource named %q first", zone, zone))
	}
	if err != nil {
		return status.Errorf(codes.Unavailable, "read zone %q: %v", zone, err)
	}
	if en := z.Spec.(*meshv1.Zone).GetEnabled(); en != nil && !en.GetValue() {
		return s.refuse(zone, ReasonDisabledZone, status.Errorf(codes.PermissionDenied, "zone %q is disabled on global", zone))
	}
	return nil
}

// watchZone ends the stream when its Zone is disabled or deleted.
func (s *Server) watchZone(ctx context.Context, zone string, cancel context.CancelCauseFunc) {
	n := s.cache.Subscribe()
	defer s.cache.Unsubscribe(n)
	check := func() bool {
		e := s.cache.Get(resource.ZoneType, zone)
		if e == nil {
			cancel(status.Errorf(codes.PermissionDenied, "zone %q was deleted on global", zone))
			return false
		}
		if en := e.Resource.Spec.(*meshv1.Zone).GetEnabled(); en != nil && !en.GetValue() {
			cancel(status.Errorf(codes.PermissionDenied, "zone %q was disabled on global", zone))
			return false
		}
		return true
	}
	select {
	case <-ctx.Done():
		return
	case <-s.cache.Ready():
	}
	// The cache may lag the direct read checkZone admitted the zone with: a
	// zone it does not hold yet is confirmed against the store before the
	// stream is cut. Later notifications come after the cache caught up.
	if s.cache.Get(resource.ZoneType, zone) == nil {
		if err := s.checkZone(ctx, zone); err != nil {
			if status.Code(err) == codes.PermissionDenied {
				cancel(status.Errorf(codes.PermissionDenied, "zone %q was deleted on global", zone))
				return
			}
		}
	} else if !check() {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.C():
			for _, k := range n.Take() {
				if k.Type == resource.ZoneType && k.Wire == zone && !check() {
					return
				}
			}
		}
	}
}

// presence writes the stream's lease-attached presence key and keeps the
// lease alive until ctx ends (done is closed then). When the lease is lost (etcd unavailable for
// longer than its TTL, or revoked), it grants a new one and writes the key
// again: a connected zone must not look offline, or retention could delete
// its resources while it is connected. The returned lease is the first;
// re-granted ones are revoked when ctx ends.
func (s *Server) presence(ctx context.Context, zone, subID string) (clientv3.LeaseID, <-chan struct{}, error) {
	first, ka, err := s.grantPresence(ctx, zone, subID)
	if err != nil {
		return 0, nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.keepPresence(ctx, zone, subID, first, ka)
	}()
	return first, done, nil
}

func (s *Server) grantPresence(ctx context.Context, zone, subID string) (clientv3.LeaseID, <-chan *clientv3.LeaseKeepAliveResponse, error) {
	cli := s.cfg.Store.Client()
	ttl := int64(s.cfg.LeaseTTL / time.Second)
	if ttl < 1 {
		ttl = 1
	}
	g, err := cli.Grant(ctx, ttl)
	if err != nil {
		return 0, nil, err
	}
	if _, err := cli.Put(ctx, PresencePrefix+zone+"/"+subID, s.cfg.InstanceID, clientv3.WithLease(g.ID)); err != nil {
		return 0, nil, err
	}
	ka, err := cli.KeepAlive(ctx, g.ID)
	if err != nil {
		return 0, nil, err
	}
	return g.ID, ka, nil
}

func (s *Server) keepPresence(ctx context.Context, zone, subID string, lease clientv3.LeaseID, ka <-chan *clientv3.LeaseKeepAliveResponse) {
	first := lease
	defer func() {
		if lease != first { // the first is revoked by Sync
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, _ = s.cfg.Store.Client().Revoke(rctx, lease)
		}
	}()
	log := s.cfg.Log.With("zone", zone, "subscription", subID)
	for {
		for range ka {
		}
		if ctx.Err() != nil {
			return
		}
		log.Warn("zone presence lease lost (etcd unavailable longer than --zone-lease-ttl, or the lease was revoked); re-granting it so the connected zone does not show offline")
		backoff := 100 * time.Millisecond
		for {
			l, ch, err := s.grantPresence(ctx, zone, subID)
			if err == nil {
				lease, ka = l, ch
				log.Info("zone presence restored")
				break
			}
			if ctx.Err() != nil {
				return
			}
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

// Online reports whether a zone has an open stream to some global replica.
func Online(ctx context.Context, cli *clientv3.Client, zone string) (bool, error) {
	resp, err := cli.Get(ctx, PresencePrefix+zone+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return false, err
	}
	return resp.Count > 0, nil
}

func (s *Server) flushInsight(ctx context.Context, zone, subID string, sess *protocol.Session) {
	t := time.NewTicker(s.cfg.InsightInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		types, changed := sess.Stats.Snapshot()
		if !changed {
			continue
		}
		if err := s.updateInsight(ctx, zone, func(zi *meshv1.ZoneInsight) {
			if cur := findSubscription(zi, subID); cur != nil {
				cur.Types = types
			}
		}); err != nil && ctx.Err() == nil {
			s.cfg.Log.Warn("could not update the zone's insight", "zone", zone, "error", err)
		}
	}
}

func (s *Server) updateInsight(ctx context.Context, zone string, fn func(*meshv1.ZoneInsight)) error {
	st := s.cfg.Store
	for attempt := 0; attempt < 10; attempt++ {
		cur, err := st.Get(ctx, resource.ZoneInsightType, "", zone)
		if store.IsNotFound(err) {
			r := resource.New(resource.ZoneInsightType, "", zone)
			fn(r.Spec.(*meshv1.ZoneInsight))
			if _, err := st.Create(ctx, r); store.IsAlreadyExists(err) {
				continue
			} else {
				return err
			}
		}
		if err != nil {
			return err
		}
		fn(cur.Spec.(*meshv1.ZoneInsight))
		if _, err := st.Update(ctx, cur); store.IsConflict(err) || store.IsNotFound(err) {
			continue
		} else {
			return err
		}
	}
	return fmt.Errorf("zone insight %s: too many concurrent updates", zone)
}

func addSubscription(zi *meshv1.ZoneInsight, sub *meshv1.ZoneInsight_Subscription) {
	zi.Subscriptions = append(zi.Subscriptions, sub)
	if n := len(zi.Subscriptions); n > maxSubscriptions {
		zi.Subscriptions = zi.Subscriptions[n-maxSubscriptions:]
	}
}

func findSubscription(zi *meshv1.ZoneInsight, id string) *meshv1.ZoneInsight_Subscription {
	for _, s := range zi.GetSubscriptions() {
		if s.GetId() == id {
			return s
		}
	}
	return nil
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// tokenRecheck is how often an open zone stream's token is verified again,
// so a revoked zone token (or a rotated signing key) ends the stream
// within seconds (pkg/token refreshes its deny-list in the background).
var tokenRecheck = 2 * time.Second

func (s *Server) recheckToken(ctx context.Context, zone, tok string, cancel context.CancelCauseFunc) {
	t := time.NewTicker(tokenRecheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.cfg.Keys.VerifyZone(ctx, tok, zone); token.IsInvalid(err) {
				s.cfg.Log.Info("closing zone stream: its token no longer verifies", "zone", zone, "reason", err.Error())
				cancel(status.Errorf(codes.Unauthenticated, "zone %q: %v; reconnect with a new zone token", zone, err))
				return
			}
		}
	}
}
