// Command api is the api-server load tool: it creates N Dataplanes through
// the REST API with C concurrent clients, lists them page by page, and
// measures watch fan-out latency (PUT → event at W gRPC watchers).
//
// By default it starts an embedded etcd and an api-server in this process
// (both share the machine with the load generator); -url and -token aim it
// at a running control plane instead.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	apiapp "github.com/weftmesh/weft/api-server/app"
	"github.com/weftmesh/weft/pkg/etcdembed"
	"github.com/weftmesh/weft/pkg/seal"
	apiv1 "github.com/weftmesh/weft/proto/gen/go/weft/api/v1"
)

func main() {
	n := flag.Int("n", 10000, "dataplanes to create")
	c := flag.Int("c", 32, "concurrent REST clients")
	page := flag.Int("page", 100, "list page size")
	watchers := flag.Int("watchers", 100, "gRPC watchers for the fan-out test")
	changes := flag.Int("changes", 200, "changes observed by the watchers")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the create phase")
	flag.Parse()
	profile = *cpuprofile
	if err := run(*n, *c, *page, *watchers, *changes); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

var profile string

func run(n, conc, pageSize, watchers, changes int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, _ := os.MkdirTemp("", "weft-bench-api")
	defer os.RemoveAll(dir)
	etcd, err := etcdembed.Start(ctx, etcdembed.Config{Dir: dir})
	if err != nil {
		return err
	}
	defer etcd.Close()
	cli, err := etcd.Client()
	if err != nil {
		return err
	}
	keys, err := seal.GenerateKeyFile(dir + "/key")
	if err != nil {
		return err
	}
	cfg := apiapp.Default()
	cfg.GRPCAddress, cfg.HTTPAddress, cfg.AdminAddress = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Etcd.Client, cfg.Encryption.Keyring, cfg.Logging.Level = cli, keys, "error"
	a, err := apiapp.New(ctx, cfg)
	if err != nil {
		return err
	}
	go a.Run(ctx)
	tok, err := a.IssueAdminToken(ctx, "bench", time.Hour)
	if err != nil {
		return err
	}
	base := "http://" + a.HTTPAddr()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc * 2}}
	do := func(method, path, body string) (int, []byte, error) {
		req, _ := http.NewRequest(method, base+path, bytes.NewBufferString(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := hc.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	if code, b, err := do("PUT", "/meshes/default", `{"type":"Mesh"}`); err != nil || code >= 300 {
		return fmt.Errorf("create mesh: %d %s %v", code, b, err)
	}
	fmt.Printf("machine: %d CPUs, %s; api-server, etcd and load generator in one process\n\n", runtime.NumCPU(), runtime.Version())

	// 1. Creates.
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		_ = pprof.StartCPUProfile(f)
	}
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				body := fmt.Sprintf(`{"type":"Dataplane","networking":{"address":"10.%d.%d.%d","inbound":[{"port":8080,"tags":{"weft.io/service":"svc-%d","weft.io/protocol":"http"}}]}}`, i>>16&255, i>>8&255, i&255, i%500)
				t0 := time.Now()
				code, _, err := do("PUT", fmt.Sprintf("/meshes/default/dataplanes/dp-%05d", i), body)
				lat[i] = time.Since(t0)
				if err != nil || code != 201 {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if profile != "" {
		pprof.StopCPUProfile()
	}
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	fmt.Printf("create: N=%d c=%d failed=%d  %.0f/s  p50=%s p99=%s max=%s  heap=%dMiB\n", n, conc, failed.Load(),
		float64(n)/el.Seconds(), pct(lat, 50), pct(lat, 99), pct(lat, 100), ms1.HeapAlloc>>20)

	// 2. List page by page.
	var pages []time.Duration
	path := fmt.Sprintf("/meshes/default/dataplanes?size=%d", pageSize)
	total := 0
	for path != "" {
		t0 := time.Now()
		code, b, err := do("GET", path, "")
		pages = append(pages, time.Since(t0))
		if err != nil || code != 200 {
			return fmt.Errorf("list: %d %v", code, err)
		}
		var l struct {
			Items []struct{} `json:"items"`
			Next  string     `json:"next"`
		}
		if err := json.Unmarshal(b, &l); err != nil {
			return err
		}
		total += len(l.Items)
		path = l.Next
	}
	fmt.Printf("list:   %d items in %d pages of %d  p50=%s p99=%s max=%s per page\n", total, len(pages), pageSize, pct(pages, 50), pct(pages, 99), pct(pages, 100))

	// 3. Watch fan-out: W gRPC watchers on dataplanes; time from PUT
	// returning to each watcher receiving the event.
	conn, err := grpc.NewClient(a.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	wctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	sent := make([]atomic.Int64, changes)
	var fan []time.Duration
	var fanMu sync.Mutex
	var ready, got sync.WaitGroup
	rev, err := currentRevision(wctx, conn)
	if err != nil {
		return err
	}
	for w := 0; w < watchers; w++ {
		ready.Add(1)
		got.Add(1)
		go func() {
			defer got.Done()
			st, err := apiv1.NewResourceServiceClient(conn).Watch(wctx, &apiv1.WatchRequest{Collection: "dataplanes", Mesh: "default", FromRevision: rev})
			ready.Done()
			if err != nil {
				return
			}
			seen := 0
			for seen < changes {
				ev, err := st.Recv()
				if err != nil {
					return
				}
				if ev.Kind != apiv1.WatchEvent_PUT {
					continue
				}
				var i int
				if _, err := fmt.Sscanf(ev.Resource.Meta.Name, "fan-%d", &i); err != nil {
					continue
				}
				d := time.Since(time.Unix(0, sent[i].Load()))
				fanMu.Lock()
				fan = append(fan, d)
				fanMu.Unlock()
				seen++
			}
		}()
	}
	ready.Wait()
	time.Sleep(200 * time.Millisecond) // let the watch streams establish before measuring (not a synchronisation of results)
	for i := 0; i < changes; i++ {
		sent[i].Store(time.Now().UnixNano())
		body := `{"type":"Dataplane","networking":{"address":"10.200.0.1","inbound":[{"port":8080,"tags":{"weft.io/service":"fan"}}]}}`
		if code, b, err := do("PUT", fmt.Sprintf("/meshes/default/dataplanes/fan-%d", i), body); err != nil || code != 201 {
			return fmt.Errorf("fan put: %d %s %v", code, b, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	doneC := make(chan struct{})
	go func() { got.Wait(); close(doneC) }()
	select {
	case <-doneC:
	case <-time.After(60 * time.Second):
	}
	fanMu.Lock()
	fmt.Printf("watch:  %d watchers x %d changes = %d deliveries (of %d)  p50=%s p99=%s max=%s  (PUT sent → event received)\n",
		watchers, changes, len(fan), watchers*changes, pct(fan, 50), pct(fan, 99), pct(fan, 100))
	fanMu.Unlock()
	return nil
}

func currentRevision(ctx context.Context, conn *grpc.ClientConn) (int64, error) {
	st, err := apiv1.NewResourceServiceClient(conn).Watch(ctx, &apiv1.WatchRequest{Collection: "meshes"})
	if err != nil {
		return 0, err
	}
	ev, err := st.Recv()
	if err != nil {
		return 0, err
	}
	return ev.Revision, nil
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s) - 1) * p / 100
	return s[i].Round(10 * time.Microsecond)
}
