// Command ingress measures the built-in ingress (ingress-manager/proxy)
// against a direct connection on loopback: added round-trip latency (p50,
// p99) on an open TLS connection, one-way TLS throughput, and new TLS
// connections per second (handshake + one round trip + close). The backend
// is a TLS echo server; the ingress routes by SNI without terminating TLS,
// exactly as between zones.
//
//	go run ./bench/ingress -n 20000 -bytes 256MiB -conns 2000 -c 8
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/weftmesh/weft/ingress-manager/proxy"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/sni"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

func main() {
	n := flag.Int("n", 20000, "round trips for the latency measure")
	size := flag.Int("size", 64, "bytes per round trip")
	total := flag.Int64("bytes", 256<<20, "bytes streamed for the throughput measure")
	conns := flag.Int("conns", 2000, "connections for the connections/s measure")
	c := flag.Int("c", 8, "concurrent connectors for the connections/s measure")
	flag.Parse()

	cert := selfSigned()
	backend := echoServer(cert)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := proxy.New(ln, proxy.Config{})
	host, port, _ := net.SplitHostPort(backend)
	p, _ := strconv.Atoi(port)
	dp := resource.New(resource.DataplaneType, "default", "echo-1")
	dp.Spec = &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: host,
		Inbound: []*meshv1.Dataplane_Networking_Inbound{{Port: uint32(p), Tags: map[string]string{resource.ServiceTag: "echo"}}}}}
	table, _ := proxy.BuildTable([]*resource.Resource{dp}, 0)
	srv.SetTable(table)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = srv.Serve(ctx) }()
	defer cancel()
	ingress := ln.Addr().String()
	name := sni.Service("default", "echo")

	fmt.Printf("# ingress bench: GOMAXPROCS=%d, load average %s\n", runtime.GOMAXPROCS(0), loadavg())
	fmt.Printf("%-10s %-12s %10s %10s %12s %14s\n", "path", "", "p50", "p99", "MB/s", "conns/s")
	type result struct {
		p50, p99 time.Duration
		mbps     float64
		cps      float64
	}
	res := map[string]result{}
	for _, path := range []struct{ label, addr string }{{"direct", backend}, {"ingress", ingress}} {
		p50, p99 := latency(path.addr, name, *n, *size)
		mbps := throughput(path.addr, name, *total)
		cps := connRate(path.addr, name, *conns, *c)
		res[path.label] = result{p50, p99, mbps, cps}
		fmt.Printf("%-10s %-12s %10s %10s %12.1f %14.0f\n", path.label, "", p50, p99, mbps, cps)
	}
	d, i := res["direct"], res["ingress"]
	fmt.Printf("added latency p50 %s, p99 %s; throughput %.0f%% of direct; connections/s %.0f%% of direct\n",
		i.p50-d.p50, i.p99-d.p99, 100*i.mbps/d.mbps, 100*i.cps/d.cps)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("process: %d MiB total allocated, %d MiB heap in use at the end\n", ms.TotalAlloc>>20, ms.HeapInuse>>20)
}

func dial(addr, name string) *tls.Conn {
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: name, InsecureSkipVerify: true})
	if err != nil {
		log.Fatal(err)
	}
	return c
}

func latency(addr, name string, n, size int) (p50, p99 time.Duration) {
	c := dial(addr, name)
	defer c.Close()
	buf := make([]byte, size)
	out := make([]time.Duration, 0, n)
	for i := 0; i < n+n/10; i++ {
		t0 := time.Now()
		if _, err := c.Write(buf); err != nil {
			log.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			log.Fatal(err)
		}
		if i >= n/10 { // warm-up
			out = append(out, time.Since(t0))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out[len(out)/2], out[len(out)*99/100]
}

// throughput streams total bytes to the echo server and reads them back.
func throughput(addr, name string, total int64) float64 {
	c := dial(addr, name)
	defer c.Close()
	t0 := time.Now()
	go func() {
		buf := make([]byte, 64<<10)
		for sent := int64(0); sent < total; sent += int64(len(buf)) {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	if _, err := io.CopyN(io.Discard, c, total); err != nil {
		log.Fatal(err)
	}
	return float64(total) / time.Since(t0).Seconds() / 1e6
}

func connRate(addr, name string, n, conc int) float64 {
	var wg sync.WaitGroup
	jobs := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		jobs <- struct{}{}
	}
	close(jobs)
	t0 := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1)
			for range jobs {
				c := dial(addr, name)
				if _, err := c.Write(buf); err != nil {
					log.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					log.Fatal(err)
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(t0).Seconds()
}

func echoServer(cert tls.Certificate) string {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func selfSigned() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "echo"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"echo.default.mesh"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		log.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	s := string(b)
	if len(s) > 14 {
		s = s[:14]
	}
	return s
}
