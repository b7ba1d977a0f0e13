package xdsnames

import (
	"fmt"
	"net"
	"strings"
)

// Access logs to a TCP backend: Envoy has no plain-TCP access logger, so
// the xds-server configures Envoy's gRPC access loggers
// (envoy.access_loggers.http_grpc / tcp_grpc) towards AccessLogSinkCluster,
// a static cluster weft-dp puts in the Envoy bootstrap that reaches
// weft-dp's own access-log service on the unix socket AccessLogSocket in
// its workdir. weft-dp formats each entry and streams it to the backend
// named in the logger's log_name (AccessLogName).
const (
	AccessLogSinkCluster = "weft_access_log_sink"
	AccessLogSocket      = "access-log.sock"
)

// MaxAccessLogName bounds a log_name weft-dp accepts (address and format).
const MaxAccessLogName = 4096

// AccessLogName is the gRPC access logger's log_name for a TCP backend:
// "<host:port>;<format>". The format (an Envoy command-operator string;
// empty means the default) may contain ';', the address cannot.
func AccessLogName(address, format string) string { return address + ";" + format }

// ParseAccessLogName splits a log_name made by AccessLogName and checks the
// address is host:port.
func ParseAccessLogName(name string) (address, format string, err error) {
	if len(name) > MaxAccessLogName {
		return "", "", fmt.Errorf("access log name: %d bytes, more than %d", len(name), MaxAccessLogName)
	}
	address, format, ok := strings.Cut(name, ";")
	if !ok {
		return "", "", fmt.Errorf("access log name %q is not <host:port>;<format>", trim(name))
	}
	if h, p, err := net.SplitHostPort(address); err != nil || h == "" || p == "" {
		return "", "", fmt.Errorf("access log name: address %q is not host:port", trim(address))
	}
	return address, format, nil
}

func trim(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
