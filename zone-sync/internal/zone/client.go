// Package zone is zone-sync's zone side: it keeps one stream open to global
// (reconnecting with backoff), applies what global sends as read-only
// copies, and sends the zone's own Dataplanes, ZoneIngresses and
// DataplaneInsights up. While global is away the zone keeps everything it
// has.
package zone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	syncv1 "github.com/weftmesh/weft/proto/gen/go/weft/sync/v1"

	"github.com/weftmesh/weft/zone-sync/internal/protocol"
)

// Config sets up the zone side.
type Config struct {
	Store         *store.Store
	Zone          string
	GlobalAddress string
	// Token returns the zone token; it is called on every connect, so a
	// rotated token file is picked up.
	Token       func() (string, error)
	DialOptions []grpc.DialOption
	Metrics     *protocol.Metrics
	// TracerProvider traces each sync response (nil: none).
	TracerProvider trace.TracerProvider
	Log            *slog.Logger
	InstanceID     string
	Version        string
	// MinBackoff and MaxBackoff bound the wait between reconnects.
	MinBackoff, MaxBackoff time.Duration
	// LeaderElection makes the zone's zone-sync replicas elect one (through
	// the zone's etcd) that holds the stream; the others wait. LeaderTTL is
	// how long a dead leader holds on (default 10s).
	LeaderElection bool
	LeaderTTL      time.Duration
}

// LeaderKey is the etcd election prefix of a zone's zone-sync replicas.
const LeaderKey = "/weft/zone-sync/leader"

// Client links the zone to global.
type Client struct {
	cfg       Config
	connected atomic.Bool
	lastErr   atomic.Value
}

// New returns a client; Run connects.
func New(cfg Config) *Client {
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	cfg.Log = cfg.Log.With("component", "zone-sync-zone", "zone", cfg.Zone)
	return &Client{cfg: cfg}
}

// Connected reports whether a stream to global is up.
func (c *Client) Connected() bool { return c.connected.Load() }

// LastError is why the last stream ended (or was refused), or nil.
func (c *Client) LastError() error {
	if e, ok := c.lastErr.Load().(errorValue); ok {
		return e.error
	}
	return nil
}

