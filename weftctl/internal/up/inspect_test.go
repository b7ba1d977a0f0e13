package up_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftmesh/weft/weftctl/internal/up"
)

func do(t *testing.T, method, url, tok, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// storedResources is every key under the store's prefix but the insights
// (which connected proxies keep rewriting), with its mod revision.
func storedResources(t *testing.T, endpoint string) map[string]int64 {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "/weft/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, kv := range resp.Kvs {
		if k := string(kv.Key); !strings.Contains(k, "Insight") {
			out[k] = kv.ModRevision
		}
	}
	return out
}

type typeDump struct {
	TypeURL      string            `json:"typeUrl"`
	Version      string            `json:"version"`
	State        string            `json:"state"`
	AckedVersion string            `json:"ackedVersion"`
	Resources    []json.RawMessage `json:"resources"`
}

type configDump struct {
	Source     string     `json:"source"`
	InstanceID string     `json:"instanceId"`
	ProxyKind  string     `json:"proxyKind"`
	Types      []typeDump `json:"types"`
}

// TestUpInspect: through the real API, xds-server and etcd of `weftctl up
// --demo`: the config dump of the demo's grpc-go client (connected through
// weft-dp) is what it ACKed, keys redacted; who may read it; and a
// dry-run policy preview stores nothing and answers matches, overrides and
// diffs.
func TestUpInspect(t *testing.T) {
	out := &syncBuf{}
	eps, stop := startUp(t, up.Options{DataDir: t.TempDir(), Demo: true, Out: out})
	defer stop()
	cp := eps.ControlPlanes[0]
	served := regexp.MustCompile(`demo: client-1 \(standalone\): calls to xds:///greeter.mesh: served by standalone: [1-9][0-9]*`)
	deadline := time.Now().Add(2 * time.Minute)
	for !served.MatchString(out.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("no calls from the demo client within 2 minutes:\n%s", out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	xds := cp.APIURL + "/meshes/demo/dataplanes/client-1/xds"

	// The client called through what it received: every type it got is
	// ACKed at the version the dump shows.
	var dump configDump
	var body string
	deadline = time.Now().Add(30 * time.Second)
	for {
		var code int
		code, body = get(t, xds, cp.AdminToken)
		if code != 200 {
			t.Fatalf("config dump: %d %s", code, body)
		}
		dump = configDump{}
		if err := json.Unmarshal([]byte(body), &dump); err != nil {
			t.Fatal(err)
		}
		acked := 0
		for _, td := range dump.Types {
			if td.State == "ACK" && td.AckedVersion == td.Version {
				acked++
			}
		}
		if len(dump.Types) > 0 && acked == len(dump.Types) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("config dump never fully ACKed:\n%s", body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if dump.Source != "stream" || dump.ProxyKind != "grpc" || dump.InstanceID != "up-standalone" {
		t.Fatalf("dump header: %+v", dump)
	}
	listeners := ""
	for _, td := range dump.Types {
		if strings.HasSuffix(td.TypeURL, "Listener") {
			for _, r := range td.Resources {
				listeners += string(r)
			}
		}
	}
	if !strings.Contains(listeners, `"name":"greeter.mesh`) || !strings.Contains(listeners, "apiListener") {
		t.Fatalf("no api_listener for greeter.mesh in the dump:\n%s", listeners)
	}
	if strings.Contains(body, "PRIVATE KEY") || !strings.Contains(body, `"[redacted]"`) {
		t.Fatalf("the dump's secrets are not redacted:\n%s", body)
	}

	// Who may read it.
	code, tokBody := do(t, "POST", cp.APIURL+"/tokens/dataplane", cp.AdminToken, `{"mesh":"demo","name":"greeter-1","services":["greeter"]}`)
	if code != 200 {
		t.Fatalf("dataplane token: %d %s", code, tokBody)
	}
	var greeterTok struct{ Token string }
	_ = json.Unmarshal([]byte(tokBody), &greeterTok)
	for _, tc := range []struct {
		url, tok string
		want     int
	}{
		{xds, "", 401},
		{xds, "not-a-token", 401},
		{xds, greeterTok.Token, 403},
		{cp.APIURL + "/meshes/demo/dataplanes/greeter-1/xds", greeterTok.Token, 200},
		{cp.APIURL + "/meshes/demo/dataplanes/nope/xds", cp.AdminToken, 404},
		{cp.APIURL + "/meshes/nope/dataplanes/client-1/xds", cp.AdminToken, 404},
	} {
		if code, body := get(t, tc.url, tc.tok); code != tc.want {
			t.Errorf("GET %s: %d, want %d: %s", tc.url, code, tc.want, body)
		}
	}

	// Dry run: nothing stored, matches, overrides and diffs answered.
	before := storedResources(t, cp.EtcdEndpoint)
	code, body = do(t, "PUT", cp.APIURL+"/meshes/demo/timeouts/client-to-greeter?dryRun=explain", cp.AdminToken,
		`{"type":"Timeout","mesh":"demo","name":"client-to-greeter","sources":[{"match":{"weft.io/service":"client"}}],`+
			`"destinations":[{"match":{"weft.io/service":"greeter"}}],"conf":{"connectTimeout":"1s","http":{"requestTimeout":"2s"}}}`)
	if code != 200 {
		t.Fatalf("dry run: %d %s", code, body)
	}
	var preview struct {
		Impacts []struct {
			Dataplane, Destination, LosesTo, Replaces string
			Applies                                   bool
		}
		MatchedDataplanes, ChangedProxies, ComparedProxies int
		Diffs                                              []struct {
			Dataplane string
			Types     []struct {
				TypeURL string   `json:"typeUrl"`
				Changed []string `json:"changed"`
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &preview); err != nil {
		t.Fatal(err)
	}
	if preview.MatchedDataplanes != 1 || len(preview.Impacts) != 1 || preview.Impacts[0].Dataplane != "client-1" ||
		preview.Impacts[0].Destination != "greeter" || !preview.Impacts[0].Applies {
		t.Fatalf("impacts: %s", body)
	}
	if preview.ChangedProxies != 1 || len(preview.Diffs) != 1 || preview.Diffs[0].Dataplane != "client-1" || len(preview.Diffs[0].Types) == 0 {
		t.Fatalf("diffs: %s", body)
	}
	// A second permission for the same pair loses to the demo's (ties go
	// by name): the preview names the one that stays in force.
	code, body = do(t, "POST", cp.APIURL+"/meshes/demo/traffic-permissions?dryRun=explain", cp.AdminToken,
		`{"type":"TrafficPermission","mesh":"demo","name":"other-client-to-greeter","sources":[{"match":{"weft.io/service":"client"}}],`+
			`"destinations":[{"match":{"weft.io/service":"greeter"}}]}`)
	if code != 200 || !strings.Contains(body, `"losesTo":"client-to-greeter"`) || !strings.Contains(body, `"applies":false`) {
		t.Fatalf("dry run of an overridden permission: %d %s", code, body)
	}
	// A bad policy: field-path 400.
	code, body = do(t, "PUT", cp.APIURL+"/meshes/demo/timeouts/bad?dryRun=explain", cp.AdminToken,
		`{"type":"Timeout","mesh":"demo","name":"bad","sources":[{"match":{"weft.io/service":"client"}}],`+
			`"destinations":[{"match":{"weft.io/service":"greeter"}}],"conf":{"connectTimeout":"-1s"}}`)
	if code != 400 || !strings.Contains(body, `"field":"conf.connectTimeout"`) {
		t.Fatalf("bad policy: %d %s", code, body)
	}
	if code, body := do(t, "PUT", cp.APIURL+"/meshes/demo/timeouts/x?dryRun=All", cp.AdminToken, `{}`); code != 400 {
		t.Fatalf("dryRun=All: %d %s", code, body)
	}
	after := storedResources(t, cp.EtcdEndpoint)
	if len(after) != len(before) {
		t.Fatalf("the dry runs changed the store: %d keys → %d", len(before), len(after))
	}
	for k, rev := range before {
		if after[k] != rev {
			t.Fatalf("the dry runs changed %s", k)
		}
	}
	if code, _ := get(t, cp.APIURL+"/meshes/demo/timeouts/client-to-greeter", cp.AdminToken); code != 404 {
		t.Fatalf("the previewed Timeout was stored: %d", code)
	}
}

// TestUpZonesConfigDump: in multi-zone mode a zone's API answers config
// dumps from its own xds-server; global runs none and says so (501).
func TestUpZonesConfigDump(t *testing.T) {
	eps, stop := startUp(t, up.Options{DataDir: t.TempDir(), Zones: 1, Demo: true, Out: &syncBuf{}})
	defer stop()
	var global, zone up.Endpoint
	for _, cp := range eps.ControlPlanes {
		switch cp.Mode {
		case "global":
			global = cp
		case "zone":
			zone = cp
		}
	}
	if code, body := get(t, global.APIURL+"/meshes/demo/dataplanes/client-1-zone-1/xds", global.AdminToken); code != 501 || !strings.Contains(body, "--xds-address") {
		t.Fatalf("global: %d %s", code, body)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		code, body := get(t, zone.APIURL+"/meshes/demo/dataplanes/client-1-zone-1/xds", zone.AdminToken)
		var d configDump
		_ = json.Unmarshal([]byte(body), &d)
		if code == 200 && d.Source == "stream" && d.ProxyKind == "grpc" && d.InstanceID == "up-"+zone.Name {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("zone config dump: %d %s", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
