package iptables

import (
	"context"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftmesh/weft/pkg/tproxy"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func TestRulesGolden(t *testing.T) {
	full := tproxy.Default()
	full.InboundPorts = []uint16{8080, 5000, 8080}
	full.ExcludeInboundPorts = []uint16{15021, 22}
	full.ExcludeOutboundPorts = []uint16{5678, 2379}
	full.ExcludeUIDs = []uint32{1001, tproxy.DefaultProxyUID, 0}
	full.DNSServer = netip.MustParseAddrPort("10.96.0.53:5653")
	custom := tproxy.Default()
	custom.ProxyUID, custom.InboundRedirectPort, custom.OutboundRedirectPort = 1337, 16006, 16001
	for name, c := range map[string]tproxy.Config{"default": tproxy.Default(), "full": full, "custom-ports": custom} {
		t.Run(name, func(t *testing.T) {
			got, err := Rules(c)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name+".rules")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("rules differ from %s (run with -update after checking):\n%s", path, got)
			}
		})
	}
}

// The proxy's own UID is returned before anything is redirected, the DNS
// DNAT comes before the TCP redirect (TCP/53 would go to Envoy otherwise),
// and excluded inbound ports before the catch-all.
func TestRulesOrder(t *testing.T) {
	c := tproxy.Default()
	c.ExcludeInboundPorts = []uint16{9090}
	c.DNSServer = netip.MustParseAddrPort("10.0.0.10:5653")
	b, err := Rules(c)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	before := func(a, z string) {
		t.Helper()
		i, j := strings.Index(s, a), strings.Index(s, z)
		if i < 0 || j < 0 || i > j {
			t.Errorf("%q must come before %q in\n%s", a, z, s)
		}
	}
	before("--uid-owner 5678 -j RETURN", "-j WEFT_REDIRECT")
	before("--uid-owner 5678 -j RETURN", "-p udp --dport 53 -j DNAT --to-destination 10.0.0.10:5653")
	before("-p tcp --dport 53 -j DNAT", "-A WEFT_OUTPUT -p tcp -j WEFT_REDIRECT")
	before("--dport 9090 -j RETURN", "-A WEFT_INBOUND -p tcp -j WEFT_IN_REDIRECT")
	if !strings.HasSuffix(s, "COMMIT\n") {
		t.Errorf("no COMMIT at the end:\n%s", s)
	}
}

func TestRulesRejectsBadConfig(t *testing.T) {
	c := tproxy.Default()
	c.OutboundRedirectPort = c.InboundRedirectPort
	c.DNSServer = netip.MustParseAddrPort("[::1]:53")
	_, err := Rules(c)
	if err == nil || !strings.Contains(err.Error(), "they must differ") || !strings.Contains(err.Error(), "IPv4") {
		t.Fatalf("err = %v, want both problems", err)
	}
}

func TestApplyFeedsIptablesRestore(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "stdin")
	script := filepath.Join(dir, "iptables-restore")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = --noflush ] || { echo want --noflush >&2; exit 3; }\ncat > "+out+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	rules, err := Rules(tproxy.Default())
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply(context.Background(), script, rules); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil || string(got) != string(rules) {
		t.Fatalf("iptables-restore got %q (%v), want the rules", got, err)
	}

	failing := filepath.Join(dir, "failing")
	if err := os.WriteFile(failing, []byte("#!/bin/sh\necho 'iptables-restore: line 3 failed' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Apply(context.Background(), failing, rules); err == nil || !strings.Contains(err.Error(), "line 3 failed") {
		t.Fatalf("err = %v, want iptables-restore's message", err)
	}
}
