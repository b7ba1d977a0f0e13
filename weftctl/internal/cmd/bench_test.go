package cmd_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/weftctl/internal/apitest"
	"github.com/weftmesh/weft/weftctl/internal/client"
	"github.com/weftmesh/weft/weftctl/internal/cmd"
	"github.com/weftmesh/weft/weftctl/internal/up"
)

// Benchmarks of the CLI's own cost (decode, paging, rendering), against the
// in-memory fixture and against the real api-server. Numbers and how to run
// them: bench/results/weftctl.md.

func benchDataplane(mesh string, i int) *resource.Resource {
	r, err := resource.Unmarshal([]byte(fmt.Sprintf(
		`{"type":"Dataplane","mesh":%q,"name":"dp-%05d","networking":{"address":"10.%d.%d.%d","inbound":[{"port":8080,"tags":{"weft.io/service":"svc-%d","version":"v1"}}],"outbound":[{"port":9000,"tags":{"weft.io/service":"backend"}}]}}`,
		mesh, i, i/65536%256, i/256%256, i%256, i%50)), nil)
	if err != nil {
		panic(err)
	}
	return r
}

func runQuiet(b *testing.B, env map[string]string, args ...string) {
	a := cmd.New(strings.NewReader(""), io.Discard, io.Discard)
	a.Getenv = func(k string) string { return env[k] }
	if code := a.Run(context.Background(), args); code != 0 {
		var errb bytes.Buffer
		a.Stderr = &errb
		a.Run(context.Background(), args)
		b.Fatalf("weftctl %v: exit %d: %s", args, code, errb.String())
	}
}

func BenchmarkGetDataplanesFixture(b *testing.B) {
	srv := apitest.Start(b, token)
	srv.Put(resource.New(resource.MeshType, "", "default"))
	const n = 10000
	for i := range n {
		srv.Put(benchDataplane("default", i))
	}
	env := map[string]string{"WEFT_CP": srv.URL, "WEFT_TOKEN": token, "WEFTCTL_CONFIG": filepath.Join(b.TempDir(), "w.yaml")}
	for _, format := range []string{"table", "yaml", "json"} {
		b.Run(fmt.Sprintf("n=%d/o=%s", n, format), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				runQuiet(b, env, "get", "dataplanes", "-o", format)
			}
		})
	}
}

// BenchmarkRealAPIServer seeds dataplanes through the REST API of a real
// api-server on embedded etcd, then measures `get dataplanes` and `apply` of
// an unchanged file (GET per resource, no PUT).
func BenchmarkRealAPIServer(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan up.Endpoints, 1)
	done := make(chan error, 1)
	go func() {
		done <- up.Run(ctx, up.Options{DataDir: b.TempDir(), EphemeralPorts: true, OnReady: func(e up.Endpoints) { ready <- e }})
	}()
	var cp up.Endpoint
	select {
	case eps := <-ready:
		cp = eps.ControlPlanes[0]
	case err := <-done:
		cancel()
		b.Fatalf("up: %v", err)
	case <-time.After(2 * time.Minute):
		cancel()
		b.Fatal("up not ready")
	}
	defer func() { cancel(); <-done }()
	c, err := client.New(cp.APIURL, cp.AdminToken)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Put(ctx, resource.New(resource.MeshType, "", "default")); err != nil {
		b.Fatal(err)
	}
	const n = 2000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	var manifest strings.Builder
	for i := range n {
		js, _ := resource.MarshalJSON(benchDataplane("default", i))
		if i < 200 {
			manifest.Write(js)
			manifest.WriteString("\n---\n")
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := c.Put(ctx, benchDataplane("default", i)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	env := map[string]string{"WEFT_CP": cp.APIURL, "WEFT_TOKEN": cp.AdminToken, "WEFTCTL_CONFIG": filepath.Join(b.TempDir(), "w.yaml")}
	b.Run(fmt.Sprintf("get/n=%d/o=table", n), func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			runQuiet(b, env, "get", "dataplanes")
		}
	})
	b.Run(fmt.Sprintf("get/n=%d/o=yaml", n), func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			runQuiet(b, env, "get", "dataplanes", "-o", "yaml")
		}
	})
	b.Run("apply-unchanged/n=200", func(b *testing.B) {
		b.ReportAllocs()
		in := manifest.String()
		for b.Loop() {
			a := cmd.New(strings.NewReader(in), io.Discard, io.Discard)
			a.Getenv = func(k string) string { return env[k] }
			if code := a.Run(ctx, []string{"apply", "-f", "-"}); code != 0 {
				b.Fatalf("apply: exit %d", code)
			}
		}
	})
}
