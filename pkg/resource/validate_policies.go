package resource

import (
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// CheckPolicyReferences checks what a policy names in its mesh: the
// logging backend of a TrafficLog and the tracing backend of a
// TrafficTrace must be backends of the mesh (an empty name means the
// mesh's default; with none, the policy does nothing). mesh is the policy's Mesh spec,
// nil when the mesh does not exist (then nothing is checked here: the
// write fails on the missing mesh elsewhere). It returns a
// *ValidationError with field paths, or nil.
func CheckPolicyReferences(r *Resource, mesh *meshv1.Mesh) error {
	if mesh == nil {
		return nil
	}
	v := NewValidator()
	switch spec := r.Spec.(type) {
	case *meshv1.TrafficLog:
		var names []string
		for _, b := range mesh.GetLogging().GetBackends() {
			names = append(names, b.GetName())
		}
		checkBackendRef(v.Field("conf").Field("backend"), spec.GetConf().GetBackend(), names, "logging")
	case *meshv1.TrafficTrace:
		var names []string
		for _, b := range mesh.GetTracing().GetBackends() {
			names = append(names, b.GetName())
		}
		checkBackendRef(v.Field("conf").Field("backend"), spec.GetConf().GetBackend(), names, "tracing")
	}
	return v.Err()
}

func checkBackendRef(v *Validator, name string, names []string, what string) {
	if name == "" {
		return
	}
	for _, n := range names {
		if n == name {
			return
		}
	}
	v.Addf("%s backend %q is not defined in the mesh's %s.backends %v", what, name, what, names)
}
