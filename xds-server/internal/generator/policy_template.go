package generator

import (
	"fmt"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// MaxTemplateValue bounds one resource or modification value of a
// ProxyTemplate (it is parsed for every snapshot that uses it).
const MaxTemplateValue = 256 << 10

// templateTypes are the resource types a ProxyTemplate may add.
var templateTypes = map[string]bool{
	resourcev3.ClusterType: true, resourcev3.EndpointType: true, resourcev3.ListenerType: true, resourcev3.RouteType: true,
}

// parsedTemplate is a ProxyTemplate with its values decoded once per
// snapshot.
type parsedTemplate struct {
	name      string
	resources []types.Resource // with their type URL in typeURLs
	typeURLs  []string
	mods      []parsedMod
	err       error
}

type parsedMod struct {
	typ, op, name, origin string
	value                 proto.Message // nil for remove
}

func decodeYAML(field, text string, into proto.Message) error {
	if len(text) > MaxTemplateValue {
		return fmt.Errorf("%s: %d bytes, more than %d", field, len(text), MaxTemplateValue)
	}
	js, err := yaml.YAMLToJSON([]byte(text))
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js, into); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	return nil
}

func parseTemplate(r *resource.Resource) *parsedTemplate {
	pt := &parsedTemplate{name: r.Meta.GetName()}
	conf := r.Spec.(*meshv1.ProxyTemplate).GetConf()
	for i, res := range conf.GetResources() {
		field := fmt.Sprintf("conf.resources[%d].resource", i)
		a := &anypb.Any{}
		if err := decodeYAML(field, res.GetResource(), a); err != nil {
			pt.err = err
			return pt
		}
		if !templateTypes[a.GetTypeUrl()] {
			pt.err = fmt.Errorf("%s: type %q cannot be added (Cluster, ClusterLoadAssignment, Listener, RouteConfiguration)", field, a.GetTypeUrl())
			return pt
		}
		m, err := a.UnmarshalNew()
		if err != nil {
			pt.err = fmt.Errorf("%s: %w", field, err)
			return pt
		}
		pt.resources = append(pt.resources, m.(types.Resource))
		pt.typeURLs = append(pt.typeURLs, a.GetTypeUrl())
	}
	for i, mod := range conf.GetModifications() {
		pm := parsedMod{typ: mod.GetType(), op: mod.GetOperation(), name: mod.GetMatch().GetName(), origin: mod.GetMatch().GetOrigin()}
		if pm.op != "remove" {
			var v proto.Message
			switch pm.typ {
			case "cluster":
				v = &clusterv3.Cluster{}
			case "listener":
				v = &listenerv3.Listener{}
			case "networkFilter":
				v = &listenerv3.Filter{}
			case "httpFilter":
				v = &hcmv3.HttpFilter{}
			case "virtualHost":
				v = &routev3.VirtualHost{}
			default:
				pt.err = fmt.Errorf("conf.modifications[%d].type: %q is not one of cluster, listener, networkFilter, httpFilter, virtualHost", i, pm.typ)
				return pt
			}
			if err := decodeYAML(fmt.Sprintf("conf.modifications[%d].value", i), mod.GetValue(), v); err != nil {
				pt.err = err
				return pt
			}
			pm.value = v
		}
		pt.mods = append(pt.mods, pm)
	}
	return pt
}

// template returns a ProxyTemplate decoded, once per snapshot.
func (s *Snapshot) template(r *resource.Resource) *parsedTemplate {
	if v, ok := s.pol.templates.Load(r); ok {
		return v.(*parsedTemplate)
	}
	v, _ := s.pol.templates.LoadOrStore(r, parseTemplate(r))
	return v.(*parsedTemplate)
}

// applyProxyTemplate applies the most specific ProxyTemplate selecting the
// proxy: its resources are added, then its modifications run in order.
// Generated resources are never changed in place (they may be shared): a
// modified one is a copy. Any error, and any resource the template leaves
// invalid, fails the generation: the proxy keeps its previous
// configuration, and the error names the template.
func applyProxyTemplate(out Resources, s *Snapshot, sel *outboundSelector) error {
	tr := sel.template
	if tr == nil {
		return nil
	}
	pt := s.template(tr)
	if err := pt.apply(out); err != nil {
		return fmt.Errorf("ProxyTemplate %s: %w", pt.name, err)
	}
	if err := out.validate(s.isShared); err != nil {
		return fmt.Errorf("ProxyTemplate %s leaves the configuration invalid: %w", pt.name, err)
	}
	return nil
}

func (pt *parsedTemplate) apply(out Resources) error {
	if pt.err != nil {
		return pt.err
	}
	for i, r := range pt.resources {
		out.add(pt.typeURLs[i], proto.Clone(r).(types.Resource))
	}
	for i, m := range pt.mods {
		if err := m.apply(out); err != nil {
			return fmt.Errorf("conf.modifications[%d]: %w", i, err)
		}
	}
	return nil
}

func originOfListener(l *listenerv3.Listener) string {
	if l.GetTrafficDirection() == corev3.TrafficDirection_INBOUND {
		return "inbound"
	}
	return "outbound"
}

func originOfCluster(c *clusterv3.Cluster) string {
	if strings.HasPrefix(c.GetName(), "localhost:") {
		return "inbound"
	}
	return "outbound"
}

func (m parsedMod) matches(name, origin string) bool {
	return (m.name == "" || m.name == name) && (m.origin == "" || m.origin == origin)
}

// each rewrites the resources of one type: f returns the replacement
// (nil drops it).
func each(out Resources, typeURL string, f func(types.Resource) (types.Resource, error)) error {
	var kept []types.Resource
	for _, res := range out[typeURL] {
		r, err := f(res)
		if err != nil {
			return err
		}
		if r != nil {
			kept = append(kept, r)
		}
	}
	out[typeURL] = kept
	return nil
}

