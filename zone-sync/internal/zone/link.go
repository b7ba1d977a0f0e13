package zone

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// maxLinkSubscriptions is how many past streams the zone's record of its
// link to global keeps.
const maxLinkSubscriptions = 5

// maxLinkError bounds the recorded error text.
const maxLinkError = 512

// recordLink keeps the zone's own view of its link to global in its etcd:
// the ZoneInsight named after the zone (OwnerLocal: never synced), whose
// subscriptions are this zone's streams to global — the api-server's
// GET /global-insight. fn changes the subscription list. A failure is
// logged, never fatal: the link matters more than its record.
func (c *Client) recordLink(ctx context.Context, fn func(subs []*meshv1.ZoneInsight_Subscription) []*meshv1.ZoneInsight_Subscription) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for attempt := 0; attempt < 3; attempt++ {
		cur, err := c.cfg.Store.Get(ctx, resource.ZoneInsightType, "", c.cfg.Zone)
		var zi *meshv1.ZoneInsight
		switch {
		case store.IsNotFound(err):
			cur, zi = resource.New(resource.ZoneInsightType, "", c.cfg.Zone), &meshv1.ZoneInsight{}
		case err != nil:
			c.cfg.Log.Warn("could not read the record of the link to global", "error", err)
			return
		default:
			zi, _ = cur.Spec.(*meshv1.ZoneInsight)
			if zi == nil {
				zi = &meshv1.ZoneInsight{}
			}
		}
		subs := fn(zi.GetSubscriptions())
		if len(subs) > maxLinkSubscriptions {
			subs = subs[len(subs)-maxLinkSubscriptions:]
		}
		zi.Subscriptions = subs
		cur.Spec = zi
		if _, _, err = c.cfg.Store.Upsert(ctx, cur); err == nil {
			return
		}
		if !store.IsConflict(err) {
			c.cfg.Log.Warn("could not write the record of the link to global", "error", err)
			return
		}
	}
}

// linkError is the text recorded for why a stream ended.
func linkError(err error) string {
	msg := status.Convert(err).Message()
	if len(msg) > maxLinkError {
		msg = msg[:maxLinkError]
	}
	return msg
}

// linkConnected records a stream global welcomed.
func (c *Client) linkConnected(ctx context.Context, id, globalInstance string) {
	now := resource.Timestamp(time.Now())
	c.recordLink(ctx, func(subs []*meshv1.ZoneInsight_Subscription) []*meshv1.ZoneInsight_Subscription {
		return append(subs, &meshv1.ZoneInsight_Subscription{Id: id, GlobalInstanceId: globalInstance,
			ZoneInstanceId: c.cfg.InstanceID, ConnectTime: now, Version: c.cfg.Version})
	})
}

// linkEnded records why the stream id ended; a stream never welcomed (id
// "") is recorded as a refused attempt.
func (c *Client) linkEnded(ctx context.Context, id string, err error) {
	now := resource.Timestamp(time.Now())
	c.recordLink(ctx, func(subs []*meshv1.ZoneInsight_Subscription) []*meshv1.ZoneInsight_Subscription {
		if id != "" {
			for _, s := range subs {
				if s.GetId() == id {
					s.DisconnectTime, s.LastError = now, linkError(err)
					return subs
				}
			}
		}
		// Refused (or its record is gone): one entry, the latest refusal
		// replacing an earlier one so retries do not push streams out.
		if n := len(subs); n > 0 && subs[n-1].GetConnectTime() == nil {
			subs = subs[:n-1]
		}
		return append(subs, &meshv1.ZoneInsight_Subscription{Id: fmt.Sprintf("refused-%d", now.AsTime().UnixNano()),
			ZoneInstanceId: c.cfg.InstanceID, DisconnectTime: now, LastError: linkError(err), Version: c.cfg.Version})
	})
}
