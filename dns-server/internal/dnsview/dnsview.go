// Package dnsview defines the views (store.View) dns-server's informers
// cache: only what the DNS table and the VIP allocator read, so a zone's
// Dataplanes and VirtualIPs cost little heap per name. Both consumers
// must ask the shared informers for these views (store.Informers.For
// panics on a mismatch).
//
// What each consumer reads, and so what the views keep:
//   - the table: a Dataplane's mesh, name and networking address; a
//     VirtualIP's mesh, name, ip and released time;
//   - the VIP allocator: a Dataplane's mesh, name and services
//     (resource.DataplaneServices: the service tags of its inbounds and of
//     its gateway); a VirtualIP's mesh, name, version, ip and released time.
package dnsview

import (
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// Dataplane keeps a Dataplane's identity, address and services.
var Dataplane = &store.View{Name: "dns-server dataplanes", Transform: dataplane}

// VirtualIP keeps a VirtualIP's identity, version, ip and released time.
var VirtualIP = &store.View{Name: "dns-server virtual IPs", Transform: virtualIP}

// meta keeps what identifies a resource and its version.
func meta(m *meshv1.Meta) *meshv1.Meta {
	return &meshv1.Meta{Type: m.GetType(), Mesh: m.GetMesh(), Name: m.GetName(), Version: m.GetVersion()}
}

func dataplane(r *resource.Resource) *resource.Resource {
	dp, ok := r.Spec.(*meshv1.Dataplane)
	if !ok {
		return nil // not a Dataplane: keep it as it is
	}
	n := dp.GetNetworking()
	out := &meshv1.Dataplane_Networking{Address: n.GetAddress()}
	// One inbound per service, holding only the service tag.
	seen := map[string]bool{}
	for _, in := range n.GetInbound() {
		if s := in.GetTags()[resource.ServiceTag]; s != "" && !seen[s] {
			seen[s] = true
			out.Inbound = append(out.Inbound, &meshv1.Dataplane_Networking_Inbound{Tags: map[string]string{resource.ServiceTag: s}})
		}
	}
	if s := n.GetGateway().GetTags()[resource.ServiceTag]; s != "" {
		out.Gateway = &meshv1.Dataplane_Networking_Gateway{Tags: map[string]string{resource.ServiceTag: s}}
	}
	return &resource.Resource{Meta: meta(r.Meta), Spec: &meshv1.Dataplane{Networking: out}}
}

func virtualIP(r *resource.Resource) *resource.Resource {
	v, ok := r.Spec.(*meshv1.VirtualIP)
	if !ok {
		return nil
	}
	return &resource.Resource{Meta: meta(r.Meta), Spec: &meshv1.VirtualIP{Service: v.GetService(), Ip: v.GetIp(), ReleasedTime: v.GetReleasedTime()}}
}
