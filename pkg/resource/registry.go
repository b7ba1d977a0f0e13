// Package resource owns Weft's resource model: the registry of types, the
// flat universal YAML/JSON form, validation with field paths, and the
// selector rules policies use.
package resource

import (
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// Scope says whether a type lives inside a mesh or across the control plane.
type Scope int

const (
	ScopeMesh Scope = iota
	ScopeGlobal
)

// Owner says which control plane owns a type in a multi-zone deployment.
type Owner int

const (
	// OwnerGlobal types are written on global and synced down to zones,
	// where they are read-only.
	OwnerGlobal Owner = iota
	// OwnerZone types are written in zones and synced up to global, where
	// users cannot write them.
	OwnerZone
	// OwnerLocal types belong to the control plane that holds them and are
	// not synced (VIPs are allocated in each zone).
	OwnerLocal
)

// Type describes one resource type.
type Type struct {
	// Name is the type name used in YAML and etcd keys, e.g. "Dataplane".
	Name string
	// Collection is the REST path element, e.g. "dataplanes".
	Collection string
	Scope      Scope
	Owner      Owner
	// Sensitive types are sealed (encrypted) at rest and never logged.
	Sensitive bool
	// System types are written by control-plane services, not users: the
	// API serves them read-only.
	System bool
	// Insight names the collection whose resources carry this type's insight
	// (same mesh and name), for "+insights" listings.
	Insight  *Type
	newSpec  func() proto.Message
	validate func(spec proto.Message, v *Validator)
}

// NewSpec returns an empty spec message of the type.
func (t *Type) NewSpec() proto.Message { return t.newSpec() }

// MeshScoped reports whether resources of the type belong to a mesh.
func (t *Type) MeshScoped() bool { return t.Scope == ScopeMesh }

func (t *Type) String() string { return t.Name }

// The registered types.
var (
	MeshType              = &Type{Name: "Mesh", Collection: "meshes", Scope: ScopeGlobal, newSpec: func() proto.Message { return &meshv1.Mesh{} }}
	DataplaneType         = &Type{Name: "Dataplane", Collection: "dataplanes", Owner: OwnerZone, newSpec: func() proto.Message { return &meshv1.Dataplane{} }}
	DataplaneInsightType  = &Type{Name: "DataplaneInsight", Collection: "dataplane-insights", Owner: OwnerZone, System: true, newSpec: func() proto.Message { return &meshv1.DataplaneInsight{} }}
	ZoneIngressType       = &Type{Name: "ZoneIngress", Collection: "zoneingresses", Scope: ScopeGlobal, Owner: OwnerZone, newSpec: func() proto.Message { return &meshv1.ZoneIngress{} }}
	ZoneType              = &Type{Name: "Zone", Collection: "zones", Scope: ScopeGlobal, newSpec: func() proto.Message { return &meshv1.Zone{} }}
	ZoneInsightType       = &Type{Name: "ZoneInsight", Collection: "zone-insights", Scope: ScopeGlobal, Owner: OwnerLocal, System: true, newSpec: func() proto.Message { return &meshv1.ZoneInsight{} }}
	VirtualIPType         = &Type{Name: "VirtualIP", Collection: "vips", Owner: OwnerLocal, System: true, newSpec: func() proto.Message { return &meshv1.VirtualIP{} }}
	TrafficPermissionType = &Type{Name: "TrafficPermission", Collection: "traffic-permissions", newSpec: func() proto.Message { return &meshv1.TrafficPermission{} }}
	TrafficRouteType      = &Type{Name: "TrafficRoute", Collection: "traffic-routes", newSpec: func() proto.Message { return &meshv1.TrafficRoute{} }}
	HealthCheckType       = &Type{Name: "HealthCheck", Collection: "health-checks", newSpec: func() proto.Message { return &meshv1.HealthCheck{} }}
	CircuitBreakerType    = &Type{Name: "CircuitBreaker", Collection: "circuit-breakers", newSpec: func() proto.Message { return &meshv1.CircuitBreaker{} }}
	FaultInjectionType    = &Type{Name: "FaultInjection", Collection: "fault-injections", newSpec: func() proto.Message { return &meshv1.FaultInjection{} }}
	TrafficLogType        = &Type{Name: "TrafficLog", Collection: "traffic-logs", newSpec: func() proto.Message { return &meshv1.TrafficLog{} }}
	TrafficTraceType      = &Type{Name: "TrafficTrace", Collection: "traffic-traces", newSpec: func() proto.Message { return &meshv1.TrafficTrace{} }}
	RetryType             = &Type{Name: "Retry", Collection: "retries", newSpec: func() proto.Message { return &meshv1.Retry{} }}
	TimeoutType           = &Type{Name: "Timeout", Collection: "timeouts", newSpec: func() proto.Message { return &meshv1.Timeout{} }}
	ProxyTemplateType     = &Type{Name: "ProxyTemplate", Collection: "proxytemplates", newSpec: func() proto.Message { return &meshv1.ProxyTemplate{} }}
	SecretType            = &Type{Name: "Secret", Collection: "secrets", Sensitive: true, newSpec: func() proto.Message { return &meshv1.Secret{} }}
	GlobalSecretType      = &Type{Name: "GlobalSecret", Collection: "global-secrets", Scope: ScopeGlobal, Sensitive: true, newSpec: func() proto.Message { return &meshv1.GlobalSecret{} }}
)

var all = []*Type{
	MeshType, DataplaneType, DataplaneInsightType, ZoneIngressType, ZoneType, ZoneInsightType, VirtualIPType,
	TrafficPermissionType, TrafficRouteType, HealthCheckType, CircuitBreakerType, FaultInjectionType,
	TrafficLogType, TrafficTraceType, RetryType, TimeoutType, ProxyTemplateType, SecretType, GlobalSecretType,
}

var (
	byName       = map[string]*Type{}
	byCollection = map[string]*Type{}
)

func init() {
	// Validators and insight links refer back to the type variables, so they
	// are attached here rather than in the literals above.
	DataplaneType.Insight = DataplaneInsightType
	ZoneType.Insight = ZoneInsightType
	attachValidators()
	for _, t := range all {
		byName[strings.ToLower(t.Name)] = t
		byCollection[t.Collection] = t
	}
}

// Types returns every registered type, sorted by name.
func Types() []*Type {
	out := append([]*Type(nil), all...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// MeshScopedTypes returns the types that live inside a mesh.
func MeshScopedTypes() []*Type {
	var out []*Type
	for _, t := range Types() {
		if t.MeshScoped() {
			out = append(out, t)
		}
	}
	return out
}

// ByName finds a type by its name, case-insensitively ("dataplane").
func ByName(name string) (*Type, bool) {
	t, ok := byName[strings.ToLower(name)]
	return t, ok
}

// ByCollection finds a type by its REST collection ("traffic-permissions").
func ByCollection(c string) (*Type, bool) {
	t, ok := byCollection[c]
	return t, ok
}

// collectionAliases are REST path elements that name a type besides its
// collection: Kuma's spelling of it.
var collectionAliases = map[string]*Type{"zone-ingresses": ZoneIngressType}

// ByRESTCollection finds a type by its collection or a REST alias of it
// ("zone-ingresses", Kuma's path for zoneingresses).
func ByRESTCollection(c string) (*Type, bool) {
	if t, ok := ByCollection(c); ok {
		return t, true
	}
	t, ok := collectionAliases[c]
	return t, ok
}

// Lookup finds a type by collection, type name, or the aliases people type
// on a command line ("dp", "tp", singular collections).
func Lookup(s string) (*Type, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if t, ok := ByCollection(s); ok {
		return t, true
	}
	if t, ok := ByName(s); ok {
		return t, true
	}
	if t, ok := aliases[s]; ok {
		return t, true
	}
	for _, t := range all {
		if strings.TrimSuffix(t.Collection, "s") == s || strings.ReplaceAll(t.Collection, "-", "") == s {
			return t, true
		}
	}
	return nil, false
}

var aliases = map[string]*Type{
	"dp": DataplaneType, "tp": TrafficPermissionType, "tr": TrafficRouteType, "zi": ZoneIngressType,
	"retry": RetryType, "vip": VirtualIPType, "zone-ingresses": ZoneIngressType, "zone-ingress": ZoneIngressType,
	"proxy-templates": ProxyTemplateType, "globalsecrets": GlobalSecretType,
}

// Resource is a resource of any type: metadata and the type's spec.
type Resource struct {
	Meta *meshv1.Meta
	Spec proto.Message
	// Traceparent is the W3C traceparent of the write that stored this
	// version (set by the store on reads, watch events and informers;
	// empty when the write was not traced). In memory only: the store
	// keeps it outside Meta, and the API never returns it.
	Traceparent string
}

// Type returns the resource's registered type, or nil.
func (r *Resource) Type() *Type {
	if r == nil || r.Meta == nil {
		return nil
	}
	t, _ := ByName(r.Meta.GetType())
	return t
}

// Key identifies a resource: "Type/mesh/name" or "Type/name".
func (r *Resource) Key() string {
	return Key(r.Meta.GetType(), r.Meta.GetMesh(), r.Meta.GetName())
}

// Key formats a resource identity for logs and errors.
func Key(typ, mesh, name string) string {
	if mesh == "" {
		return typ + "/" + name
	}
	return typ + "/" + mesh + "/" + name
}

// New returns an empty resource of type t named mesh/name.
func New(t *Type, mesh, name string) *Resource {
	if !t.MeshScoped() {
		mesh = ""
	}
	return &Resource{Meta: &meshv1.Meta{Type: t.Name, Mesh: mesh, Name: name}, Spec: t.NewSpec()}
}

// Clone deep-copies a resource.
func (r *Resource) Clone() *Resource {
	if r == nil {
		return nil
	}
	c := &Resource{}
	if r.Meta != nil {
		c.Meta = proto.Clone(r.Meta).(*meshv1.Meta)
	}
	if r.Spec != nil {
		c.Spec = proto.Clone(r.Spec)
	}
	c.Traceparent = r.Traceparent
	return c
}
