package main

import (
	"context"
	"sort"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

// Delta xDS (-delta) as Envoy speaks it with ads_config api_type
// DELTA_GRPC: one DeltaAggregatedResources stream; CDS and LDS are
// wildcard subscriptions (a first request with no names: go-control-plane
// keeps the legacy wildcard meaning), EDS, RDS and SDS subscribe and
// unsubscribe by name as clusters, listeners and their TLS contexts refer
// to them. Each DeltaDiscoveryResponse is applied to what the proxy holds
// (added or updated resources by name, removed names dropped) and ACKed
// with its nonce; a reconnecting proxy sends the per-resource versions it
// holds as initial_resource_versions.
//
// The proxy's acked[t] is then the whole state of type t after the ACKed
// response, so "configured" and a scenario's "converged" mean what they
// mean over SotW: every subscribed type ACKed, and the ACK of a response
// after which the proxy holds the change.
//
// gRPC's xDS clients (grpc-go, grpc-java, grpc-c++) speak SotW, so
// -delta is Envoy-like only.

// deltaStream serves one delta ADS stream until it ends; got: a response
// arrived.
func (p *proxy) deltaStream(ctx context.Context) (got bool, _ error) {
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+p.spec.Token))
	defer cancel()
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(p.conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return false, err
	}
	p.streams.Add(1)
	p.streamStarted()
	p.mu.Lock()
	if _, ok := p.names[resourcev3.ClusterType]; !ok {
		p.names[resourcev3.ClusterType] = nil
		p.names[resourcev3.ListenerType] = nil
	}
	var first []*discoveryv3.DeltaDiscoveryRequest
	for _, t := range typeOrder {
		n, ok := p.names[t]
		if !ok || (n != nil && len(n) == 0) {
			continue
		}
		held := p.heldVersions(t)
		if n != nil && len(held) > 0 && p.rs.streamTypes != nil {
			if p.rs.deltaHeld == nil {
				p.rs.deltaHeld = map[string]bool{}
			}
			p.rs.deltaHeld[t] = true
		}
		first = append(first, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResourceNamesSubscribe: n, InitialResourceVersions: held})
	}
	p.mu.Unlock()
	for i, r := range first {
		if i == 0 {
			r.Node = p.node()
		}
		if err := s.Send(r); err != nil {
			return false, err
		}
	}
	for {
		resp, err := s.Recv()
		if err != nil {
			return got, err
		}
		got = true
		now := time.Now()
		p.mu.Lock()
		if p.firstResp.IsZero() {
			p.firstResp = now
		}
		t := resp.GetTypeUrl()
		next := applyDelta(p.held[t], resp)
		state := &discoveryv3.DiscoveryResponse{TypeUrl: t, VersionInfo: resp.GetSystemVersionInfo(), Nonce: resp.GetNonce(), Resources: heldList(next)}
		if p.shouldNack(t, state.GetResources()) {
			// Rejected: the proxy keeps what it held; a delta NACK is
			// the rejected response's nonce with error_detail.
			p.mu.Unlock()
			if err := s.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResponseNonce: resp.GetNonce(), ErrorDetail: status.New(codes.InvalidArgument, nackMessage).Proto()}); err != nil {
				return got, err
			}
			continue
		}
		p.held[t] = next
		// As Envoy: subscriptions of the referenced types change first,
		// then the ACK.
		var follow []*discoveryv3.DeltaDiscoveryRequest
		for typ, names := range referenced(t, state.GetResources()) {
			if typ == resourcev3.ClusterType || typ == resourcev3.ListenerType {
				continue // wildcard
			}
			if r := p.resubscribe(typ, names); r != nil {
				follow = append(follow, r)
			}
		}
		oldSecrets := p.names[resourcev3.SecretType]
		if p.followSecrets(t, state.GetResources()) || len(oldSecrets) > len(p.names[resourcev3.SecretType]) {
			newSecrets := p.names[resourcev3.SecretType]
			p.names[resourcev3.SecretType] = oldSecrets
			if r := p.resubscribe(resourcev3.SecretType, newSecrets); r != nil {
				follow = append(follow, r)
			}
		}
		prev := p.acked[t]
		p.acked[t] = state
		full := p.isFull()
		p.mu.Unlock()
		for _, r := range follow {
			if err := s.Send(r); err != nil {
				return got, err
			}
		}
		if err := s.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResponseNonce: resp.GetNonce()}); err != nil {
			return got, err
		}
		p.acked1(t, prev, state, full)
	}
}

// resubscribe sets typ's subscription to names (under p.mu) and returns
// the delta request that changes it (nil: unchanged). Unsubscribed
// resources are dropped from what the proxy holds, as Envoy does.
func (p *proxy) resubscribe(typ string, names []string) *discoveryv3.DeltaDiscoveryRequest {
	old, had := p.names[typ]
	if had && sameNames(old, names) {
		return nil
	}
	if names == nil {
		names = []string{} // a named type never turns wildcard
	}
	p.names[typ] = names
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	was := map[string]bool{}
	r := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ}
	for _, n := range old {
		was[n] = true
		if !want[n] {
			r.ResourceNamesUnsubscribe = append(r.ResourceNamesUnsubscribe, n)
		}
	}
	for _, n := range names {
		if !was[n] {
			r.ResourceNamesSubscribe = append(r.ResourceNamesSubscribe, n)
		}
	}
	if len(r.ResourceNamesUnsubscribe) > 0 {
		h := map[string]*discoveryv3.Resource{}
		for n, res := range p.held[typ] {
			if want[n] {
				h[n] = res
			}
		}
		p.held[typ] = h
		if a := p.acked[typ]; a != nil {
			p.acked[typ] = &discoveryv3.DiscoveryResponse{TypeUrl: typ, VersionInfo: a.GetVersionInfo(), Nonce: a.GetNonce(), Resources: heldList(h)}
		}
	}
	if len(r.ResourceNamesSubscribe) == 0 && len(r.ResourceNamesUnsubscribe) == 0 {
		return nil
	}
	return r
}

// applyDelta is held with resp applied (a new map: held is not changed,
// so a NACKed response leaves it as it was).
func applyDelta(held map[string]*discoveryv3.Resource, resp *discoveryv3.DeltaDiscoveryResponse) map[string]*discoveryv3.Resource {
	next := make(map[string]*discoveryv3.Resource, len(held)+len(resp.GetResources()))
	for n, r := range held {
		next[n] = r
	}
	for _, n := range resp.GetRemovedResources() {
		delete(next, n)
	}
	for _, r := range resp.GetResources() {
		next[r.GetName()] = r
	}
	return next
}

// heldList is the held resources sorted by name.
func heldList(held map[string]*discoveryv3.Resource) []*anypb.Any {
	names := make([]string, 0, len(held))
	for n := range held {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]*anypb.Any, 0, len(names))
	for _, n := range names {
		out = append(out, held[n].GetResource())
	}
	return out
}

// heldVersions is what a reconnecting proxy tells the server it holds of
// typ (under p.mu).
func (p *proxy) heldVersions(typ string) map[string]string {
	if len(p.held[typ]) == 0 {
		return nil
	}
	v := make(map[string]string, len(p.held[typ]))
	for n, r := range p.held[typ] {
		v[n] = r.GetVersion()
	}
	return v
}
