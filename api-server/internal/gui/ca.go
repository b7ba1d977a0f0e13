package gui

import (
	"fmt"
	"sort"
	"time"

	"github.com/weftmesh/weft/pkg/ca"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// CAWarning is how close to expiry a mesh CA's root certificate is listed
// as a problem.
const CAWarning = 30 * 24 * time.Hour

// CA states.
const (
	CAExpired  = "expired"
	CAExpiring = "expiring"
	CAUnknown  = "unknown"
	CAOK       = "ok"
)

// CAExpiryFunc returns the root expiry of every CA backend of mesh m.
type CAExpiryFunc func(mesh string, m *meshv1.Mesh) []ca.BackendExpiry

// MeshCA is one CA backend of a mesh on the overview.
type MeshCA struct {
	Mesh string `json:"mesh"`
	ca.BackendExpiry
	// State is CAExpired, CAExpiring (within CAWarning), CAUnknown (not
	// readable: Error says why) or CAOK.
	State string `json:"state"`
}

func caState(e ca.BackendExpiry, now time.Time) string {
	switch {
	case e.NotAfter == nil:
		return CAUnknown
	case !e.NotAfter.After(now):
		return CAExpired
	case e.NotAfter.Sub(now) < CAWarning:
		return CAExpiring
	}
	return CAOK
}

// caProblem is the problem of an expired or expiring CA, nil otherwise.
func caProblem(c MeshCA) *Problem {
	link := "#/meshes/" + c.Mesh
	switch c.State {
	case CAExpired:
		return &Problem{Kind: "CA expired", Message: fmt.Sprintf("the root certificate of CA backend %s (%s) of mesh %s expired %s", c.Name, c.Type, c.Mesh, c.NotAfter.Format(time.RFC3339)), Link: link}
	case CAExpiring:
		return &Problem{Kind: "CA expiry", Message: fmt.Sprintf("the root certificate of CA backend %s (%s) of mesh %s expires %s", c.Name, c.Type, c.Mesh, c.NotAfter.Format(time.RFC3339)), Link: link}
	}
	return nil
}

// sortCAs puts problems first (expired, then expiring, soonest first),
// then unreadable ones, then the rest by expiry.
func sortCAs(cas []MeshCA) {
	rank := map[string]int{CAExpired: 0, CAExpiring: 1, CAUnknown: 2, CAOK: 3}
	sort.SliceStable(cas, func(i, j int) bool {
		a, b := cas[i], cas[j]
		if rank[a.State] != rank[b.State] {
			return rank[a.State] < rank[b.State]
		}
		if a.NotAfter != nil && b.NotAfter != nil && !a.NotAfter.Equal(*b.NotAfter) {
			return a.NotAfter.Before(*b.NotAfter)
		}
		if a.Mesh != b.Mesh {
			return a.Mesh < b.Mesh
		}
		return a.Name < b.Name
	})
}
