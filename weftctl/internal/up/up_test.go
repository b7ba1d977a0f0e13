package up_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"github.com/miekg/dns"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/weftctl/internal/up"
)

// TestMain lets this test binary stand in for weftctl as the demo's child
// processes (`weftctl demo-app ...`), as cmd/weftctl/main.go does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == up.DemoAppCommand {
		os.Exit(up.DemoApp(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// syncBuf is up's output, written by several goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startUp runs `weftctl up` in-process and waits for it to be ready.
func startUp(t *testing.T, o up.Options) (up.Endpoints, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan up.Endpoints, 1)
	o.EphemeralPorts = true
	o.OnReady = func(e up.Endpoints) { ready <- e }
	done := make(chan error, 1)
	go func() { done <- up.Run(ctx, o) }()
	select {
	case eps := <-ready:
		return eps, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("up returned %v", err)
			}
		}
	case err := <-done:
		cancel()
		t.Fatalf("up failed: %v", err)
	case <-time.After(2 * time.Minute):
		cancel()
		t.Fatal("up not ready within 2 minutes")
	}
	return up.Endpoints{}, nil
}

func get(t *testing.T, url, tok string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestUpStandaloneDemoAndRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	eps, stop := startUp(t, up.Options{DataDir: dir, Demo: true})
	if len(eps.ControlPlanes) != 1 || eps.ControlPlanes[0].Mode != "standalone" || eps.ControlPlanes[0].AdminToken == "" {
		t.Fatalf("endpoints: %+v", eps)
	}
	var onDisk up.Endpoints
	data, err := os.ReadFile(filepath.Join(dir, "endpoints.json"))
	if err != nil || json.Unmarshal(data, &onDisk) != nil || onDisk.ControlPlanes[0].APIURL != eps.ControlPlanes[0].APIURL {
		t.Fatalf("endpoints.json: %v %s", err, data)
	}
	cp := eps.ControlPlanes[0]
	checkCAFile(t, cp)
	// A second up on the same data dir fails at once, naming the fix.
	errc := make(chan error, 1)
	go func() { errc <- up.Run(context.Background(), up.Options{DataDir: dir, EphemeralPorts: true}) }()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "is in use by another weftctl up (pid ") || !strings.Contains(err.Error(), "--data-dir") {
			t.Fatalf("second up on the same data dir: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("a second up on the same data dir did not fail fast")
	}
	if code, _ := get(t, cp.APIURL+"/meshes", ""); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	code, body := get(t, cp.APIURL+"/meshes/demo", cp.AdminToken)
	if code != 200 || !strings.Contains(body, `"enabledBackend":"ca-1"`) {
		t.Fatalf("demo mesh: %d %s", code, body)
	}
	stop()
	// Data survives a restart; the old token still works (same signing
	// key) and is reused: restarts do not mint more admin tokens.
	eps2, stop2 := startUp(t, up.Options{DataDir: dir})
	if code, body := get(t, eps2.ControlPlanes[0].APIURL+"/meshes/demo", cp.AdminToken); code != 200 {
		t.Fatalf("after restart: %d %s", code, body)
	}
	if eps2.ControlPlanes[0].AdminToken != cp.AdminToken {
		t.Fatalf("restart minted a new admin token while the old one is valid")
	}
	// A token that no longer verifies (here: revoked) is replaced.
	req, _ := http.NewRequest("POST", eps2.ControlPlanes[0].APIURL+"/tokens/revoke", strings.NewReader(`{"token":"`+cp.AdminToken+`"}`))
	req.Header.Set("Authorization", "Bearer "+cp.AdminToken)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("revoke: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	stop2()
	eps3, stop3 := startUp(t, up.Options{DataDir: dir})
	defer stop3()
	tok3 := eps3.ControlPlanes[0].AdminToken
	if tok3 == cp.AdminToken {
		t.Fatal("a revoked admin token was reused")
	}
	if code, body := get(t, eps3.ControlPlanes[0].APIURL+"/meshes/demo", tok3); code != 200 {
		t.Fatalf("new admin token: %d %s", code, body)
	}
	if code, _ := get(t, eps3.ControlPlanes[0].APIURL+"/meshes/demo", cp.AdminToken); code != 401 {
		t.Fatalf("revoked admin token: %d, want 401", code)
	}
}

func TestUpZonesSyncGlobalPolicies(t *testing.T) {
	var out bytes.Buffer
	eps, stop := startUp(t, up.Options{DataDir: t.TempDir(), Zones: 2, Demo: true, Out: &out})
	defer stop()
	if len(eps.ControlPlanes) != 3 || eps.ControlPlanes[0].Mode != "global" || eps.ControlPlanes[2].Zone != "zone-2" {
		t.Fatalf("control planes: %+v", eps.ControlPlanes)
	}
	// Every control plane's admin token and admin ports are printed, not
	// only global's.
	for _, cp := range eps.ControlPlanes {
		if !strings.Contains(out.String(), cp.AdminToken) || !strings.Contains(out.String(), "api-server "+cp.AdminAddresses["api-server"]) {
			t.Fatalf("summary lacks %s's admin token or ports:\n%s", cp.Name, out.String())
		}
	}
	checkCAFile(t, eps.ControlPlanes[1])
	for _, zone := range eps.ControlPlanes[1:] {
		// Each zone runs its ingress; its ZoneIngress reaches global,
		// advertising the address endpoints.json names.
		if zone.IngressAddress == "" || zone.AdminAddresses["ingress-manager"] == "" {
			t.Fatalf("%s: no ingress in endpoints: %+v", zone.Name, zone)
		}
		_, port, _ := net.SplitHostPort(zone.IngressAddress)
		zi := eps.ControlPlanes[0].APIURL + "/zoneingresses/" + zone.Zone + ".ingress"
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			code, body := get(t, zi, eps.ControlPlanes[0].AdminToken)
			if code == 200 && strings.Contains(body, `"advertisedPort":`+port) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: ZoneIngress not on global within 30s: %d %s", zone.Name, code, body)
			}
		}
		url := zone.APIURL + "/meshes/demo/traffic-permissions/client-to-greeter"
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, body := get(t, url, zone.AdminToken)
			if code == 200 {
				if !strings.Contains(body, `"origin":"global"`) {
					t.Fatalf("%s: synced policy lacks origin: %s", zone.Name, body)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: demo policy not synced within 30s: %d %s", zone.Name, code, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
		req, _ := http.NewRequest("PUT", zone.APIURL+"/meshes/demo", strings.NewReader(`{"type":"Mesh"}`))
		req.Header.Set("Authorization", "Bearer "+zone.AdminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 {
			t.Fatalf("%s: mesh write on a zone: %d, want 405", zone.Name, resp.StatusCode)
		}
	}
}

// TestUpDemoResolvesMeshNames asks each zone's real DNS server for the demo
// service until it answers with a VIP from 240.0.0.0/4.
func TestUpDemoResolvesMeshNames(t *testing.T) {
	eps, stop := startUp(t, up.Options{DataDir: t.TempDir(), Zones: 2, Demo: true})
	defer stop()
	for _, zone := range eps.ControlPlanes[1:] {
		if zone.DNSAddress == "" || zone.XDSAddress == "" || zone.CAAddress == "" {
			t.Fatalf("%s lacks services: %+v", zone.Name, zone)
		}
		c := &dns.Client{Net: "udp", Timeout: time.Second}
		m := new(dns.Msg)
		m.SetQuestion("greeter.demo.mesh.", dns.TypeA)
		deadline := time.Now().Add(30 * time.Second)
		for {
			r, _, err := c.Exchange(m, zone.DNSAddress)
			if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1 {
				ip := r.Answer[0].(*dns.A).A
				if ip[0]&0xf0 != 240 {
					t.Fatalf("%s: VIP %s outside 240.0.0.0/4", zone.Name, ip)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: greeter.demo.mesh not answered within 30s: %v %v", zone.Name, r, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// TestUpDemoZonesShareOneMeshRoot: the demo mesh's builtin CA root is made
// once on global and synced to every zone, so all zones issue certificates
// under one root (mTLS across zones).
func TestUpDemoZonesShareOneMeshRoot(t *testing.T) {
	eps, stop := startUp(t, up.Options{DataDir: t.TempDir(), Zones: 2, Demo: true})
	defer stop()
	var roots []string
	for _, cp := range eps.ControlPlanes {
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, body := get(t, cp.APIURL+"/meshes/demo/secrets/ca-builtin-ca-1", cp.AdminToken)
			if code == 200 {
				var s struct{ Data string }
				if err := json.Unmarshal([]byte(body), &s); err != nil || s.Data == "" {
					t.Fatalf("%s: secret body: %v %s", cp.Name, err, body)
				}
				roots = append(roots, s.Data)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: mesh root not present within 30s: %d %s", cp.Name, code, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if roots[0] != roots[1] || roots[1] != roots[2] {
		t.Fatal("zones hold different mesh roots")
	}
}

// checkCAFile: endpoints.json names the control-plane CA, written to the
// data dir, and it verifies the xDS listener's certificate.
func checkCAFile(t *testing.T, cp up.Endpoint) {
	t.Helper()
	if !filepath.IsAbs(cp.CACertFile) {
		t.Fatalf("caCertFile %q is not absolute", cp.CACertFile)
	}
	pem, err := os.ReadFile(cp.CACertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", cp.CACertFile)
	}
	conn, err := tls.Dial("tcp", cp.XDSAddress, &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatalf("xDS listener does not verify with %s: %v", cp.CACertFile, err)
	}
	conn.Close()
}

// TestUpDemoClientCallsGreeter: `weftctl up --demo` runs the greeter and the
// client (child processes, weft-dp's certificate loop in up) and the client
// prints its call counts by serving zone; the greeter saw the client's
// SPIFFE ID, so the calls were mTLS with the identity weft-dp delivered.
func TestUpDemoClientCallsGreeter(t *testing.T) {
	out := &syncBuf{}
	_, stop := startUp(t, up.Options{DataDir: t.TempDir(), Demo: true, Out: out})
	defer stop()
	served := regexp.MustCompile(`demo: client-1 \(standalone\): calls to xds:///greeter.mesh: served by standalone: [1-9][0-9]*; .*you are spiffe://demo/client`)
	deadline := time.Now().Add(2 * time.Minute)
	for !served.MatchString(out.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("no call counts from the demo client within 2 minutes:\n%s", out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The client starts once the greeter serves and is ready: no call
	// failed before the first success.
	for _, l := range regexp.MustCompile(`demo: client-1 \(standalone\): calls to .*`).FindAllString(out.String(), -1) {
		if !strings.Contains(l, "; failed: 0") || strings.Contains(l, "nobody yet") {
			t.Fatalf("a demo call failed before the first success: %s\n%s", l, out.String())
		}
	}
}

// TestUpZonesDemoCallsCrossZone: with --zones 2 the demo client runs in
// zone-1 and the greeter in zone-2; the client's calls are served by zone-2
// through zone-2's ingress, end-to-end mTLS (the greeter sees the client's
// SPIFFE ID).
func TestUpZonesDemoCallsCrossZone(t *testing.T) {
	out := &syncBuf{}
	_, stop := startUp(t, up.Options{DataDir: t.TempDir(), Zones: 2, Demo: true, Out: out})
	defer stop()
	served := regexp.MustCompile(`demo: client-1-zone-1 \(zone-1\): calls to xds:///greeter.mesh: served by zone-2: [1-9][0-9]*; .*from greeter-1-zone-2 in zone-2; you are spiffe://demo/client`)
	deadline := time.Now().Add(3 * time.Minute)
	for !served.MatchString(out.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("no cross-zone calls from the demo client within 3 minutes:\n%s", out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// No call failed on the way: the greeter is routable only once it
	// serves, and the client starts only once zone-1 routes to it. Every
	// summary so far, the first included, counts no failure.
	summary := regexp.MustCompile(`demo: client-1-zone-1 \(zone-1\): calls to xds:///greeter.mesh: .*`)
	lines := summary.FindAllString(out.String(), -1)
	if len(lines) == 0 {
		t.Fatalf("no summary lines:\n%s", out.String())
	}
	for _, l := range lines {
		if !strings.Contains(l, "; failed: 0") || strings.Contains(l, "nobody yet") {
			t.Fatalf("a demo call failed before the first success in zone-2: %s\n%s", l, out.String())
		}
	}
}
