package inspect

import (
	"context"
	"sort"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/pkg/grpcx"
	"github.com/weftmesh/weft/pkg/policy"
	"github.com/weftmesh/weft/pkg/resource"
	inspectv1 "github.com/weftmesh/weft/proto/gen/go/weft/inspect/v1"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	"github.com/weftmesh/weft/xds-server/internal/generator"
	"github.com/weftmesh/weft/xds-server/internal/meshview"
)

// PreviewPolicy implements the RPC: nothing is stored; the mesh as this
// replica's model holds it is compared with the same mesh with the policy
// written.
func (s *Service) PreviewPolicy(ctx context.Context, req *inspectv1.PreviewPolicyRequest) (*inspectv1.PreviewPolicyResponse, error) {
	if err := s.authorize(ctx, "", ""); err != nil {
		return nil, err
	}
	p, err := previewResource(req)
	if err != nil {
		return nil, err
	}
	if err := s.ready(); err != nil {
		return nil, err
	}
	select {
	case previews <- struct{}{}:
		defer func() { <-previews }()
	default:
		return nil, status.Errorf(codes.ResourceExhausted, "%d policy previews are being computed on this xds-server: retry", MaxConcurrentPreviews)
	}
	mesh, t := p.Meta.GetMesh(), p.Type()
	limit := int(req.GetMaxProxies())
	if limit <= 0 || limit > MaxDiffedProxies {
		limit = MaxDiffedProxies
	}
	view := s.Views(mesh)
	if view == nil || view.Spec == nil {
		return nil, status.Errorf(codes.NotFound, "mesh %q not found", mesh)
	}
	out := &inspectv1.PreviewPolicyResponse{Mesh: mesh, Type: t.Name, Name: p.Meta.GetName(), InstanceId: s.Instance,
		TotalDataplanes: uint32(len(view.Dataplanes))}

	existing := append(append([]*resource.Resource(nil), view.TrafficPermissions...), view.Policies...)
	for _, e := range existing {
		if e.Type() == t && e.Meta.GetName() == p.Meta.GetName() {
			out.ReplacesExisting = true
		}
	}
	matched := map[string]bool{}
	for _, im := range policy.Explain(existing, view.Dataplanes, p) {
		matched[im.Dataplane] = true
		out.Impacts = append(out.Impacts, &inspectv1.Impact{Dataplane: im.Dataplane, Destination: im.Destination, Applies: im.Applies,
			LosesTo: nameOf(im.LosesTo), Replaces: nameOf(im.Replaces)})
	}
	out.MatchedDataplanes = uint32(len(matched))

	before := generator.FromView(mesh, view)
	after := generator.FromView(mesh, withPolicy(view, p))
	// Matched dataplanes first (the policy selects them), then the others
	// (destinations and callers change too), each by name.
	names := make([]string, 0, len(view.Dataplanes))
	for _, d := range view.Dataplanes {
		names = append(names, d.Meta.GetName())
	}
	sort.SliceStable(names, func(i, j int) bool {
		if matched[names[i]] != matched[names[j]] {
			return matched[names[i]]
		}
		return names[i] < names[j]
	})
	if len(names) > MaxComparedProxies {
		names = names[:MaxComparedProxies]
	}
	kinds := s.kinds(ctx, mesh)
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return nil, status.FromContextError(err).Err()
		}
		out.ComparedProxies++
		kind := kinds[name]
		if k, ok := s.Rec.Connected(generator.NodeID(mesh, name)); ok {
			kind = k
		}
		if kind == "" {
			kind = generator.KindEnvoy
		}
		d := diffProxy(before, after, mesh, name, kind)
		if d == nil {
			continue
		}
		out.ChangedProxies++
		if len(out.Diffs) < limit {
			out.Diffs = append(out.Diffs, d)
		}
	}
	return out, nil
}

