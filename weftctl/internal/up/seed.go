package up

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
)

const demoMesh = `type: Mesh
name: demo
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
`

const demoPermission = `type: TrafficPermission
mesh: demo
name: client-to-greeter
sources:
- match:
    weft.io/service: client
destinations:
- match:
    weft.io/service: greeter
`

// demoDataplane is the Dataplane of one demo workload: %[1]s name,
// %[2]d port, %[3]s service.
const demoDataplane = `type: Dataplane
mesh: demo
name: %[1]s
networking:
  address: 127.0.0.1
  inbound:
  - port: %[2]d
    tags:
      weft.io/service: %[3]s
      weft.io/protocol: grpc
`

// seedDemo writes the demo mesh and permission to the first control plane
// (global or standalone) and each workload's Dataplane to its zone.
func seedDemo(ctx context.Context, planes []*plane, apps []*demoApp) error {
	first := planes[0]
	if err := seedDocs(ctx, first, demoMesh, demoPermission); err != nil {
		return err
	}
	for _, a := range apps {
		if a.plane.zone != "" {
			// The mesh arrives through zone-sync; dataplanes need it first.
			if err := waitForMesh(ctx, a.plane, "demo"); err != nil {
				return err
			}
		}
		if err := seedDocs(ctx, a.plane, fmt.Sprintf(demoDataplane, a.name, a.port, a.service)); err != nil {
			return err
		}
	}
	return nil
}

func waitForMesh(ctx context.Context, p *plane, mesh string) error {
	st := store.New(p.cli, store.WithKeyring(p.keys))
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		if _, err := st.Get(ctx, resource.MeshType, "", mesh); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: mesh %q did not arrive from global: %w", p.name, mesh, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func seedDocs(ctx context.Context, p *plane, docs ...string) error {
	st := store.New(p.cli, store.WithKeyring(p.keys))
	for _, doc := range docs {
		rs, err := resource.UnmarshalAll(strings.NewReader(doc))
		if err != nil {
			return err
		}
		for _, r := range rs {
			if err := resource.Validate(r); err != nil {
				return err
			}
			switch p.mode {
			case "global":
				r.Meta.Origin = "global"
			case "zone":
				r.Meta.Origin = p.zone
			}
			if _, _, err := st.Upsert(ctx, r); err != nil {
				return fmt.Errorf("seed %s: %w", r.Key(), err)
			}
		}
	}
	return nil
}
