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
	return LinkState(ins)
}

// LinkState is the state of a zone's sync streams (a ZoneInsight, on
// global or the zone's own record of its link to global): online while
// the latest stream is open; otherwise offline with why — never
// connected, refused since T (with global's answer, e.g. an expired zone
// token), or disconnected since T (with the error, when recorded).
func LinkState(ins *meshv1.ZoneInsight) (state, reason string) {
	var last *meshv1.ZoneInsight_Subscription
	at := func(s *meshv1.ZoneInsight_Subscription) time.Time {
		if s.GetConnectTime() != nil {
			return s.GetConnectTime().AsTime()
		}
		return s.GetDisconnectTime().AsTime()
	}
	for _, s := range ins.GetSubscriptions() {
		if last == nil || !at(s).Before(at(last)) {
			last = s
		}
	}
	since := func() string { return last.GetDisconnectTime().AsTime().UTC().Format(time.RFC3339) }
	detail := func(hint string) string {
		if e := last.GetLastError(); e != "" {
			return ": " + e
		}
		return hint
	}
	switch {
	case last == nil || (last.GetConnectTime() == nil && last.GetDisconnectTime() == nil):
		return ZoneOffline, "never connected: start the zone's zone-sync with a zone token from the global control plane (weftctl generate zone-token)"
	case last.GetConnectTime() == nil:
		return ZoneOffline, "refused since " + since() + detail("") + " (an expired or revoked zone token needs a new one: weftctl generate zone-token on global)"
	case last.GetDisconnectTime() != nil:
		return ZoneOffline, "disconnected since " + since() + detail(": check the zone's zone-sync log (an expired or revoked zone token is refused: issue a new one)")
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