// previewResource decodes and validates the request's policy.
func previewResource(req *inspectv1.PreviewPolicyRequest) (*resource.Resource, error) {
	a := req.GetPolicy()
	if a == nil {
		return nil, grpcx.InvalidArgument("no policy", resource.Cause{Field: "policy", Message: "required"})
	}
	var want *resource.Type
	if c := req.GetCollection(); c != "" {
		t, ok := resource.ByCollection(c)
		if !ok {
			t, ok = resource.ByName(c)
		}
		if !ok {
			return nil, grpcx.InvalidArgument("unknown collection", resource.Cause{Field: "collection", Message: "unknown collection " + c})
		}
		want = t
	}
	p, err := resource.FromAPI(a, want)
	if err != nil {
		return nil, err
	}
	if req.GetMesh() != "" {
		p.Meta.Mesh = req.GetMesh()
	}
	if req.GetName() != "" {
		p.Meta.Name = req.GetName()
	}
	if !policy.IsPolicy(p.Type()) {
		return nil, grpcx.InvalidArgument("not a policy", resource.Cause{Field: "type", Message: p.Type().Name + " is not a policy type"})
	}
	if err := resource.ValidateWrite(p); err != nil {
		return nil, err
	}
	return p, nil
}

func nameOf(r *resource.Resource) string {
	if r == nil {
		return ""
	}
	return r.Meta.GetName()
}

// withPolicy is view with p written (replacing a policy of its type and
// name).
func withPolicy(view *meshview.Mesh, p *resource.Resource) *meshview.Mesh {
	v := *view
	replace := func(list []*resource.Resource) []*resource.Resource {
		out := make([]*resource.Resource, 0, len(list)+1)
		for _, r := range list {
			if r.Type() == p.Type() && r.Meta.GetName() == p.Meta.GetName() {
				continue
			}
			out = append(out, r)
		}
		return append(out, p)
	}
	if p.Type() == resource.TrafficPermissionType {
		v.TrafficPermissions = replace(view.TrafficPermissions)
	} else {
		v.Policies = replace(view.Policies)
	}
	return &v
}

// kinds reads the mesh's proxies' kinds from their insights.
func (s *Service) kinds(ctx context.Context, mesh string) map[string]string {
	out := map[string]string{}
	if s.Store == nil {
		return out
	}
	list, _, err := s.Store.ListAll(ctx, resource.DataplaneInsightType, mesh)
	if err != nil {
		return out
	}
	for _, r := range list {
		if in, ok := r.Spec.(*meshv1.DataplaneInsight); ok && len(in.GetSubscriptions()) > 0 {
			out[r.Meta.GetName()] = kindOf(in)
		}
	}
	return out
}

// diffProxy compares a proxy's generated resources before and after; nil
// when nothing changes.
func diffProxy(before, after *generator.Snapshot, mesh, name, kind string) *inspectv1.ProxyDiff {
	gen := func(s *generator.Snapshot) (generator.Resources, error) {
		return generator.Generate(s, &generator.Proxy{Mesh: mesh, Name: name, Kind: kind, Dataplane: s.Dataplanes[name]})
	}
	b, berr := gen(before)
	a, aerr := gen(after)
	d := &inspectv1.ProxyDiff{Dataplane: name, ProxyKind: kind}
	if aerr != nil {
		if berr != nil && berr.Error() == aerr.Error() {
			return nil
		}
		d.Error = aerr.Error()
		return d
	}
	for _, typ := range generator.TypeURLs {
		td := diffType(typ, b[typ], a[typ])
		if td != nil {
			d.Types = append(d.Types, td)
		}
	}
	if len(d.Types) == 0 && berr == nil {
		return nil
	}
	return d
}

func diffType(typ string, before, after []types.Resource) *inspectv1.TypeDiff {
	old := make(map[string]types.Resource, len(before))
	for _, r := range before {
		old[cachev3.GetResourceName(r)] = r
	}
	td := &inspectv1.TypeDiff{TypeUrl: typ}
	seen := make(map[string]bool, len(after))
	for _, r := range after {
		n := cachev3.GetResourceName(r)
		seen[n] = true
		switch o, ok := old[n]; {
		case !ok:
			td.Added = append(td.Added, n)
		case !proto.Equal(o, r):
			td.Changed = append(td.Changed, n)
		}
	}
	for _, r := range before {
		if n := cachev3.GetResourceName(r); !seen[n] {
			td.Removed = append(td.Removed, n)
		}
	}
	if len(td.Added)+len(td.Changed)+len(td.Removed) == 0 {
		return nil
	}
	sort.Strings(td.Added)
	sort.Strings(td.Changed)
	sort.Strings(td.Removed)
	return td
}
