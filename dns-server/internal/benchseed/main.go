// Command benchseed is the data side of bench/dns/run.sh: it runs an
// embedded etcd, and when told to, seeds a mesh with N services offered by
// remote ZoneIngresses plus a Dataplane at the query source address, waits
// for dns-server to allocate every VIP, and writes the same names as a
// CoreDNS zone file and a dnsperf query file. It lives in the dns-server
// module (not bench/) so the shared bench module needs no new dependencies.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/weftmesh/weft/pkg/etcdembed"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

func main() {
	dir := flag.String("dir", "", "working directory (etcd data, output files)")
	names := flag.Int("names", 100000, "services to seed")
	perIngress := flag.Int("per-ingress", 1000, "services per ZoneIngress")
	source := flag.String("source", "127.0.0.1", "address of the dataplane the queries come from")
	flag.Parse()
	if *dir == "" {
		log.Fatal("--dir is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := etcdembed.Start(ctx, etcdembed.Config{Dir: filepath.Join(*dir, "etcd"), ClientAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0", AutoCompactionRetention: "0"})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	cli, err := srv.Client()
	if err != nil {
		log.Fatal(err)
	}
	st := store.New(cli)
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(*dir, name), []byte(content), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	eps := cli.Endpoints()
	write("endpoint", eps[0])
	log.Printf("etcd at %s; waiting for %s", eps[0], filepath.Join(*dir, "seed-now"))
	for {
		if _, err := os.Stat(filepath.Join(*dir, "seed-now")); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}

	start := time.Now()
	must := func(_ *resource.Resource, err error) {
		if err != nil {
			log.Fatal(err)
		}
	}
	must(st.Create(ctx, resource.New(resource.MeshType, "", "bench")))
	dp := resource.New(resource.DataplaneType, "bench", "client")
	dp.Spec = &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: *source, Inbound: []*meshv1.Dataplane_Networking_Inbound{
		{Port: 8080, Tags: map[string]string{resource.ServiceTag: "client"}}}}}
	must(st.Create(ctx, dp))
	for i := 0; i < *names; i += *perIngress {
		zi := &meshv1.ZoneIngress{Zone: "remote", Networking: &meshv1.ZoneIngress_Networking{Address: "10.9.0.1", Port: 10001}}
		for j := i; j < min(i+*perIngress, *names); j++ {
			zi.AvailableServices = append(zi.AvailableServices, &meshv1.ZoneIngress_AvailableService{
				Mesh: "bench", Tags: map[string]string{resource.ServiceTag: fmt.Sprintf("svc-%d", j)}, Instances: 1})
		}
		r := resource.New(resource.ZoneIngressType, "", fmt.Sprintf("remote-ingress-%d", i / *perIngress))
		r.Spec = zi
		must(st.Create(ctx, r))
	}
	log.Printf("seeded %d services in %s; waiting for their VIPs", *names, time.Since(start).Round(time.Millisecond))

	want := *names + 1 // + the client's own service
	var vips []*resource.Resource
	for {
		vips, _, err = st.ListAll(ctx, resource.VirtualIPType, "bench")
		if err != nil {
			log.Fatal(err)
		}
		if len(vips) >= want {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	allocated := time.Since(start)
	log.Printf("%d VIPs allocated %s after seeding began", len(vips), allocated.Round(time.Millisecond))
	sort.Slice(vips, func(i, j int) bool { return vips[i].Meta.GetName() < vips[j].Meta.GetName() })

	zf, err := os.Create(filepath.Join(*dir, "mesh.zone"))
	if err != nil {
		log.Fatal(err)
	}
	qf, err := os.Create(filepath.Join(*dir, "queries.txt"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(zf, "$ORIGIN mesh.\n$TTL 30\n@ IN SOA ns.mesh. hostmaster.mesh. 1 3600 600 86400 30\n@ IN NS ns.mesh.\nns IN A 127.0.0.1\n")
	for _, v := range vips {
		name := v.Meta.GetName()
		fmt.Fprintf(zf, "%s IN A %s\n", name, v.Spec.(*meshv1.VirtualIP).GetIp())
		if name != "client" {
			fmt.Fprintf(qf, "%s.mesh A\n", name)
		}
	}
	if err := zf.Close(); err != nil {
		log.Fatal(err)
	}
	if err := qf.Close(); err != nil {
		log.Fatal(err)
	}
	write("allocation-seconds", fmt.Sprintf("%.1f", allocated.Seconds()))
	write("ready", "ok")
	<-ctx.Done()
}
