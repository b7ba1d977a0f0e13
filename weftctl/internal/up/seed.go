package up

import (
	"context"
	"fmt"
	"strings"

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

func seedDemo(ctx context.Context, planes []*plane) error {
	first := planes[0]
	st := store.New(first.cli, store.WithKeyring(first.keys))
	for _, doc := range []string{demoMesh, demoPermission} {
		rs, err := resource.UnmarshalAll(strings.NewReader(doc))
		if err != nil {
			return err
		}
		for _, r := range rs {
			if err := resource.Validate(r); err != nil {
				return err
			}
			if first.mode == "global" {
				r.Meta.Origin = "global"
			}
			if _, _, err := st.Upsert(ctx, r); err != nil {
				return fmt.Errorf("seed %s: %w", r.Key(), err)
			}
		}
	}
	return nil
}
