package resource

import (
	"sort"

	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// DataplaneServices is the identity rule: the distinct weft.io/service
// values a Dataplane is (and so the SPIFFE IDs its certificate carries, the
// services it serves, the names dns-server gives a VIP), sorted. Every tag
// set that feeds an identity counts: each inbound's and the gateway's.
// Outbounds are what the dataplane calls, not what it is, and do not count.
//
// This is the one definition: ca-service (certificate SANs), api-server
// (token binding of dataplane writes), xds-server (which certificate it asks
// for), dns-server (VIPs) and weftctl (columns) all call it.
func DataplaneServices(dp *meshv1.Dataplane) []string {
	set := map[string]bool{}
	for _, in := range dp.GetNetworking().GetInbound() {
		if s := in.GetTags()[ServiceTag]; s != "" {
			set[s] = true
		}
	}
	if s := dp.GetNetworking().GetGateway().GetTags()[ServiceTag]; s != "" {
		set[s] = true
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}
