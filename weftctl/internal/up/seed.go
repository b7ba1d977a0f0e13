package up

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
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
// %[2]d port, %[3]s service, %[4]t whether its inbound is ready. The
// greeter's starts not ready: the xds-server sends the greeter its
// listener (it needs the Dataplane for that), but no caller gets the
// endpoint (EDS, the ingress's table, ZoneIngress availableServices)
// until markReady once the greeter serves. Before that its port accepts
// and closes connections (grpc-go's xDS server, not serving yet), which
// callers saw as Unavailable "handshake EOF".
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
    health:
      ready: %[4]t
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
		if err := seedDocs(ctx, a.plane, fmt.Sprintf(demoDataplane, a.name, a.port, a.service, a.role != "greeter")); err != nil {
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

// markReady sets the inbound health of a demo workload's Dataplane to
// ready: callers get its endpoint from now on.
func markReady(ctx context.Context, a *demoApp) error {
	st := store.New(a.plane.cli, store.WithKeyring(a.plane.keys))
	r, err := st.Get(ctx, resource.DataplaneType, "demo", a.name)
	if err != nil {
		return err
	}
	dp, ok := r.Spec.(*meshv1.Dataplane)
	if !ok {
		return fmt.Errorf("dataplane %s: unexpected spec %T", a.name, r.Spec)
	}
	for _, in := range dp.GetNetworking().GetInbound() {
		in.Health = &meshv1.Dataplane_Networking_Inbound_Health{Ready: true}
	}
	if _, _, err := st.Upsert(ctx, r); err != nil {
		return fmt.Errorf("mark %s ready: %w", a.name, err)
	}
	return nil
}

// waitForRemoteService waits until p's store holds a ZoneIngress (synced
// from another zone) offering service in mesh with at least one ready
// instance: from then on p's xds-server routes callers to it.
func waitForRemoteService(ctx context.Context, p *plane, mesh, service string, wait time.Duration) error {
	st := store.New(p.cli, store.WithKeyring(p.keys))
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		zis, _, err := st.ListAll(ctx, resource.ZoneIngressType, "")
		if err == nil {
			for _, r := range zis {
				zi, _ := r.Spec.(*meshv1.ZoneIngress)
				for _, as := range zi.GetAvailableServices() {
					if as.GetMesh() == mesh && as.GetTags()[resource.ServiceTag] == service && as.GetInstances() > 0 {
						return nil
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: no zone offers %s in mesh %q within %s (ZoneIngress availableServices): %w", p.name, service, mesh, wait, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
