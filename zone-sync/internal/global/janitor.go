package global

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"

	"github.com/weftmesh/weft/zone-sync/internal/protocol"
)

// janitor removes what zones sent once they are gone for good: when an
// operator deleted the Zone, or (with a retention) when the zone has been
// offline longer than the retention. A zone that is merely away keeps its
// resources on global.
func (s *Server) janitor(ctx context.Context) {
	t := time.NewTicker(s.cfg.JanitorInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Log.Warn("janitor: sweep failed", "error", err)
		}
	}
}

// Sweep runs one janitor pass.
func (s *Server) Sweep(ctx context.Context) error {
	st := s.cfg.Store
	zones, _, err := st.ListAll(ctx, resource.ZoneType, "")
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, z := range zones {
		keep[z.Meta.GetName()] = true
	}
	if s.cfg.Retention > 0 {
		insights, _, err := st.ListAll(ctx, resource.ZoneInsightType, "")
		if err != nil {
			return err
		}
		for _, zi := range insights {
			zone := zi.Meta.GetName()
			if !keep[zone] {
				continue
			}
			online, err := Online(ctx, st.Client(), zone)
			if err != nil || online {
				s.mu.Lock()
				delete(s.offlineSince, zone)
				s.mu.Unlock()
				continue
			}
			// Offline since this janitor first saw it so, at the earliest:
			// a presence lease lost and re-granted (a brief gap) never
			// counts the time the zone was connected as offline time.
			s.mu.Lock()
			since, ok := s.offlineSince[zone]
			if !ok {
				since = time.Now()
				s.offlineSince[zone] = since
			}
			s.mu.Unlock()
			if last := lastSeen(zi.Spec.(*meshv1.ZoneInsight)); !last.IsZero() && time.Since(last) > s.cfg.Retention && time.Since(since) > s.cfg.Retention {
				s.cfg.Log.Info("janitor: zone offline past the retention; removing its resources", "zone", zone, "lastSeen", last)
				keep[zone] = false
			}
		}
	}
	for _, t := range protocol.UpTypes() {
		items, _, err := st.ListAll(ctx, t, "")
		if err != nil {
			return err
		}
		for _, r := range items {
			o := r.Meta.GetOrigin()
			if o == "" || o == protocol.GlobalOrigin || keep[o] {
				continue
			}
			if err := st.Delete(ctx, t, r.Meta.GetMesh(), r.Meta.GetName(), r.Meta.GetVersion()); err != nil && !store.IsNotFound(err) && !store.IsConflict(err) {
				return err
			}
		}
	}
	return nil
}

func lastSeen(zi *meshv1.ZoneInsight) time.Time {
	var last time.Time
	for _, s := range zi.GetSubscriptions() {
		for _, ts := range []*timestamppb.Timestamp{s.GetConnectTime(), s.GetDisconnectTime()} {
			if ts.IsValid() && ts.AsTime().After(last) {
				last = ts.AsTime()
			}
		}
	}
	return last
}
