// Package accesslog is weft-dp's access-log service for TrafficLogs to tcp
// backends. Envoy has no plain-TCP access logger, so the xds-server gives
// Envoy gRPC access loggers (envoy.access_loggers.http_grpc / tcp_grpc)
// whose log_name is "<host:port>;<format>" (pkg/xdsnames), pointed at the
// bootstrap cluster weft_access_log_sink: weft-dp's unix socket. The Server
// formats each entry with the backend's format and a Sender per backend
// streams the lines to it over TCP (bounded queue, reconnect with capped
// back-off, drops counted).
package accesslog

import (
	"net"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	datav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// DefaultFormat is used when the backend has no format: Envoy's default
// access log format.
const DefaultFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"`

// Entry is one access-log entry as Envoy sends it: an HTTP request or a TCP
// connection.
type Entry struct {
	HTTP *datav3.HTTPAccessLogEntry
	TCP  *datav3.TCPAccessLogEntry
}

func (e Entry) common() *datav3.AccessLogCommon {
	if e.HTTP != nil {
		return e.HTTP.GetCommonProperties()
	}
	return e.TCP.GetCommonProperties()
}

// Format is a parsed format string: literal text and command operators.
type Format struct {
	parts []part
}

type part struct {
	literal string
	op      string   // operator name, e.g. START_TIME, REQ
	args    []string // REQ/RESP/TRAILER header alternatives
	max     int      // :N truncation, 0 for none
}

// ParseFormat parses an Envoy command-operator format string ("" is
// DefaultFormat). Text that is not an operator is kept as it is; an
// operator weft-dp does not know renders as "-".
func ParseFormat(s string) *Format {
	if s == "" {
		s = DefaultFormat
	}
	f := &Format{}
	lit := strings.Builder{}
	for len(s) > 0 {
		i := strings.IndexByte(s, '%')
		if i < 0 {
			lit.WriteString(s)
			break
		}
		lit.WriteString(s[:i])
		s = s[i:]
		j := strings.IndexByte(s[1:], '%')
		if j < 0 {
			lit.WriteString(s)
			break
		}
		body := s[1 : j+1]
		s = s[j+2:]
		if body == "" { // "%%" is a literal percent sign
			lit.WriteByte('%')
			continue
		}
		if lit.Len() > 0 {
			f.parts = append(f.parts, part{literal: lit.String()})
			lit.Reset()
		}
		f.parts = append(f.parts, parseOperator(body))
	}
	if lit.Len() > 0 {
		f.parts = append(f.parts, part{literal: lit.String()})
	}
	return f
}

func parseOperator(body string) part {
	p := part{}
	// A trailing ":N" (after the closing parenthesis, if any) truncates.
	if k := strings.LastIndexByte(body, ':'); k > strings.LastIndexByte(body, ')') {
		if n, err := strconv.Atoi(body[k+1:]); err == nil && n > 0 {
			p.max, body = n, body[:k]
		}
	}
	if open := strings.IndexByte(body, '('); open > 0 && strings.HasSuffix(body, ")") {
		p.op = body[:open]
		p.args = strings.Split(body[open+1:len(body)-1], "?")
		return p
	}
	p.op = body
	return p
}

// Line renders e; the result has no trailing newline.
func (f *Format) Line(e Entry) string {
	var b strings.Builder
	for _, p := range f.parts {
		if p.op == "" {
			b.WriteString(p.literal)
			continue
		}
		v := value(p, e)
		if v == "" {
			v = "-"
		}
		if p.max > 0 && len(v) > p.max {
			v = v[:p.max]
		}
		b.WriteString(v)
	}
	return b.String()
}

func value(p part, e Entry) string {
	c := e.common()
	req, resp := e.HTTP.GetRequest(), e.HTTP.GetResponse()
	switch p.op {
	case "START_TIME":
		if t := c.GetStartTime(); t != nil {
			return t.AsTime().UTC().Format("2006-01-02T15:04:05.000Z")
		}
	case "DURATION":
		d := c.GetDuration()
		if d == nil {
			d = c.GetTimeToLastDownstreamTxByte()
		}
		return millis(d)
	case "REQUEST_DURATION":
		return millis(c.GetTimeToLastRxByte())
	case "RESPONSE_DURATION":
		return millis(c.GetTimeToFirstUpstreamRxByte())
	case "RESPONSE_CODE":
		if e.TCP != nil {
			return "0"
		}
		if rc := resp.GetResponseCode(); rc != nil {
			return strconv.FormatUint(uint64(rc.GetValue()), 10)
		}
		return "0"
	case "RESPONSE_CODE_DETAILS":
		return resp.GetResponseCodeDetails()
	case "RESPONSE_FLAGS":
		return responseFlags(c.GetResponseFlags())
	case "BYTES_RECEIVED":
		if e.TCP != nil {
			return strconv.FormatUint(e.TCP.GetConnectionProperties().GetReceivedBytes(), 10)
		}
		return strconv.FormatUint(req.GetRequestBodyBytes(), 10)
	case "BYTES_SENT":
		if e.TCP != nil {
			return strconv.FormatUint(e.TCP.GetConnectionProperties().GetSentBytes(), 10)
		}
		return strconv.FormatUint(resp.GetResponseBodyBytes(), 10)
	case "PROTOCOL":
		switch e.HTTP.GetProtocolVersion() {
		case datav3.HTTPAccessLogEntry_HTTP10:
			return "HTTP/1.0"
		case datav3.HTTPAccessLogEntry_HTTP11:
			return "HTTP/1.1"
		case datav3.HTTPAccessLogEntry_HTTP2:
			return "HTTP/2"
		case datav3.HTTPAccessLogEntry_HTTP3:
			return "HTTP/3"
		}
	case "UPSTREAM_HOST", "UPSTREAM_REMOTE_ADDRESS":
		return address(c.GetUpstreamRemoteAddress(), true)
	case "UPSTREAM_CLUSTER":
		return c.GetUpstreamCluster()
	case "UPSTREAM_LOCAL_ADDRESS":
		return address(c.GetUpstreamLocalAddress(), true)
	case "UPSTREAM_TRANSPORT_FAILURE_REASON":
		return c.GetUpstreamTransportFailureReason()
	case "DOWNSTREAM_REMOTE_ADDRESS":
		return address(c.GetDownstreamRemoteAddress(), true)
	case "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT":
		return address(c.GetDownstreamRemoteAddress(), false)
	case "DOWNSTREAM_LOCAL_ADDRESS":
		return address(c.GetDownstreamLocalAddress(), true)
	case "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT":
		return address(c.GetDownstreamLocalAddress(), false)
	case "DOWNSTREAM_DIRECT_REMOTE_ADDRESS":
		return address(c.GetDownstreamDirectRemoteAddress(), true)
	case "ROUTE_NAME":
		return c.GetRouteName()
	case "CONNECTION_TERMINATION_DETAILS":
		return c.GetConnectionTerminationDetails()
	case "REQ":
		for _, h := range p.args {
			if v := requestHeader(req, h); v != "" {
				return v
			}
		}
	case "RESP":
		for _, h := range p.args {
			if v := resp.GetResponseHeaders()[strings.ToLower(strings.TrimSpace(h))]; v != "" {
				return v
			}
		}
	case "TRAILER":
		for _, h := range p.args {
			if v := resp.GetResponseTrailers()[strings.ToLower(strings.TrimSpace(h))]; v != "" {
				return v
			}
		}
	}
	return ""
}

// requestHeader finds a request header: the ones http_grpc logs in fields
// of their own, then the additional headers it was asked for.
func requestHeader(req *datav3.HTTPRequestProperties, name string) string {
	switch h := strings.ToLower(strings.TrimSpace(name)); h {
	case ":method":
		if m := req.GetRequestMethod(); m != corev3.RequestMethod_METHOD_UNSPECIFIED {
			return m.String()
		}
		return ""
	case ":path":
		return req.GetPath()
	case ":authority":
		return req.GetAuthority()
	case ":scheme":
		return req.GetScheme()
	case "user-agent":
		return req.GetUserAgent()
	case "referer":
		return req.GetReferer()
	case "x-forwarded-for":
		return req.GetForwardedFor()
	case "x-request-id":
		return req.GetRequestId()
	case "x-envoy-original-path":
		return req.GetOriginalPath()
	default:
		return req.GetRequestHeaders()[h]
	}
}

func millis(d *durationpb.Duration) string {
	if d == nil {
		return ""
	}
	return strconv.FormatInt(d.AsDuration().Milliseconds(), 10)
}

func address(a *corev3.Address, withPort bool) string {
	switch {
	case a.GetSocketAddress() != nil:
		sa := a.GetSocketAddress()
		if !withPort {
			return sa.GetAddress()
		}
		return net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
	case a.GetPipe() != nil:
		return a.GetPipe().GetPath()
	}
	return ""
}

// responseFlags renders the flags as Envoy's short codes, comma-separated
// ("" when none).
func responseFlags(f *datav3.ResponseFlags) string {
	if f == nil {
		return ""
	}
	var out []string
	for _, x := range []struct {
		on   bool
		code string
	}{
		{f.GetFailedLocalHealthcheck(), "LH"}, {f.GetNoHealthyUpstream(), "UH"}, {f.GetUpstreamRequestTimeout(), "UT"},
		{f.GetLocalReset(), "LR"}, {f.GetUpstreamRemoteReset(), "UR"}, {f.GetUpstreamConnectionFailure(), "UF"},
		{f.GetUpstreamConnectionTermination(), "UC"}, {f.GetUpstreamOverflow(), "UO"}, {f.GetNoRouteFound(), "NR"},
		{f.GetDelayInjected(), "DI"}, {f.GetFaultInjected(), "FI"}, {f.GetRateLimited(), "RL"},
		{f.GetUnauthorizedDetails() != nil, "UAEX"}, {f.GetRateLimitServiceError(), "RLSE"},
		{f.GetDownstreamConnectionTermination(), "DC"}, {f.GetUpstreamRetryLimitExceeded(), "URX"},
		{f.GetStreamIdleTimeout(), "SI"}, {f.GetInvalidEnvoyRequestHeaders(), "IH"}, {f.GetDownstreamProtocolError(), "DPE"},
		{f.GetUpstreamMaxStreamDurationReached(), "UMSDR"}, {f.GetResponseFromCacheFilter(), "RFCF"},
		{f.GetNoFilterConfigFound(), "NFCF"}, {f.GetDurationTimeout(), "DT"}, {f.GetUpstreamProtocolError(), "UPE"},
		{f.GetNoClusterFound(), "NC"}, {f.GetOverloadManager(), "OM"}, {f.GetDnsResolutionFailure(), "DF"},
		{f.GetDownstreamRemoteReset(), "DR"},
	} {
		if x.on {
			out = append(out, x.code)
		}
	}
	return strings.Join(out, ",")
}
