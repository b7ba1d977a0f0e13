package tproxy

import (
	"flag"
	"io"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// The flag names and defaults are a contract with every injected pod: a
// change here breaks pods injected by an older webhook.
func TestContractPinned(t *testing.T) {
	pinned := map[string]string{
		FlagProxyUID: "proxy-uid", FlagInboundRedirectPort: "redirect-inbound-port", FlagOutboundRedirectPort: "redirect-outbound-port",
		FlagInboundPorts: "inbound-ports", FlagExcludeInboundPorts: "exclude-inbound-ports",
		FlagExcludeOutboundPorts: "exclude-outbound-ports", FlagExcludeUIDs: "exclude-uids", FlagDNSServer: "dns-server",
	}
	for got, want := range pinned {
		if got != want {
			t.Errorf("flag %q, pinned %q", got, want)
		}
	}
	if d := Default(); d.ProxyUID != 5678 || d.InboundRedirectPort != 15006 || d.OutboundRedirectPort != 15001 {
		t.Errorf("defaults %+v changed", d)
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c := Default()
	c.RegisterFlags(fs)
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		if _, ok := pinned[f.Name]; !ok {
			t.Errorf("flag %q is not pinned", f.Name)
		}
	})
	if n != len(pinned) {
		t.Errorf("%d flags, %d pinned", n, len(pinned))
	}
}

// What the webhook renders with Args, weft-dp reads back with RegisterFlags.
func TestArgsRoundTrip(t *testing.T) {
	c := Config{ProxyUID: 1337, InboundRedirectPort: 16006, OutboundRedirectPort: 16001,
		InboundPorts: []uint16{8080, 9090}, ExcludeInboundPorts: []uint16{15021}, ExcludeOutboundPorts: []uint16{443},
		ExcludeUIDs: []uint32{0, 1000}, DNSServer: netip.MustParseAddrPort("10.96.0.53:5653")}
	for _, in := range []Config{Default(), c} {
		got := Default()
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		got.RegisterFlags(fs)
		if err := fs.Parse(in.Args()); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, in) {
			t.Errorf("round trip of %v:\n got %+v\nwant %+v", in.Args(), got, in)
		}
	}
	if a := Default(); len(a.Args()) != 0 {
		t.Errorf("defaults render as %v, want no flags", a.Args())
	}
}

func TestParseRejects(t *testing.T) {
	for _, s := range []string{"0", "65536", "80,x", "-1", strings.Repeat("1,", MaxListEntries) + "1"} {
		if _, err := ParsePorts(s); err == nil {
			t.Errorf("ParsePorts(%q) accepted", s)
		}
	}
	if _, err := ParseUIDs("4294967296"); err == nil {
		t.Error("ParseUIDs accepted a UID over 32 bits")
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := Default()
	c.RegisterFlags(fs)
	for _, arg := range []string{"--dns-server=resolver:53", "--redirect-inbound-port=0", "--proxy-uid=-1"} {
		if err := fs.Parse([]string{arg}); err == nil {
			t.Errorf("%s accepted", arg)
		}
	}
}

func TestValidate(t *testing.T) {
	c := Default()
	c.InboundRedirectPort = 0
	c.InboundPorts = make([]uint16, MaxListEntries+1)
	c.DNSServer = netip.MustParseAddrPort("[::1]:53")
	err := c.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"--redirect-inbound-port: must be 1-65535", "--inbound-ports: 65 entries", "--inbound-ports: 0 is not a port", "--dns-server [::1]:53: must be an IPv4"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v: missing %q", err, want)
		}
	}
	if d := Default(); d.Validate() != nil {
		t.Errorf("defaults invalid: %v", d.Validate())
	}
}

func FuzzParsePorts(f *testing.F) {
	f.Add("80,443")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParsePorts(s)
		if err != nil {
			return
		}
		if len(ps) > MaxListEntries {
			t.Fatalf("%d entries", len(ps))
		}
		back, err := ParsePorts(FormatPorts(ps))
		if err != nil || !reflect.DeepEqual(back, ps) {
			t.Fatalf("round trip %v: %v %v", ps, back, err)
		}
	})
}
