// Package tproxy is the contract between the injection webhook
// (k8s-controller) and `weft-dp iptables`: the transparent-proxy settings,
// their command-line flags and defaults. The webhook renders a Config as the
// init container's arguments with Args; weft-dp reads them back with
// RegisterFlags. The flag names and defaults are pinned by a test, since a
// change breaks every injected pod.
package tproxy

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Defaults.
const (
	// DefaultProxyUID is the UID the injected weft-dp container runs as.
	DefaultProxyUID = 5678
	// DefaultInboundRedirectPort is Envoy's inbound redirect listener.
	DefaultInboundRedirectPort = 15006
	// DefaultOutboundRedirectPort is Envoy's outbound:redirect listener.
	DefaultOutboundRedirectPort = 15001
	// MaxListEntries bounds each list of ports or UIDs (they can come from
	// pod annotations).
	MaxListEntries = 64
)

// Flag names of `weft-dp iptables`.
const (
	FlagProxyUID             = "proxy-uid"
	FlagInboundRedirectPort  = "redirect-inbound-port"
	FlagOutboundRedirectPort = "redirect-outbound-port"
	FlagInboundPorts         = "inbound-ports"
	FlagExcludeInboundPorts  = "exclude-inbound-ports"
	FlagExcludeOutboundPorts = "exclude-outbound-ports"
	FlagExcludeUIDs          = "exclude-uids"
	FlagDNSServer            = "dns-server"
)

// Config is what the rules redirect and what they leave alone.
type Config struct {
	// ProxyUID is the UID the proxy (weft-dp and Envoy) runs as; its own
	// traffic is never redirected (that would loop).
	ProxyUID uint32
	// InboundRedirectPort receives inbound TCP.
	InboundRedirectPort uint16
	// OutboundRedirectPort receives outbound TCP (use_original_dst).
	OutboundRedirectPort uint16
	// InboundPorts are the ports redirected inbound; empty: every port.
	InboundPorts []uint16
	// ExcludeInboundPorts are never redirected inbound (e.g. a port the
	// kubelet probes).
	ExcludeInboundPorts []uint16
	// ExcludeOutboundPorts are never redirected outbound.
	ExcludeOutboundPorts []uint16
	// ExcludeUIDs are UIDs whose outbound traffic is never redirected.
	ExcludeUIDs []uint32
	// DNSServer, if valid, is where the workload's UDP and TCP port 53 goes
	// (DNAT): the dns-server.
	DNSServer netip.AddrPort
}

// Default returns the defaults: every inbound port, DNS not redirected.
func Default() Config {
	return Config{ProxyUID: DefaultProxyUID, InboundRedirectPort: DefaultInboundRedirectPort,
		OutboundRedirectPort: DefaultOutboundRedirectPort}
}

// Validate reports, sorted, what makes the configuration unusable.
func (c *Config) Validate() error {
	var errs []string
	if c.InboundRedirectPort == 0 {
		errs = append(errs, "--"+FlagInboundRedirectPort+": must be 1-65535")
	}
	if c.OutboundRedirectPort == 0 {
		errs = append(errs, "--"+FlagOutboundRedirectPort+": must be 1-65535")
	}
	if c.InboundRedirectPort == c.OutboundRedirectPort && c.InboundRedirectPort != 0 {
		errs = append(errs, fmt.Sprintf("--%s, --%s: both %d, they must differ", FlagInboundRedirectPort, FlagOutboundRedirectPort, c.InboundRedirectPort))
	}
	for _, l := range []struct {
		flag  string
		ports []uint16
	}{{FlagInboundPorts, c.InboundPorts}, {FlagExcludeInboundPorts, c.ExcludeInboundPorts}, {FlagExcludeOutboundPorts, c.ExcludeOutboundPorts}} {
		if len(l.ports) > MaxListEntries {
			errs = append(errs, fmt.Sprintf("--%s: %d entries, at most %d", l.flag, len(l.ports), MaxListEntries))
		}
		if slices.Contains(l.ports, 0) {
			errs = append(errs, fmt.Sprintf("--%s: 0 is not a port", l.flag))
		}
	}
	if len(c.ExcludeUIDs) > MaxListEntries {
		errs = append(errs, fmt.Sprintf("--%s: %d entries, at most %d", FlagExcludeUIDs, len(c.ExcludeUIDs), MaxListEntries))
	}
	if c.DNSServer.IsValid() && (!c.DNSServer.Addr().Is4() || c.DNSServer.Port() == 0) {
		errs = append(errs, fmt.Sprintf("--%s %s: must be an IPv4 address with a port", FlagDNSServer, c.DNSServer))
	}
	if len(errs) == 0 {
		return nil
	}
	slices.Sort(errs)
	return errors.New(strings.Join(errs, "; "))
}

