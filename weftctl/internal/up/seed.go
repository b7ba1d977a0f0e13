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
name: frontend-to-backend
sources:
- match:
    weft.io/service: frontend
destinations:
- match:
    weft.io/service: backend
`

// demoDataplanes are registered where workloads live: in each zone (or the
// standalone control plane). %[1]s is the zone suffix.
const demoDataplanes = `type: Dataplane
mesh: demo
name: backend-1%[1]s
networking:
  address: 127.0.0.1
  inbound:
  - port: 7070
    tags:
      weft.io/service: backend
      weft.io/protocol: grpc
---
type: Dataplane
mesh: demo
name: frontend-1%[1]s
networking:
  address: 127.0.0.1
  inbound:
  - port: 7071
    tags:
      weft.io/service: frontend
      weft.io/protocol: http
  outbound:
  - port: 17070
    tags:
      weft.io/service: backend
`

func seedDemo(ctx context.Context, planes []*plane) error {
	first := planes[0]
	if err := seedDocs(ctx, first, demoMesh, demoPermission); err != nil {
		return err
	}
	for _, p := range planes {
		if p.mode == "global" {
			continue
		}
		suffix := ""
		if p.zone != "" {
			suffix = "-" + p.zone
			// The mesh arrives through zone-sync; dataplanes need it first.
			if err := waitForMesh(ctx, p, "demo"); err != nil {
				return err
			}
		}
		if err := seedDocs(ctx, p, fmt.Sprintf(demoDataplanes, suffix)); err != nil {
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
