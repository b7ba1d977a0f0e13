package resource_test

import (
	"testing"

	"github.com/weftmesh/weft/pkg/resource"
)

func TestOwnershipFollowsTheMode(t *testing.T) {
	for _, c := range []struct {
		t    *resource.Type
		mode string
		ok   bool
	}{
		{resource.TrafficPermissionType, resource.ModeStandalone, true},
		{resource.DataplaneType, resource.ModeStandalone, true},
		{resource.TrafficPermissionType, resource.ModeZone, false},
		{resource.DataplaneType, resource.ModeZone, true},
		{resource.TrafficPermissionType, resource.ModeGlobal, true},
		{resource.DataplaneType, resource.ModeGlobal, false},
		{resource.ZoneIngressType, resource.ModeGlobal, false},
	} {
		if got := resource.OwnedElsewhere(c.t, c.mode, "z"); (got == "") != c.ok {
			t.Errorf("%s in %s: %q", c.t.Name, c.mode, got)
		}
	}
	for mode, want := range map[string]string{resource.ModeStandalone: "", resource.ModeGlobal: "global", resource.ModeZone: "z"} {
		if got := resource.WriteOrigin(mode, "z"); got != want {
			t.Errorf("origin in %s: %q, want %q", mode, got, want)
		}
	}
}
