package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/xdsnames"
)

// replicaOptions: CI-sized replica scenarios (150 Envoy-like proxies, 2
// replicas: real xds-server processes on a real etcd, TLS, tokens).
func replicaOptions(scenario string) options {
	var log bytes.Buffer
	return options{n: 150, services: 15, conc: 16, kind: xdsnames.KindEnvoy, mesh: "default",
		scenario: scenario, replicas: 2, settle: 2 * time.Second, timeout: 90 * time.Second,
		maxConnAgeGrace: time.Second, balance: 0.25, log: &log}
}

// checkReplicaResult: every proxy is back on a stream, none lost a
// resource or got a new version for an unchanged store, and a change made
// afterwards reached every proxy.
func checkReplicaResult(t *testing.T, res *replicaResult, o options) {
	t.Helper()
	var out bytes.Buffer
	res.print(&out)
	t.Log("\n" + out.String())
	if res.gaps != 0 || res.changes != 0 {
		t.Errorf("%d gaps, %d version changes on reconnect (want none): %s", res.gaps, res.changes, res.gapWhy)
	}
	if len(res.probe) != o.n {
		t.Errorf("probe reached %d of %d proxies", len(res.probe), o.n)
	}
	// With a short max connection age the proxies keep moving: some are
	// between streams at any moment.
	if o.scenario == "scaleout" {
		return
	}
	if res.noStream != 0 {
		t.Errorf("%d proxies without a stream at the end", res.noStream)
	}
	if len(res.back)+res.silent != res.affected {
		t.Errorf("%d answered + %d silent != %d affected", len(res.back), res.silent, res.affected)
	}
}

// TestReplicasRestart: scenario (e), both replicas SIGTERMed with every
// proxy on them, then started again; every proxy reconnects with its
// versions and keeps them.
func TestReplicasRestart(t *testing.T) {
	o := replicaOptions("restart")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := runReplicas(ctx, o)
	if err != nil {
		t.Fatalf("%v\n%s", err, o.log)
	}
	checkReplicaResult(t, res, o)
	if res.affected != o.n || len(res.reconnected) != o.n {
		t.Errorf("%d affected, %d reconnected, want %d", res.affected, len(res.reconnected), o.n)
	}
	if res.reconnects < o.n {
		t.Errorf("%d reconnects, want at least %d", res.reconnects, o.n)
	}
}

// TestReplicasScaleOut: scenario (f), one replica with a 3 s
// --max-connection-age, a second one added; every proxy reconnects within
// the age (+ jitter, grace) without losing a resource, and both replicas
// end up with proxies.
func TestReplicasScaleOut(t *testing.T) {
	o := replicaOptions("scaleout")
	o.maxConnAge = 3 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := runReplicas(ctx, o)
	if err != nil {
		t.Fatalf("%v\n%s", err, o.log)
	}
	checkReplicaResult(t, res, o)
	if res.balanced == 0 {
		t.Error("never balanced")
	}
	if res.reconnects < o.n {
		t.Errorf("%d reconnects, want every proxy (%d) moved at least once", res.reconnects, o.n)
	}
	for _, name := range []string{"xds-fleet", "xds-fleet-1"} {
		if res.spreadAfter[name] == 0 {
			t.Errorf("no proxy on %s after the scale-out: %v", name, res.spreadAfter)
		}
	}
}

// TestReplicasRestartDelta: scenario (e) over delta xDS: every proxy
// reconnects with initial_resource_versions, gets only its wildcard types'
// (empty) first responses and no named-type response, and counts as back
// on full config (none silent), without a gap or a version change.
func TestReplicasRestartDelta(t *testing.T) {
	o := replicaOptions("restart")
	o.delta = true
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := runReplicas(ctx, o)
	if err != nil {
		t.Fatalf("%v\n%s", err, o.log)
	}
	checkReplicaResult(t, res, o)
	if res.affected != o.n || len(res.back) != o.n {
		t.Errorf("%d affected, %d back on full config (%d silent), want %d", res.affected, len(res.back), res.silent, o.n)
	}
	if res.same < o.n {
		t.Errorf("%d types answered with the version held, want at least one per proxy (%d)", res.same, o.n)
	}
}
