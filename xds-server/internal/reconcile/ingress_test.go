package reconcile

import (
	"testing"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/xds-server/internal/model"
)

// TestAffectsIngresses: what recomputes zone ingresses — local Dataplanes,
// Meshes, TrafficRoutes (they name the subsets), full syncs and this
// zone's ZoneIngresses — and what does not.
func TestAffectsIngresses(t *testing.T) {
	for _, tc := range []struct {
		c    model.Change
		want bool
	}{
		{model.Change{Mesh: "m", Type: resource.DataplaneType}, true},
		{model.Change{Mesh: "m", Type: resource.MeshType}, true},
		{model.Change{Mesh: "m", Type: resource.TrafficRouteType}, true},
		{model.Change{Mesh: "m", Sync: true}, true},
		{model.Change{Type: resource.ZoneIngressType, Name: "ingress"}, true},
		{model.Change{Mesh: "m", Type: resource.TrafficPermissionType}, false},
		{model.Change{Mesh: "m", Type: resource.VirtualIPType}, false},
		{model.Change{Mesh: "m", Type: resource.RetryType}, false},
	} {
		if got := affectsIngresses(tc.c); got != tc.want {
			t.Errorf("affectsIngresses(%s %s sync=%v) = %v, want %v", tc.c.Mesh, tc.c.Type, tc.c.Sync, got, tc.want)
		}
	}
}
