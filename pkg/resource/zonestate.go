package resource

import (
	"time"

	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// Zone states reported with a zone's insight (REST "state").
const (
	ZoneOnline  = "online"
	ZoneOffline = "offline"
)

// ZoneState is the one rule for a zone's health as the API and weftctl
// report it: offline when the Zone is disabled on global (zone-sync refuses
// and ends its stream), when it never connected, or when its latest sync
// stream has ended; online while its latest stream is open. reason says
// why it is offline, with what to do; it is empty when online.
func ZoneState(z *meshv1.Zone, ins *meshv1.ZoneInsight) (state, reason string) {
	if en := z.GetEnabled(); en != nil && !en.GetValue() {
		return ZoneOffline, "disabled on global (enabled: false): zone-sync refuses its stream until it is enabled"
	}
	var last *meshv1.ZoneInsight_Subscription
	for _, s := range ins.GetSubscriptions() {
		if last == nil || !s.GetConnectTime().AsTime().Before(last.GetConnectTime().AsTime()) {
			last = s
		}
	}
	switch {
	case last == nil || last.GetConnectTime() == nil:
		return ZoneOffline, "never connected: start the zone's zone-sync with a zone token from this control plane (weftctl generate zone-token)"
	case last.GetDisconnectTime() != nil:
		return ZoneOffline, "disconnected since " + last.GetDisconnectTime().AsTime().UTC().Format(time.RFC3339) +
			": check the zone's zone-sync log (an expired or revoked zone token is refused: issue a new one)"
	}
	return ZoneOnline, ""
}

// DataplaneOnline is the one rule for a dataplane being online: its latest
// xDS subscription (by connect time) has connected and not disconnected.
// Insights live under etcd leases, so a dead xds-server's proxies have
// none and are offline.
func DataplaneOnline(ins *meshv1.DataplaneInsight) bool {
	var last *meshv1.DiscoverySubscription
	for _, s := range ins.GetSubscriptions() {
		if last == nil || !s.GetConnectTime().AsTime().Before(last.GetConnectTime().AsTime()) {
			last = s
		}
	}
	return last.GetConnectTime() != nil && last.GetDisconnectTime() == nil
}
