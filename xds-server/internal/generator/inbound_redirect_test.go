package generator

import (
	"slices"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// A transparently proxied sidecar with an inbound redirect port gets one
// listener on it (original_dst) whose chains are matched by destination
// port, one per inbound, each proxying to that inbound's localhost cluster;
// no listener binds an inbound's <address>:<port>.
func TestInboundRedirectListener(t *testing.T) {
	s, p := loadInput(t, "testdata/30.input.yaml")
	res, err := Generate(s, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Validate(); err != nil {
		t.Fatal(err)
	}
	var redirect *listenerv3.Listener
	for _, r := range res[resourcev3.ListenerType] {
		l := r.(*listenerv3.Listener)
		if strings.HasPrefix(l.GetName(), "inbound:10.1.0.7:") {
			t.Errorf("listener %s binds an inbound address", l.GetName())
		}
		if l.GetName() == "inbound:redirect:15006" {
			redirect = l
		}
	}
	if redirect == nil {
		t.Fatal("no inbound:redirect:15006 listener")
	}
	if a := redirect.GetAddress().GetSocketAddress(); a.GetAddress() != "0.0.0.0" || a.GetPortValue() != 15006 {
		t.Errorf("address %v", a)
	}
	if lf := redirect.GetListenerFilters(); len(lf) != 1 || lf[0].GetName() != "envoy.filters.listener.original_dst" {
		t.Errorf("listener filters %v", lf)
	}
	var ports []uint32
	for _, fc := range redirect.GetFilterChains() {
		ports = append(ports, fc.GetFilterChainMatch().GetDestinationPort().GetValue())
		if fc.GetTransportSocket() == nil {
			t.Errorf("chain %s: no mTLS under strict mTLS", fc.GetName())
		}
	}
	if !slices.Equal(ports, []uint32{9090, 9091}) {
		t.Errorf("destination ports %v, want [9090 9091]", ports)
	}
	for _, c := range []string{"localhost:127.0.0.1:9090", "localhost:127.0.0.1:9091"} {
		if !slices.ContainsFunc(res[resourcev3.ClusterType], func(r types.Resource) bool { return r.(interface{ GetName() string }).GetName() == c }) {
			t.Errorf("no cluster %s", c)
		}
	}
}
