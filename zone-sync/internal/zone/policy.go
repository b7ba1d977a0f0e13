package zone

import (
	"context"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"

	"github.com/weftmesh/weft/zone-sync/internal/protocol"
)

// Rejection reasons on the zone side.
const (
	ReasonOwnResource = "own_resource"
	ReasonLocalOnly   = "control_plane_local"
)

// GlobalPolicy decides what a zone accepts from global: global-owned types
// (stored with origin "global") and other zones' ZoneIngresses (stored with
// their zone as origin), under the names global uses.
type GlobalPolicy struct {
	Zone  string
	Store *store.Store
}

func (p *GlobalPolicy) fromGlobal(r *resource.Resource) bool {
	o := r.Meta.GetOrigin()
	return o != "" && o != p.Zone
}

// InitialVersions lists what the zone holds from global.
func (p *GlobalPolicy) InitialVersions(ctx context.Context, t *resource.Type) (map[string]string, error) {
	items, _, err := p.Store.ListAll(ctx, t, "")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, r := range items {
		if !p.fromGlobal(r) {
			continue
		}
		w := protocol.WireName(t, r.Meta.GetMesh(), r.Meta.GetName())
		v, err := protocol.ResourceVersion(w, r)
		if err != nil {
			continue
		}
		out[w] = v
	}
	return out, nil
}

// Local sets the origin of what global sends.
func (p *GlobalPolicy) Local(in protocol.Incoming) (*resource.Resource, error) {
	r := in.Resource.Clone()
	t := r.Type()
	if protocol.LocalOnly(t, r.Meta.GetName()) {
		return nil, protocol.Reject(ReasonLocalOnly, "%s is local to each control plane and is never synced", in.Wire)
	}
	switch t.Owner {
	case resource.OwnerZone:
		if o := r.Meta.GetOrigin(); o == "" || o == protocol.GlobalOrigin || o == p.Zone {
			return nil, protocol.Reject(ReasonOwnResource, "%s: zone-owned resources from global must name another zone as origin, not %q", in.Wire, o)
		}
	case resource.OwnerGlobal:
		r.Meta.Origin = protocol.GlobalOrigin
	default:
		return nil, protocol.Reject(ReasonLocalOnly, "%s is local to each control plane and is never synced", t.Name)
	}
	return r, nil
}

// LocalName: global's names are kept.
func (p *GlobalPolicy) LocalName(t *resource.Type, wire string) (string, string, error) {
	return protocol.SplitName(t, wire)
}

// FromPeer: global may replace its own copies, and any global-owned type
// (a zone cannot own those; a leftover from before the zone joined is
// replaced by global's version), but never the zone's own resources.
func (p *GlobalPolicy) FromPeer(r *resource.Resource) bool {
	if t := r.Type(); t != nil && t.Owner == resource.OwnerGlobal {
		return true
	}
	return p.fromGlobal(r)
}
