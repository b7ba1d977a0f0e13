package up

import (
	"context"
	"fmt"
	"io"
	"net"
)

// demo seeds demo resources. It grows with the services: meshes and
// policies go to the first control plane (global, or standalone).
func demo(ctx context.Context, planes []*plane, out io.Writer) error {
	fmt.Fprintln(out, "demo: mesh 'demo' (builtin mTLS CA), TrafficPermission frontend -> backend, dataplanes backend-1-<zone> and frontend-1-<zone> in every zone (backend-1 and frontend-1 standalone)")
	if err := seedDemo(ctx, planes); err != nil {
		return err
	}
	for _, p := range planes {
		if p.ep.DNSAddress != "" {
			host, port, _ := net.SplitHostPort(p.ep.DNSAddress)
			fmt.Fprintf(out, "demo: %s resolves .mesh names: dig @%s -p %s backend.demo.mesh\n", p.name, host, port)
		}
	}
	return nil
}
