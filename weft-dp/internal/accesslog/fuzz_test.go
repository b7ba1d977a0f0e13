package accesslog

import (
	"strings"
	"testing"

	datav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
)

// FuzzFormat: any format (it arrives from Envoy in the log_name) parses and
// renders without panicking; text without operators is kept as it is.
func FuzzFormat(f *testing.F) {
	for _, s := range []string{"", DefaultFormat, "%REQ(A?B):3%", "%%", "%", "%REQ(", "%:5%", "%RESP():0%", "plain"} {
		f.Add(s)
	}
	http := Entry{HTTP: httpEntry("/p", 200)}
	tcp := Entry{TCP: &datav3.TCPAccessLogEntry{}}
	f.Fuzz(func(t *testing.T, format string) {
		p := ParseFormat(format)
		got := p.Line(http)
		_ = p.Line(tcp)
		_ = ParseFormat(format).Line(Entry{HTTP: &datav3.HTTPAccessLogEntry{}})
		if format != "" && !strings.Contains(format, "%") && got != format {
			t.Fatalf("literal format %q rendered as %q", format, got)
		}
	})
}