// Run keeps a stream to global open until ctx ends (while leader, with
// leader election).
func (c *Client) Run(ctx context.Context) error {
	if !c.cfg.LeaderElection {
		return c.run(ctx)
	}
	ttl := int(c.cfg.LeaderTTL / time.Second)
	if ttl < 1 {
		ttl = 10
	}
	for ctx.Err() == nil {
		sess, err := concurrency.NewSession(c.cfg.Store.Client(), concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
		if err != nil {
			c.cfg.Log.Warn("leader election: no etcd session, retrying", "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		el := concurrency.NewElection(sess, LeaderKey)
		c.cfg.Log.Info("leader election: campaigning", "instance", c.cfg.InstanceID)
		if err := el.Campaign(ctx, c.cfg.InstanceID); err != nil {
			sess.Close()
			continue
		}
		c.cfg.Log.Info("leader election: leading; linking the zone to global", "instance", c.cfg.InstanceID)
		lctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-sess.Done():
				c.cfg.Log.Warn("leader election: lost the etcd session; stepping down")
			case <-lctx.Done():
			}
			cancel()
		}()
		err = c.run(lctx)
		cancel()
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = el.Resign(rctx)
		rcancel()
		sess.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *Client) run(ctx context.Context) error {
	conn, err := grpc.NewClient(c.cfg.GlobalAddress, c.cfg.DialOptions...)
	if err != nil {
		return fmt.Errorf("global address %q: %w", c.cfg.GlobalAddress, err)
	}
	defer conn.Close()
	// A fresh cache per term: a replica that regains the lead must not
	// serve what it saw in an earlier term.
	cache := protocol.NewCache(c.cfg.Store, protocol.UpTypes(), c.cfg.Log)
	cacheDone := make(chan struct{})
	go func() {
		defer close(cacheDone)
		_ = cache.Run(ctx)
	}()
	defer func() { <-cacheDone }()

	backoff := c.cfg.MinBackoff
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			c.cfg.Metrics.Reconnects.WithLabelValues(c.cfg.Zone).Inc()
		}
		start := time.Now()
		welcomed, err := c.connect(ctx, conn, cache)
		if ctx.Err() != nil {
			return nil
		}
		if !welcomed {
			c.linkEnded(ctx, "", err)
		}
		c.lastErr.Store(errorValue{err})
		if welcomed && time.Since(start) > 5*time.Second {
			backoff = c.cfg.MinBackoff
		}
		st := status.Convert(err)
		switch st.Code() {
		case codes.Unauthenticated, codes.PermissionDenied:
			// Refused: nothing will change until an operator acts, so do
			// not hammer global.
			c.cfg.Log.Error("global refused the zone", "code", st.Code().String(), "reason", st.Message())
			backoff = c.cfg.MaxBackoff
		default:
			c.cfg.Log.Warn("stream to global ended; keeping the last state and reconnecting", "error", err, "retryIn", backoff)
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
}

type errorValue struct{ error }

// connect runs one stream; welcomed reports whether global admitted it.
func (c *Client) connect(ctx context.Context, conn *grpc.ClientConn, cache *protocol.Cache) (welcomed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tok, err := c.cfg.Token()
	if err != nil {
		return false, status.Errorf(codes.Unauthenticated, "read zone token: %v", err)
	}
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	stream, err := syncv1.NewZoneSyncServiceClient(conn).Sync(ctx,
		grpc.MaxCallRecvMsgSize(protocol.MaxMessageSize), grpc.MaxCallSendMsgSize(protocol.MaxMessageSize))
	if err != nil {
		return false, err
	}
	if err := stream.Send(&syncv1.SyncMessage{Message: &syncv1.SyncMessage_Hello{Hello: &syncv1.Hello{
		Zone: c.cfg.Zone, InstanceId: c.cfg.InstanceID, Version: c.cfg.Version}}}); err != nil {
		_, rerr := stream.Recv() // the status says why
		return false, errors.Join(err, rerr)
	}
	m, err := stream.Recv()
	if err != nil {
		return false, err
	}
	w := m.GetWelcome()
	if w == nil {
		return false, status.Error(codes.InvalidArgument, "global did not answer Hello with Welcome")
	}
	c.cfg.Log.Info("connected to global", "globalInstance", w.GetGlobalInstanceId(), "subscription", w.GetSubscriptionId())
	subID := w.GetSubscriptionId()
	if subID == "" {
		subID = fmt.Sprintf("stream-%d", time.Now().UnixNano())
	}
	c.linkConnected(ctx, subID, w.GetGlobalInstanceId())
	defer func() { c.linkEnded(ctx, subID, err) }()
	c.connected.Store(true)
	c.cfg.Metrics.Streams.WithLabelValues(c.cfg.Zone).Inc()
	defer func() {
		c.connected.Store(false)
		c.cfg.Metrics.Streams.WithLabelValues(c.cfg.Zone).Dec()
	}()
	sess := protocol.NewSession(protocol.SessionConfig{
		Peer: c.cfg.Zone, Log: c.cfg.Log, Metrics: c.cfg.Metrics, Store: c.cfg.Store,
		TracerProvider: c.cfg.TracerProvider,
		Cache:          cache, Serve: protocol.UpTypes(), Filter: Filter(c.cfg.Zone),
		Origin: func(*protocol.Entry) string { return c.cfg.Zone }, SendDirection: protocol.Up,
		Receive: protocol.DownTypes(), Policy: &GlobalPolicy{Zone: c.cfg.Zone, Store: c.cfg.Store}, RecvDirection: protocol.Down,
	})
	err = sess.Run(ctx, stream)
	if err == nil {
		err = errors.New("stream closed")
	}
	return true, err
}

// Filter says what a zone sends up: its own zone-owned resources, not the
// copies of other zones' ones global sent down.
func Filter(zone string) func(*protocol.Entry) bool {
	return func(e *protocol.Entry) bool {
		o := e.Resource.Meta.GetOrigin()
		return e.Type.Owner == resource.OwnerZone && (o == "" || o == zone)
	}
}
