package reconcile

import (
	"context"
	"fmt"
	"strings"
	"testing"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/xds-server/internal/generator"
)

// TestEndpointOnlyPush: after endpoint-only changes (an instance moved,
// added, marked unready, removed) the callers get endpoint-only pushes
// (their other types kept from the cache), and after each change, and after
// a change that is not endpoint-only (a TrafficRoute, a protocol), every
// proxy's cache snapshot holds what a full generation on a snapshot built
// from scratch gives: the same version of every type and the same
// ClusterLoadAssignment bytes.
func TestEndpointOnlyPush(t *testing.T) {
	st := store.New(etcdtest.Client(t, nil))
	y := "type: Mesh\nname: m\n"
	for i := 1; i <= 3; i++ {
		y += "---" + dp(fmt.Sprint("web-", i), "web", "backend")
	}
	for i := 1; i <= 2; i++ {
		y += "---" + strings.Replace(dp(fmt.Sprint("backend-", i), "backend", ""), "10.0.0.1", fmt.Sprint("10.0.1.", i), 1)
	}
	apply(t, st, y)
	rec, cache, m := startReconciler(t, st)
	nodes := []string{"m.web-1", "m.web-2", "m.web-3", "m.backend-1", "m.backend-2"}
	for _, n := range nodes {
		_, name, _ := generator.ParseNodeID(n)
		rec.Connect(n, "m", name, generator.KindEnvoy, nil)
	}
	// matches reports whether every proxy's cache snapshot is what a full
	// generation from scratch gives now ("" when so).
	matches := func() string {
		fresh := generator.FromView("m", m.View("m"))
		for _, n := range nodes {
			_, name, _ := generator.ParseNodeID(n)
			want, err := generator.Generate(fresh, &generator.Proxy{Mesh: "m", Name: name, Kind: generator.KindEnvoy, Dataplane: fresh.Dataplanes[name]})
			if err != nil {
				return fmt.Sprintf("%s: %v", n, err)
			}
			got, err := cache.GetSnapshot(n)
			if err != nil {
				return fmt.Sprintf("%s: no snapshot", n)
			}
			wv := want.Versions()
			for _, typ := range generator.TypeURLs {
				if got.GetVersion(typ) != cacheVersion(wv[typ]) {
					return fmt.Sprintf("%s: %s version %s, from scratch %s", n, typ, got.GetVersion(typ), cacheVersion(wv[typ]))
				}
			}
			items := got.GetResources(resourcev3.EndpointType)
			if len(items) != len(want[resourcev3.EndpointType]) {
				return fmt.Sprintf("%s: %d endpoint resources, from scratch %d", n, len(items), len(want[resourcev3.EndpointType]))
			}
			for _, cla := range want[resourcev3.EndpointType] {
				g := items[cachev3.GetResourceName(cla)]
				if g == nil {
					return fmt.Sprintf("%s: no %s", n, cachev3.GetResourceName(cla))
				}
				gb, _ := proto.MarshalOptions{Deterministic: true}.Marshal(g)
				wb, _ := proto.MarshalOptions{Deterministic: true}.Marshal(cla)
				if string(gb) != string(wb) {
					return fmt.Sprintf("%s: %s differs from scratch", n, cachev3.GetResourceName(cla))
				}
			}
		}
		return ""
	}
	check := func(what string) {
		t.Helper()
		last := ""
		waitFor(t, what+": every snapshot as from scratch", func() bool { last = matches(); return last == "" })
		if last != "" {
			t.Fatalf("%s: %s", what, last)
		}
	}
	check("first snapshots")
	steps := []struct {
		what         string
		y            string
		del          string
		endpointOnly bool
	}{
		{what: "backend-1 moves", y: strings.Replace(dp("backend-1", "backend", ""), "10.0.0.1", "10.0.1.9", 1), endpointOnly: true},
		{what: "backend-3 added", y: strings.Replace(dp("backend-3", "backend", ""), "10.0.0.1", "10.0.1.3", 1), endpointOnly: true},
		{what: "backend-2 unready", y: strings.Replace(dp("backend-2", "backend", ""), "10.0.0.1", "10.0.1.2", 1) + "    health:\n      ready: false\n", endpointOnly: true},
		{what: "backend-3 removed", del: "backend-3", endpointOnly: true},
		{what: "a TrafficRoute", y: "type: TrafficRoute\nmesh: m\nname: r\nsources:\n- match:\n    weft.io/service: '*'\ndestinations:\n- match:\n    weft.io/service: backend\nconf:\n  split:\n  - weight: 90\n    destination:\n      weft.io/service: backend\n  - weight: 10\n    destination:\n      weft.io/service: backend\n      version: v2\n"},
		{what: "backend-1 moves after the route", y: strings.Replace(dp("backend-1", "backend", ""), "10.0.0.1", "10.0.1.8", 1), endpointOnly: true},
		// backend-1 comes first: its protocol is the service's.
		{what: "backend speaks http", y: strings.Replace(strings.Replace(dp("backend-1", "backend", ""), "10.0.0.1", "10.0.1.8", 1), "weft.io/service: backend", "weft.io/service: backend\n      weft.io/protocol: http", 1)},
	}
	versions := func(n string) string {
		s, err := cache.GetSnapshot(n)
		if err != nil {
			return ""
		}
		v := ""
		for _, typ := range generator.TypeURLs {
			v += s.GetVersion(typ) + ","
		}
		return v
	}
	for _, step := range steps {
		before := rec.endpointPushes.Load()
		web := versions("m.web-1")
		if step.del != "" {
			if err := st.Delete(context.Background(), resource.DataplaneType, "m", step.del, 0); err != nil {
				t.Fatal(err)
			}
		} else {
			apply(t, st, step.y)
		}
		// Every step changes web-1's configuration: wait for it first
		// (the model sees the write a little after it commits).
		waitFor(t, step.what+": web-1 pushed", func() bool { return versions("m.web-1") != web })
		check(step.what)
		// The three web proxies call backend; backend-1 changes itself.
		if got := rec.endpointPushes.Load() - before; step.endpointOnly && got < 3 {
			t.Errorf("%s: %d endpoint-only pushes, want the 3 callers'", step.what, got)
		} else if !step.endpointOnly && got != 0 {
			t.Errorf("%s: %d endpoint-only pushes, want none", step.what, got)
		}
	}
}
