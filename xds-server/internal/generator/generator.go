package generator

import (
	"fmt"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
)

// Generate builds the configuration of one proxy from its mesh's snapshot.
// Output lists are sorted by name and every resource passes ValidateAll.
func Generate(s *Snapshot, p *Proxy) (Resources, error) {
	if err := checkProxy(s, p); err != nil {
		return nil, err
	}
	var (
		out Resources
		err error
	)
	switch p.Kind {
	case KindGRPC:
		out, err = generateGRPC(s, p)
	case KindEnvoy, KindIngress, "":
		out, err = generateEnvoy(s, p)
	default:
		return nil, fmt.Errorf("unknown proxy kind %q", p.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("dataplane %s/%s: %w", p.Mesh, p.Name, err)
	}
	out.sort()
	skip := s.isShared
	if p.Reuse != nil {
		// Reused resources were validated when they were built.
		skip = func(res types.Resource) bool { return s.isShared(res) || reused(p, res) }
	}
	if err := out.validate(skip); err != nil {
		return nil, fmt.Errorf("dataplane %s/%s: generated invalid config: %w", p.Mesh, p.Name, err)
	}
	return out, nil
}

// checkProxy is what Generate checks before generating: the mesh, its
// shared pieces, the Dataplane and the tags its token requires.
func checkProxy(s *Snapshot, p *Proxy) error {
	if s == nil || s.MeshSpec == nil {
		return fmt.Errorf("mesh %q does not exist", p.Mesh)
	}
	if s.sharedErr != nil {
		return s.sharedErr
	}
	if p.Dataplane == nil {
		return fmt.Errorf("dataplane %s/%s does not exist", p.Mesh, p.Name)
	}
	for i, in := range p.Dataplane.GetNetworking().GetInbound() {
		for k, v := range p.RequiredTags {
			if in.GetTags()[k] != v {
				return fmt.Errorf("dataplane %s/%s: networking.inbound[%d] lacks tag %s=%s required by its token", p.Mesh, p.Name, i, k, v)
			}
		}
	}
	return nil
}
