package generator

import (
	"fmt"
	"sync"
	"testing"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// benchPolicies adds the other nine policy types to benchMesh: per service
// a TrafficRoute (80/20 by version, dataplanes alternate v1/v2), Retry,
// Timeout, CircuitBreaker, HealthCheck, FaultInjection and TrafficLog; one
// TrafficTrace for every proxy; one ProxyTemplate for the proxies of
// templated services (every service when all is set, else svc-0 only).
func benchPolicies(services int, dps []*resource.Resource, mesh *meshv1.Mesh, allTemplated bool) []*resource.Resource {
	for i, d := range dps {
		d.Spec.(*meshv1.Dataplane).Networking.Inbound[0].Tags["version"] = fmt.Sprintf("v%d", i%2+1)
	}
	mesh.Logging = &meshv1.Logging{DefaultBackend: "file", Backends: []*meshv1.Logging_Backend{{Name: "file", Type: "file", Path: "/tmp/access.log"}}}
	mesh.Tracing = &meshv1.Tracing{DefaultBackend: "zipkin", Backends: []*meshv1.Tracing_Backend{{Name: "zipkin", Type: "zipkin", Url: "http://zipkin:9411/api/v2/spans"}}}
	all := []*meshv1.Selector{{Match: map[string]string{resource.ServiceTag: "*"}}}
	var out []*resource.Resource
	for s := 0; s < services; s++ {
		svc := fmt.Sprintf("svc-%d", s)
		dst := []*meshv1.Selector{{Match: map[string]string{resource.ServiceTag: svc}}}
		tr := resource.New(resource.TrafficRouteType, "bench", "route-"+svc)
		tr.Spec = &meshv1.TrafficRoute{Sources: all, Destinations: dst, Conf: &meshv1.TrafficRoute_Conf{Split: []*meshv1.TrafficRoute_Split{
			{Weight: 80, Destination: map[string]string{resource.ServiceTag: svc, "version": "v1"}},
			{Weight: 20, Destination: map[string]string{resource.ServiceTag: svc, "version": "v2"}},
		}}}
		rt := resource.New(resource.RetryType, "bench", "retry-"+svc)
		rt.Spec = &meshv1.Retry{Sources: all, Destinations: dst, Conf: &meshv1.Retry_Conf{Http: &meshv1.Retry_Conf_Http{NumRetries: 3, PerTryTimeout: "1s"}}}
		to := resource.New(resource.TimeoutType, "bench", "timeout-"+svc)
		to.Spec = &meshv1.Timeout{Sources: all, Destinations: dst, Conf: &meshv1.Timeout_Conf{ConnectTimeout: "2s", Http: &meshv1.Timeout_Conf_Http{RequestTimeout: "10s"}}}
		cb := resource.New(resource.CircuitBreakerType, "bench", "cb-"+svc)
		cb.Spec = &meshv1.CircuitBreaker{Sources: all, Destinations: dst, Conf: &meshv1.CircuitBreaker_Conf{Interval: "5s", BaseEjectionTime: "30s",
			Thresholds: &meshv1.CircuitBreaker_Conf_Thresholds{MaxConnections: 100, MaxRequests: 100},
			Detectors:  &meshv1.CircuitBreaker_Conf_Detectors{TotalErrors: &meshv1.CircuitBreaker_Conf_Detectors_Errors{Consecutive: 5}}}}
		hc := resource.New(resource.HealthCheckType, "bench", "hc-"+svc)
		hc.Spec = &meshv1.HealthCheck{Sources: all, Destinations: dst, Conf: &meshv1.HealthCheck_Conf{Interval: "10s", Timeout: "2s", UnhealthyThreshold: 3, HealthyThreshold: 1,
			Http: &meshv1.HealthCheck_Conf_Http{Path: "/healthz"}}}
		fi := resource.New(resource.FaultInjectionType, "bench", "fault-"+svc)
		fi.Spec = &meshv1.FaultInjection{Sources: all, Destinations: dst, Conf: &meshv1.FaultInjection_Conf{Abort: &meshv1.FaultInjection_Conf_Abort{Percentage: 1, HttpStatus: 503}}}
		tl := resource.New(resource.TrafficLogType, "bench", "log-"+svc)
		tl.Spec = &meshv1.TrafficLog{Sources: all, Destinations: dst}
		out = append(out, tr, rt, to, cb, hc, fi, tl)
	}
	tt := resource.New(resource.TrafficTraceType, "bench", "trace-all")
	tt.Spec = &meshv1.TrafficTrace{Selectors: all}
	sel := []*meshv1.Selector{{Match: map[string]string{resource.ServiceTag: "svc-0"}}}
	if allTemplated {
		sel = all
	}
	pt := resource.New(resource.ProxyTemplateType, "bench", "template")
	pt.Spec = &meshv1.ProxyTemplate{Selectors: sel, Conf: &meshv1.ProxyTemplate_Conf{Modifications: []*meshv1.ProxyTemplate_Modification{
		{Type: "cluster", Operation: "patch", Match: &meshv1.ProxyTemplate_Modification_Match{Origin: "inbound"}, Value: "connectTimeout: 1s"},
	}}}
	return append(out, tt, pt)
}

// BenchmarkGenerateMeshPolicies regenerates every proxy of a 1,000-proxy
// mesh with TrafficPermission alone and with all ten policy types; the
// issue's bound is all ≤ 2× permissions-only (bench/RESULTS.md).
func BenchmarkGenerateMeshPolicies(b *testing.B) {
	const n = 1000
	for _, kind := range []string{KindEnvoy, KindGRPC} {
		for _, variant := range []string{"TrafficPermission", "all", "all+template-everywhere"} {
			mesh, dps, tps, vips := benchMesh(n)
			var others []*resource.Resource
			if variant != "TrafficPermission" {
				others = benchPolicies(max(n/10, 1), dps, mesh, variant != "all")
			}
			b.Run(fmt.Sprintf("kind=%s/policies=%s", kind, variant), func(b *testing.B) {
				regenerateAll(b, kind, dps, func() *Snapshot { return NewSnapshotWithPolicies("bench", mesh, dps, tps, vips, others) })
			})
		}
	}
}

// TestConcurrentGenerateWithPolicies: proxies generated at once from one
// snapshot (the reconciler's workers) get the same configuration as one
// by one from a fresh snapshot: the shared selectors and pieces are safe
// to build concurrently and never leak between callers.
func TestConcurrentGenerateWithPolicies(t *testing.T) {
	for _, kind := range []string{KindEnvoy, KindGRPC} {
		mesh, dps, tps, vips := benchMesh(60)
		others := benchPolicies(6, dps, mesh, false)
		want := map[string]map[string]string{}
		seq := NewSnapshotWithPolicies("bench", mesh, dps, tps, vips, others)
		for _, d := range dps {
			res, err := Generate(seq, &Proxy{Mesh: "bench", Name: d.Meta.GetName(), Kind: kind, Dataplane: seq.Dataplanes[d.Meta.GetName()], Identity: identity})
			if err != nil {
				t.Fatal(err)
			}
			want[d.Meta.GetName()] = res.Versions()
		}
		par := NewSnapshotWithPolicies("bench", mesh, dps, tps, vips, others)
		got := make([]map[string]string, len(dps))
		errs := make([]error, len(dps))
		var wg sync.WaitGroup
		for i, d := range dps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := Generate(par, &Proxy{Mesh: "bench", Name: d.Meta.GetName(), Kind: kind, Dataplane: par.Dataplanes[d.Meta.GetName()], Identity: identity})
				errs[i] = err
				if err == nil {
					got[i] = par.Versions(res)
				}
			}()
		}
		wg.Wait()
		for i, d := range dps {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			for typ, v := range want[d.Meta.GetName()] {
				if got[i][typ] != v {
					t.Fatalf("%s %s: %s version %s concurrently, %s one by one", kind, d.Meta.GetName(), typ, got[i][typ], v)
				}
			}
		}
	}
}
