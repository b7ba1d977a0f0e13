package protocol

import (
	"strings"

	"github.com/weftmesh/weft/pkg/resource"
)

// GlobalOrigin is meta.origin of resources global owns, as zones store them.
const GlobalOrigin = "global"

// DownTypes are the types global sends to zones: every global-owned type
// except Zone (global's own admission list), plus ZoneIngress (other zones'
// ingresses, for cross-zone routing).
func DownTypes() []*resource.Type {
	var out []*resource.Type
	for _, t := range resource.Types() {
		if (t.Owner == resource.OwnerGlobal && t != resource.ZoneType) || t == resource.ZoneIngressType {
			out = append(out, t)
		}
	}
	// Meshes first, so policies usually find their mesh already there.
	for i, t := range out {
		if t == resource.MeshType {
			out[0], out[i] = out[i], out[0]
		}
	}
	return out
}

// UpTypes are the types zones send to global: the zone-owned ones
// (Dataplane, DataplaneInsight, ZoneIngress).
func UpTypes() []*resource.Type {
	var out []*resource.Type
	for _, t := range resource.Types() {
		if t.Owner == resource.OwnerZone {
			out = append(out, t)
		}
	}
	return out
}

// LocalOnly reports whether a resource belongs to the control plane that
// holds it and never travels: GlobalSecrets named "cp-*" (token signing
// keys and the like).
func LocalOnly(t *resource.Type, name string) bool {
	return t == resource.GlobalSecretType && strings.HasPrefix(name, "cp-")
}
