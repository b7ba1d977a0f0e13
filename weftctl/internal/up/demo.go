package up

import (
	"context"
	"fmt"
	"io"
)

// demo seeds demo resources. It grows with the services: meshes and
// policies go to the first control plane (global, or standalone).
func demo(ctx context.Context, planes []*plane, out io.Writer) error {
	fmt.Fprintln(out, "demo: seeding resources")
	return seedDemo(ctx, planes)
}
