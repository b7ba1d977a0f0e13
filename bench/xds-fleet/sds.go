package main

import (
	"sort"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/pkg/xdsnames"
)

// SDS as Envoy does it over ADS: the secrets a proxy subscribes to are the
// names its clusters' and listeners' TLS transport sockets refer to
// (sds_config: ads). A proxyless (grpc-like) proxy's certificates come
// from weft-dp, which asks for the two secrets by name (weft-dp/agent);
// the simulator asks for them on its one stream.

// grpcSecrets are the secrets weft-dp subscribes to for a proxyless proxy.
var grpcSecrets = []string{xdsnames.IdentityCertSecret, xdsnames.MeshCASecret}

// secretRefs adds to add the SDS secret names the CDS or LDS resources
// refer to.
func secretRefs(t string, res []*anypb.Any, add func(name string)) {
	switch t {
	case resourcev3.ClusterType:
		for _, a := range res {
			c := &clusterv3.Cluster{}
			if a.UnmarshalTo(c) != nil {
				continue
			}
			socketSecrets(c.GetTransportSocket(), add)
			for _, m := range c.GetTransportSocketMatches() {
				socketSecrets(m.GetTransportSocket(), add)
			}
		}
	case resourcev3.ListenerType:
		for _, a := range res {
			l := &listenerv3.Listener{}
			if a.UnmarshalTo(l) != nil {
				continue
			}
			for _, fc := range l.GetFilterChains() {
				socketSecrets(fc.GetTransportSocket(), add)
			}
			if fc := l.GetDefaultFilterChain(); fc != nil {
				socketSecrets(fc.GetTransportSocket(), add)
			}
		}
	}
}

func socketSecrets(ts *corev3.TransportSocket, add func(string)) {
	tc := ts.GetTypedConfig()
	if tc == nil {
		return
	}
	var common *tlsv3.CommonTlsContext
	up, down := &tlsv3.UpstreamTlsContext{}, &tlsv3.DownstreamTlsContext{}
	switch {
	case tc.MessageIs(up) && tc.UnmarshalTo(up) == nil:
		common = up.GetCommonTlsContext()
	case tc.MessageIs(down) && tc.UnmarshalTo(down) == nil:
		common = down.GetCommonTlsContext()
	default:
		return
	}
	for _, s := range common.GetTlsCertificateSdsSecretConfigs() {
		if s.GetSdsConfig() != nil {
			add(s.GetName())
		}
	}
	if s := common.GetValidationContextSdsSecretConfig(); s.GetSdsConfig() != nil {
		add(s.GetName())
	}
	if s := common.GetCombinedValidationContext().GetValidationContextSdsSecretConfig(); s.GetSdsConfig() != nil {
		add(s.GetName())
	}
}

// followSecrets updates the SDS subscription from a CDS or LDS response
// (under p.mu); true when it changed and must be sent.
func (p *proxy) followSecrets(t string, res []*anypb.Any) bool {
	if t != resourcev3.ClusterType && t != resourcev3.ListenerType {
		return false
	}
	set := map[string]bool{}
	secretRefs(t, res, func(n string) { set[n] = true })
	if p.secretsBy == nil {
		p.secretsBy = map[string][]string{}
	}
	p.secretsBy[t] = sortedKeys(set)
	for _, n := range p.secretsBy[resourcev3.ClusterType] {
		set[n] = true
	}
	for _, n := range p.secretsBy[resourcev3.ListenerType] {
		set[n] = true
	}
	names := sortedKeys(set)
	old, ok := p.names[resourcev3.SecretType]
	if !ok && len(names) == 0 {
		return false // mTLS off: no SDS at all
	}
	if ok && sameNames(old, names) {
		return false
	}
	p.names[resourcev3.SecretType] = names
	return len(names) > 0
}

func sortedKeys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
