package main

import (
	"context"
	"fmt"
	"time"

	"github.com/weftmesh/weft/pkg/xdsnames"
)

// Scenarios beyond the default run (issue 18): -mtls, -meshes and -churn.

// meshName is mesh m of a -meshes run ("default" style name with one).
func meshName(o options, m int) string {
	if o.meshes <= 1 {
		return o.mesh
	}
	return fmt.Sprintf("mesh-%d", m)
}

// meshSpec is the Mesh resource: builtin mTLS with -mtls.
func meshSpec(o options) map[string]any {
	m := map[string]any{"type": "Mesh"}
	if o.mtls {
		m["mtls"] = map[string]any{"enabledBackend": "ca-1",
			"backends": []any{map[string]any{"name": "ca-1", "type": "builtin"}}}
	}
	return m
}

// meshBlock is where mesh m's Dataplanes are: indices [from, from+size).
// Blocks start at multiples of the service count, so that Dataplane i's
// service svc-(i mod services) starts at svc-0 in every mesh (every mesh's
// proxies call their own svc-0, which has members).
func meshBlock(o options, m int) (from, size int) {
	meshes := max(o.meshes, 1)
	size = o.n / meshes
	if m < o.n%meshes {
		size++
	}
	stride := (o.n/meshes + 1 + o.services - 1) / o.services * o.services
	return m * stride, size
}

// setupFleet creates the meshes (mTLS per -mtls) and registers the
// Dataplanes with their tokens; it returns the proxies' specs, mesh by
// mesh.
func setupFleet(ctx context.Context, r *rest, o options) ([]proxySpec, error) {
	var specs []proxySpec
	for m := 0; m < max(o.meshes, 1); m++ {
		mesh := meshName(o, m)
		if _, err := r.do(ctx, "PUT", "/meshes/"+mesh, meshSpec(o)); err != nil {
			return nil, err
		}
		from, size := meshBlock(o, m)
		toks, err := registerDataplanes(ctx, r, mesh, from, from+size, o.services, o.conc)
		if err != nil {
			return nil, err
		}
		s := proxySpecs(mesh, o.kind, toks, from, o.services)
		for i := range s {
			s[i].GRPCSecrets = o.mtls && o.kind == xdsnames.KindGRPC
			s[i].Delta = o.delta
			s[i].Nack = nackPick(len(specs)+i, o.nack)
		}
		specs = append(specs, s...)
	}
	return specs, nil
}

// pushCheck is the proxies of the meshes a change does not touch, and the
// ACKs each had sent before it: a response reaching one of them (each is
// ACKed) is a push to an unaffected proxy.
type pushCheck struct {
	target *fleet // the changed mesh's proxies
	others []*proxy
	acks   []int64
}

// splitByMesh is the fleet's proxies in mesh (target) and the others.
func splitByMesh(f *fleet, mesh string) *pushCheck {
	pc := &pushCheck{target: &fleet{}}
	for _, p := range f.proxies {
		if p.spec.Mesh == mesh {
			pc.target.proxies = append(pc.target.proxies, p)
		} else {
			pc.others = append(pc.others, p)
		}
	}
	return pc
}

// arm records the unaffected proxies' ACK counts (before a change).
func (pc *pushCheck) arm() {
	pc.acks = pc.acks[:0]
	for _, p := range pc.others {
		pc.acks = append(pc.acks, p.acks.Load())
	}
}

// pushed counts the unaffected proxies that got a response since arm,
// after quiet has passed (the affected mesh has converged by then: a push
// to the others would be as fast, so a window of seconds catches it).
func (pc *pushCheck) pushed(ctx context.Context, quiet time.Duration) (proxies, responses int64) {
	select {
	case <-time.After(quiet):
	case <-ctx.Done():
	}
	for i, p := range pc.others {
		if d := p.acks.Load() - pc.acks[i]; d > 0 {
			proxies++
			responses += d
		}
	}
	return proxies, responses
}