func (m parsedMod) apply(out Resources) error {
	switch m.typ {
	case "cluster", "listener":
		typeURL := resourcev3.ClusterType
		if m.typ == "listener" {
			typeURL = resourcev3.ListenerType
		}
		if m.op == "add" {
			out.add(typeURL, proto.Clone(m.value).(types.Resource))
			return nil
		}
		return each(out, typeURL, func(res types.Resource) (types.Resource, error) {
			origin := ""
			switch r := res.(type) {
			case *clusterv3.Cluster:
				origin = originOfCluster(r)
			case *listenerv3.Listener:
				origin = originOfListener(r)
			}
			if !m.matches(cachev3.GetResourceName(res), origin) {
				return res, nil
			}
			if m.op == "remove" {
				return nil, nil
			}
			cp := proto.Clone(res)
			mergePatch(cp, m.value)
			return cp.(types.Resource), nil
		})
	case "networkFilter":
		return each(out, resourcev3.ListenerType, func(res types.Resource) (types.Resource, error) {
			l := res.(*listenerv3.Listener)
			if m.origin != "" && m.origin != originOfListener(l) {
				return l, nil
			}
			cp := proto.Clone(l).(*listenerv3.Listener)
			for _, fc := range cp.GetFilterChains() {
				fc.Filters = m.filters(fc.GetFilters())
			}
			return cp, nil
		})
	case "httpFilter", "virtualHost":
		return each(out, resourcev3.ListenerType, func(res types.Resource) (types.Resource, error) {
			l := res.(*listenerv3.Listener)
			if m.origin != "" && m.origin != originOfListener(l) {
				return l, nil
			}
			return withHCM(l, func(h *hcmv3.HttpConnectionManager) {
				if m.typ == "httpFilter" {
					h.HttpFilters = m.httpFilters(h.GetHttpFilters())
				} else if rc := h.GetRouteConfig(); rc != nil {
					rc.VirtualHosts = m.virtualHosts(rc.GetVirtualHosts())
				}
			})
		})
	}
	return fmt.Errorf("unknown type %q", m.typ)
}

// modifyList runs an add, patch or remove on a list of named parts. Adds
// (of a clone of the value): "add" and "addLast" put the part last but
// before a terminal part (terminal reports one: the router, the TCP proxy,
// which must stay last), "addFirst" first, "addBefore"/"addAfter" next to
// the part named by the match (nothing is added when there is none).
func modifyList[T proto.Message](m parsedMod, list []T, name func(T) string, terminal func(T) bool) []T {
	add := func(at int) []T {
		out := append(append([]T(nil), list[:at]...), proto.Clone(m.value).(T))
		return append(out, list[at:]...)
	}
	switch m.op {
	case "addFirst":
		return add(0)
	case "add", "addLast":
		at := len(list)
		if at > 0 && terminal(list[at-1]) {
			at--
		}
		return add(at)
	case "addBefore", "addAfter":
		for i, x := range list {
			if name(x) == m.name {
				if m.op == "addAfter" {
					i++
				}
				return add(i)
			}
		}
		return list
	}
	var out []T
	for _, x := range list {
		if m.name == "" || name(x) == m.name {
			if m.op == "remove" {
				continue
			}
			mergePatch(x, m.value)
		}
		out = append(out, x)
	}
	return out
}

// filters: network filters; the TCP proxy or HTTP connection manager stays last.
func (m parsedMod) filters(fs []*listenerv3.Filter) []*listenerv3.Filter {
	return modifyList(m, fs, (*listenerv3.Filter).GetName, func(f *listenerv3.Filter) bool {
		return f.GetName() == "envoy.filters.network.tcp_proxy" || f.GetName() == "envoy.filters.network.http_connection_manager"
	})
}

// httpFilters: the router stays last.
func (m parsedMod) httpFilters(fs []*hcmv3.HttpFilter) []*hcmv3.HttpFilter {
	return modifyList(m, fs, (*hcmv3.HttpFilter).GetName, func(f *hcmv3.HttpFilter) bool {
		return f.GetName() == "envoy.filters.http.router"
	})
}

// virtualHosts: an added virtual host goes last.
func (m parsedMod) virtualHosts(vs []*routev3.VirtualHost) []*routev3.VirtualHost {
	return modifyList(m, vs, (*routev3.VirtualHost).GetName, func(*routev3.VirtualHost) bool { return false })
}

// mergePatch merges a patch into dst like proto.Merge (scalars replaced,
// lists appended, maps merged, messages merged field by field), except that
// well-known types (durations, wrappers, Any, Struct…) are replaced whole:
// patching connectTimeout 0.25s onto 5s gives 0.25s, not 5.25s.
func mergePatch(dst, src proto.Message) {
	mergeReflect(dst.ProtoReflect(), src.ProtoReflect())
}

func mergeReflect(dst, src protoreflect.Message) {
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			l := dst.Mutable(fd).List()
			for i := 0; i < v.List().Len(); i++ {
				l.Append(cloneValue(fd, v.List().Get(i)))
			}
		case fd.IsMap():
			m := dst.Mutable(fd).Map()
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				m.Set(k, cloneValue(fd.MapValue(), mv))
				return true
			})
		case fd.Message() != nil && !strings.HasPrefix(string(fd.Message().FullName()), "google.protobuf.") && dst.Has(fd):
			mergeReflect(dst.Mutable(fd).Message(), v.Message())
		default:
			dst.Set(fd, cloneValue(fd, v))
		}
		return true
	})
}

func cloneValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) protoreflect.Value {
	if fd.Message() != nil {
		return protoreflect.ValueOfMessage(proto.Clone(v.Message().Interface()).ProtoReflect())
	}
	return v
}
