// Package meshview holds the plain data the xds-server's packages pass to
// one another, so that none of them imports another only for a type: a
// mesh's resources as the model holds them (the generator builds its
// snapshot from it) and a workload's certificate material (the certificate
// manager makes it, the generator serves it).
package meshview

import (
	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// Mesh is one mesh at one store revision. It is read-only: a change to the
// mesh makes a new Mesh, so a consumer can cache what it derives from one
// by its pointer.
type Mesh struct {
	Name string
	// Spec is nil when the Mesh resource does not exist (yet).
	Spec               *meshv1.Mesh
	Dataplanes         []*resource.Resource
	TrafficPermissions []*resource.Resource
	VirtualIPs         []*resource.Resource
	// ZoneIngresses are the other zones' ingresses that offer a service of
	// this mesh (never this zone's own): the mesh's cross-zone endpoints.
	ZoneIngresses []*resource.Resource
}

// Identity is a workload certificate, its key and the mesh trust bundle, PEM.
type Identity struct {
	CertChainPEM   []byte
	KeyPEM         []byte
	TrustBundlePEM []byte
}

// IngressZone is the zone a ZoneIngress stands for: its origin when
// zone-sync set one (the zone whose authenticated stream carried it), else
// the zone its spec names.
func IngressZone(r *resource.Resource) string {
	if o := r.Meta.GetOrigin(); o != "" && o != "global" {
		return o
	}
	zi, _ := r.Spec.(*meshv1.ZoneIngress)
	return zi.GetZone()
}
