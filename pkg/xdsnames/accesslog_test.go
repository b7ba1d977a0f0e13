package xdsnames

import (
	"strings"
	"testing"
)

// TestAccessLogWireValues pins the access-log contract between the
// xds-server's generated loggers and weft-dp's bootstrap and server.
func TestAccessLogWireValues(t *testing.T) {
	if AccessLogSinkCluster != "weft_access_log_sink" || AccessLogSocket != "access-log.sock" {
		t.Errorf("access log sink %q / socket %q changed: deployed bootstraps use weft_access_log_sink / access-log.sock", AccessLogSinkCluster, AccessLogSocket)
	}
	if got := AccessLogName("logs.example:5000", "%START_TIME%;%UPSTREAM_HOST%"); got != "logs.example:5000;%START_TIME%;%UPSTREAM_HOST%" {
		t.Errorf("AccessLogName = %q", got)
	}
}

func TestParseAccessLogName(t *testing.T) {
	addr, format, err := ParseAccessLogName(AccessLogName("[::1]:5000", "a;b %DURATION%"))
	if err != nil || addr != "[::1]:5000" || format != "a;b %DURATION%" {
		t.Fatalf("got %q %q %v", addr, format, err)
	}
	if _, f, err := ParseAccessLogName("127.0.0.1:1;"); err != nil || f != "" {
		t.Fatalf("empty format: %q %v", f, err)
	}
	for _, bad := range []string{"", "no-separator", "127.0.0.1;fmt", ":80;fmt", "host:;fmt", "127.0.0.1:1;" + strings.Repeat("x", MaxAccessLogName)} {
		if _, _, err := ParseAccessLogName(bad); err == nil {
			t.Errorf("ParseAccessLogName(%.40q) accepted", bad)
		}
	}
}

// FuzzParseAccessLogName: any log_name is parsed or refused without
// panicking; what parses round-trips through AccessLogName.
func FuzzParseAccessLogName(f *testing.F) {
	for _, s := range []string{"127.0.0.1:5000;%START_TIME%", "[::1]:1;", ";", "a:b;c;d", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		addr, format, err := ParseAccessLogName(name)
		if err == nil && AccessLogName(addr, format) != name {
			t.Fatalf("%q parsed to %q %q, which do not make it again", name, addr, format)
		}
	})
}
