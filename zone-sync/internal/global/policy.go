package global

import (
	"context"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	storev1 "github.com/weftmesh/weft/proto/gen/go/weft/store/v1"

	"github.com/weftmesh/weft/zone-sync/internal/protocol"
)

// Rejection reasons (weft_zonesync_rejected_total{reason}).
const (
	ReasonForeignOrigin = "foreign_origin"
	ReasonForeignZone   = "foreign_zone"
	ReasonNotZoneOwned  = "not_zone_owned"
	ReasonBadName       = "bad_name"
	ReasonUnknownMesh   = "unknown_mesh"
)

// LocalName is the name global stores a zone's resource under: the zone's
// name, a dot, and the zone's own name for it. Zone names are DNS labels
// (no dots), so names from different zones never collide.
func LocalName(zone, name string) string { return zone + "." + name }

// ZonePolicy decides what global accepts from one zone: only zone-owned
// types, only resources claiming that zone, stored as "<zone>.<name>" with
// meta.origin set to the zone in the normal keyspace.
type ZonePolicy struct {
	Zone  string
	Store *store.Store
	// MeshExists reports whether a mesh exists on global; a mesh-scoped
	// resource in any other mesh is refused. Nil: not checked.
	MeshExists func(mesh string) bool
}

// InitialVersions lists what global holds from the zone. It reads only the
// zone's keys (its names all start with "<zone>."): a keys-only range finds
// the meshes they are in, then one range per mesh reads the zone's values,
// so a reconnect costs O(the zone's resources), not O(every zone's). The
// version hashes the stored spec bytes, which the store wrote with the same
// deterministic encoding the zone hashed.
func (p *ZonePolicy) InitialVersions(ctx context.Context, t *resource.Type) (map[string]string, error) {
	cli := p.Store.Client()
	zp := p.Zone + "."
	var ranges []string
	var rev int64
	if t.MeshScoped() {
		keys, err := cli.Get(ctx, p.Store.TypePrefix(t, ""), clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			return nil, err
		}
		rev = keys.Header.Revision
		seen := map[string]bool{}
		for _, kv := range keys.Kvs {
			_, mesh, name, err := p.Store.ParseKey(string(kv.Key))
			if err != nil || seen[mesh] || !strings.HasPrefix(name, zp) {
				continue
			}
			seen[mesh] = true
			ranges = append(ranges, p.Store.TypePrefix(t, mesh)+zp)
		}
	} else {
		ranges = []string{p.Store.TypePrefix(t, "") + zp}
	}
	out := map[string]string{}
	for _, prefix := range ranges {
		opts := []clientv3.OpOption{clientv3.WithPrefix()}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := cli.Get(ctx, prefix, opts...)
		if err != nil {
			return nil, err
		}
		for _, kv := range resp.Kvs {
			_, mesh, name, err := p.Store.ParseKey(string(kv.Key))
			if err != nil {
				continue
			}
			sr := &storev1.StoredResource{}
			if proto.Unmarshal(kv.Value, sr) != nil || sr.GetSealed() != nil || sr.GetMeta().GetOrigin() != p.Zone {
				continue
			}
			w := protocol.WireName(t, mesh, strings.TrimPrefix(name, zp))
			out[w] = protocol.Version(w, sr.GetMeta().GetLabels(), sr.GetSpec())
		}
	}
	return out, nil
}

// Local checks that the zone may write the resource and names it.
func (p *ZonePolicy) Local(in protocol.Incoming) (*resource.Resource, error) {
	r := in.Resource.Clone()
	t := r.Type()
	if t.Owner != resource.OwnerZone {
		return nil, protocol.Reject(ReasonNotZoneOwned, "%s is owned by global; zones cannot write it", t.Name)
	}
	if o := r.Meta.GetOrigin(); o != "" && o != p.Zone {
		return nil, protocol.Reject(ReasonForeignOrigin, "%s claims origin %q but this stream is zone %q", in.Wire, o, p.Zone)
	}
	if z := r.Meta.GetLabels()[resource.ZoneTag]; z != "" && z != p.Zone {
		return nil, protocol.Reject(ReasonForeignZone, "%s is labelled %s=%s but this stream is zone %q", in.Wire, resource.ZoneTag, z, p.Zone)
	}
	if err := checkZoneTags(in.Wire, r.Spec, p.Zone); err != nil {
		return nil, err
	}
	if t.MeshScoped() && p.MeshExists != nil && !p.MeshExists(r.Meta.GetMesh()) {
		return nil, protocol.Reject(ReasonUnknownMesh, "%s is in mesh %q, which does not exist on global: create the Mesh on global first", in.Wire, clip(r.Meta.GetMesh()))
	}
	r.Meta.Name = LocalName(p.Zone, r.Meta.GetName())
	r.Meta.Origin = p.Zone
	if len(r.Meta.Name) > 253 {
		return nil, protocol.Reject(ReasonBadName, "%s: name too long once prefixed with the zone", in.Wire)
	}
	return r, nil
}

func checkZoneTags(wire string, spec any, zone string) error {
	bad := func(tags map[string]string) bool {
		z := tags[resource.ZoneTag]
		return z != "" && z != zone
	}
	switch s := spec.(type) {
	case *meshv1.ZoneIngress:
		if s.GetZone() != "" && s.GetZone() != zone {
			return protocol.Reject(ReasonForeignZone, "%s is zone %q's ingress but this stream is zone %q", wire, s.GetZone(), zone)
		}
	case *meshv1.Dataplane:
		n := s.GetNetworking()
		for _, in := range n.GetInbound() {
			if bad(in.GetTags()) {
				return protocol.Reject(ReasonForeignZone, "%s has an inbound tagged %s=%s but this stream is zone %q", wire, resource.ZoneTag, in.GetTags()[resource.ZoneTag], zone)
			}
		}
		if bad(n.GetGateway().GetTags()) {
			return protocol.Reject(ReasonForeignZone, "%s has a gateway tagged %s=%s but this stream is zone %q", wire, resource.ZoneTag, n.GetGateway().GetTags()[resource.ZoneTag], zone)
		}
	}
	return nil
}

// LocalName maps a removed name.
func (p *ZonePolicy) LocalName(t *resource.Type, wire string) (string, string, error) {
	mesh, name, err := protocol.SplitName(t, wire)
	if err != nil {
		return "", "", err
	}
	return mesh, LocalName(p.Zone, name), nil
}

// FromPeer: the zone may replace only what it sent.
func (p *ZonePolicy) FromPeer(r *resource.Resource) bool { return r.Meta.GetOrigin() == p.Zone }

// Filter says which resources global sends to a zone: global-owned ones
// (but never control-plane-local GlobalSecrets) and other zones'
// ZoneIngresses.
func Filter(zone string) func(*protocol.Entry) bool {
	return func(e *protocol.Entry) bool {
		o := e.Resource.Meta.GetOrigin()
		if e.Type == resource.ZoneIngressType {
			return o != "" && o != protocol.GlobalOrigin && o != zone
		}
		if protocol.LocalOnly(e.Type, e.Resource.Meta.GetName()) {
			return false
		}
		return e.Type.Owner == resource.OwnerGlobal && (o == "" || o == protocol.GlobalOrigin)
	}
}

// Origin is what global sends as a resource's origin: its own resources are
// "global"; zone resources keep their zone.
func Origin(e *protocol.Entry) string {
	if o := e.Resource.Meta.GetOrigin(); o != "" {
		return o
	}
	return protocol.GlobalOrigin
}
