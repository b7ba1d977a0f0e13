package generator

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	originaldstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The inbound redirect listener of a transparently proxied Envoy sidecar
// (networking.transparentProxying.redirectPortInbound, 15006 for injected
// pods): the init container's iptables rules send every inbound TCP
// connection of the pod to that port, so the per-inbound listeners on
// <address>:<port> would never see one (and would collide with the
// application's own sockets). Instead, one listener on 0.0.0.0:<redirect
// port> recovers the original destination (the original_dst listener
// filter) and picks a filter chain by destination port: one per inbound,
// each exactly the inbound listener's chain (mTLS, RBAC, HTTP or TCP proxy
// to the same localhost cluster). A port that is no inbound matches no
// chain and the connection is closed: the pod's other ports are reachable
// only when excluded from redirection (weft.io/exclude-inbound-ports).

func inboundRedirectListenerName(port uint32) string { return fmt.Sprintf("inbound:redirect:%d", port) }

// inboundRedirect builds the redirect listener from the inbound listeners
// envoyInbound made (in inbound order, one per port).
func inboundRedirect(port uint32, inbound []*listenerv3.Listener, ports []uint32) *listenerv3.Listener {
	l := &listenerv3.Listener{
		Name:             inboundRedirectListenerName(port),
		Address:          socketAddress("0.0.0.0", port),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		// Redirected connections are accepted here: no hand-off to other
		// listeners (UseOriginalDst), the chains below serve them.
		UseOriginalDst: wrapperspb.Bool(false),
		ListenerFilters: []*listenerv3.ListenerFilter{{
			Name:       "envoy.filters.listener.original_dst",
			ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&originaldstv3.OriginalDst{})},
		}},
	}
	tlsInspector := false
	seen := map[uint32]bool{}
	for i, in := range inbound {
		if seen[ports[i]] {
			continue // inbounds on other addresses with the same port: the first one wins
		}
		seen[ports[i]] = true
		for _, fc := range in.GetFilterChains() {
			c := proto.Clone(fc).(*listenerv3.FilterChain)
			m := c.GetFilterChainMatch()
			if m == nil {
				m = &listenerv3.FilterChainMatch{}
			}
			if m.GetTransportProtocol() != "" {
				tlsInspector = true
			}
			m.DestinationPort = wrapperspb.UInt32(ports[i])
			c.FilterChainMatch = m
			c.Name = in.GetName()
			if fc.GetName() != "" {
				c.Name += ":" + fc.GetName()
			}
			l.FilterChains = append(l.FilterChains, c)
		}
	}
	if tlsInspector {
		l.ListenerFilters = append(l.ListenerFilters, &listenerv3.ListenerFilter{
			Name:       "envoy.filters.listener.tls_inspector",
			ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspectorv3.TlsInspector{})},
		})
	}
	return l
}
