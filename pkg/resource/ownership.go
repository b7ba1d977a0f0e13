package resource

import "fmt"

// Control-plane modes: the api-server's and the k8s-controller's --mode.
const (
	ModeStandalone = "standalone"
	ModeGlobal     = "global"
	ModeZone       = "zone"
)

// WriteOrigin is the origin a control plane of mode gives the resources
// written on it (docs/architecture.md, "Resource model and origin"):
// "global" on global, the zone's name in a zone, empty in standalone.
func WriteOrigin(mode, zone string) string {
	switch mode {
	case ModeGlobal:
		return "global"
	case ModeZone:
		return zone
	}
	return ""
}

// OwnedElsewhere says why resources of t cannot be written on a control
// plane of mode, or returns "" when they can: in a zone the types global
// owns, on global the types zones own.
func OwnedElsewhere(t *Type, mode, zone string) string {
	switch {
	case mode == ModeZone && t.Owner == OwnerGlobal:
		return fmt.Sprintf("%s are owned by the global control plane: apply this change there, it syncs to zone %q", t.Collection, zone)
	case mode == ModeGlobal && t.Owner == OwnerZone:
		return fmt.Sprintf("%s are registered in zones, not on the global control plane: apply this change on the zone control plane", t.Collection)
	}
	return ""
}