// RegisterFlags adds the flags of c to fs (defaults: c's values).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.Func(FlagProxyUID, fmt.Sprintf("UID of the proxy, whose traffic is never redirected (default %d)", c.ProxyUID), func(s string) error {
		n, err := strconv.ParseUint(s, 10, 32)
		c.ProxyUID = uint32(n)
		return err
	})
	portFlag(fs, FlagInboundRedirectPort, "port receiving redirected inbound TCP", &c.InboundRedirectPort)
	portFlag(fs, FlagOutboundRedirectPort, "port receiving redirected outbound TCP", &c.OutboundRedirectPort)
	portsFlag(fs, FlagInboundPorts, "comma-separated inbound ports to redirect (empty: all)", &c.InboundPorts)
	portsFlag(fs, FlagExcludeInboundPorts, "comma-separated inbound ports never redirected", &c.ExcludeInboundPorts)
	portsFlag(fs, FlagExcludeOutboundPorts, "comma-separated outbound ports never redirected", &c.ExcludeOutboundPorts)
	fs.Func(FlagExcludeUIDs, "comma-separated UIDs whose outbound traffic is never redirected", func(s string) (err error) {
		c.ExcludeUIDs, err = ParseUIDs(s)
		return err
	})
	fs.Func(FlagDNSServer, "ip:port of the dns-server receiving the workload's DNS (port 53); empty: DNS is not redirected", func(s string) (err error) {
		if s == "" {
			c.DNSServer = netip.AddrPort{}
			return nil
		}
		c.DNSServer, err = netip.ParseAddrPort(s)
		return err
	})
}

func portFlag(fs *flag.FlagSet, name, usage string, p *uint16) {
	fs.Func(name, fmt.Sprintf("%s (default %d)", usage, *p), func(s string) error {
		n, err := strconv.ParseUint(s, 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("%q is not a port (1-65535)", s)
		}
		*p = uint16(n)
		return nil
	})
}

func portsFlag(fs *flag.FlagSet, name, usage string, p *[]uint16) {
	fs.Func(name, usage, func(s string) (err error) {
		*p, err = ParsePorts(s)
		return err
	})
}

// Args renders c as `weft-dp iptables` flags (only those that differ from
// the defaults, in a fixed order).
func (c *Config) Args() []string {
	d := Default()
	var args []string
	add := func(name, value string) { args = append(args, "--"+name+"="+value) }
	if c.ProxyUID != d.ProxyUID {
		add(FlagProxyUID, strconv.FormatUint(uint64(c.ProxyUID), 10))
	}
	if c.InboundRedirectPort != d.InboundRedirectPort {
		add(FlagInboundRedirectPort, strconv.Itoa(int(c.InboundRedirectPort)))
	}
	if c.OutboundRedirectPort != d.OutboundRedirectPort {
		add(FlagOutboundRedirectPort, strconv.Itoa(int(c.OutboundRedirectPort)))
	}
	for _, l := range []struct {
		flag  string
		ports []uint16
	}{{FlagInboundPorts, c.InboundPorts}, {FlagExcludeInboundPorts, c.ExcludeInboundPorts}, {FlagExcludeOutboundPorts, c.ExcludeOutboundPorts}} {
		if len(l.ports) > 0 {
			add(l.flag, FormatPorts(l.ports))
		}
	}
	if len(c.ExcludeUIDs) > 0 {
		s := make([]string, len(c.ExcludeUIDs))
		for i, u := range c.ExcludeUIDs {
			s[i] = strconv.FormatUint(uint64(u), 10)
		}
		add(FlagExcludeUIDs, strings.Join(s, ","))
	}
	if c.DNSServer.IsValid() {
		add(FlagDNSServer, c.DNSServer.String())
	}
	return args
}

// ParsePorts parses a comma-separated port list ("" is empty), at most
// MaxListEntries entries.
func ParsePorts(s string) ([]uint16, error) {
	return parseList(s, func(f string) (uint16, error) {
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("%q is not a port (1-65535)", f)
		}
		return uint16(n), nil
	})
}

// ParseUIDs parses a comma-separated UID list ("" is empty), at most
// MaxListEntries entries.
func ParseUIDs(s string) ([]uint32, error) {
	return parseList(s, func(f string) (uint32, error) {
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("%q is not a UID", f)
		}
		return uint32(n), nil
	})
}

func parseList[T any](s string, parse func(string) (T, error)) ([]T, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if n := strings.Count(s, ",") + 1; n > MaxListEntries {
		return nil, fmt.Errorf("%d entries, at most %d", n, MaxListEntries)
	}
	fields := strings.Split(s, ",")
	out := make([]T, 0, len(fields))
	for _, f := range fields {
		v, err := parse(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// FormatPorts is ParsePorts' inverse.
func FormatPorts(ps []uint16) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}
