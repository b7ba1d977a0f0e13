package greeter

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// ErrNoBootstrap is returned when GRPC_XDS_BOOTSTRAP is not set.
var ErrNoBootstrap = errors.New("GRPC_XDS_BOOTSTRAP is not set: point it at the bootstrap.json weft-dp wrote (weft-dp run --proxy-type grpc --workdir DIR writes DIR/bootstrap.json)")

// ServerMain is the greeter command (cmd/greeter; weftctl up --demo runs
// the same code): it serves until ctx ends.
//
//	greeter --address 127.0.0.1:50051 --zone zone-2 --instance greeter-1
func ServerMain(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("greeter", flag.ContinueOnError)
	addr := fs.String("address", "127.0.0.1:50051", "listen address: the Dataplane's networking.address and inbound port")
	zone := fs.String("zone", "standalone", "zone reported to callers")
	instance := fs.String("instance", "greeter-1", "instance name reported to callers")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if os.Getenv("GRPC_XDS_BOOTSTRAP") == "" {
		return ErrNoBootstrap
	}
	s := &Server{Zone: *zone, Instance: *instance}
	srv, err := NewServer(s, func(serving bool, err error) {
		if serving {
			fmt.Fprintf(out, "greeter: %s serving on %s (zone %s)\n", s.Instance, *addr, s.Zone)
		} else {
			fmt.Fprintf(out, "greeter: %s not serving: %v (has the xds-server sent this address's listener? the Dataplane's inbound port must be the one in --address)\n", s.Instance, err)
		}
	})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		srv.GracefulStop()
	}()
	return srv.Serve(lis)
}

// ClientMain is the greeter-client command (cmd/greeter-client; weftctl
// up --demo runs the same code).
//
//	greeter-client --target xds:///greeter.mesh [--until OK] [--count 3] [--summary 5s]
func ClientMain(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("greeter-client", flag.ContinueOnError)
	target := fs.String("target", "xds:///greeter.mesh", "gRPC target")
	name := fs.String("name", "client", "name sent in each call")
	count := fs.Int("count", 3, "calls to make (0: until interrupted)")
	interval := fs.Duration("interval", 500*time.Millisecond, "pause between calls")
	timeout := fs.Duration("timeout", 5*time.Second, "deadline of each call")
	until := fs.String("until", "", "first call until one has this outcome (OK, PermissionDenied, ...), then make --count calls")
	wait := fs.Duration("wait", 60*time.Second, "how long --until keeps trying")
	summary := fs.Duration("summary", 0, "print a tally by serving zone this often instead of every call")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if os.Getenv("GRPC_XDS_BOOTSTRAP") == "" {
		return ErrNoBootstrap
	}
	conn, err := Dial(*target)
	if err != nil {
		return err
	}
	defer conn.Close()
	c := &Caller{Conn: conn, Name: *name, Interval: *interval, Timeout: *timeout, Out: out}
	if *until != "" {
		if err := c.Until(ctx, *until, *wait); err != nil {
			return err
		}
	}
	t := c.Calls(ctx, *count, *summary)
	fmt.Fprintf(out, "calls to %s: %s\n", *target, t)
	return nil
}
