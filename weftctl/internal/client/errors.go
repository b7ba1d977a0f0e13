package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"
)

// Cause is one problem the server found, at a field path.
type Cause struct {
	Field   string `json:"field"`
	Message string `json:"message"`
	// Line is the line of the sent document the problem is on, when known.
	Line int `json:"line,omitempty"`
}

// APIError is an error response from the api-server:
// {"title": ..., "details": ..., "causes": [{"field", "message"}]}.
type APIError struct {
	StatusCode int
	Method     string
	URL        string
	Title      string
	Details    string
	Causes     []Cause
}

func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString(e.Title)
	if e.Details != "" && e.Details != e.Title {
		b.WriteString(": ")
		b.WriteString(e.Details)
	}
	for _, c := range e.Causes {
		b.WriteString("; ")
		if c.Line > 0 {
			fmt.Fprintf(&b, "line %d: ", c.Line)
		}
		if c.Field != "" {
			b.WriteString(c.Field)
			b.WriteString(": ")
		}
		b.WriteString(c.Message)
	}
	return b.String()
}

// Status codes the api-server uses, as predicates on any error.

// IsNotFound reports a 404.
func IsNotFound(err error) bool { return statusIs(err, http.StatusNotFound) }

// IsConflict reports a 409: a stale version or a concurrent change.
func IsConflict(err error) bool { return statusIs(err, http.StatusConflict) }

// IsUnauthorized reports a 401: no token, or an invalid one.
func IsUnauthorized(err error) bool { return statusIs(err, http.StatusUnauthorized) }

// IsBadRequest reports a 400: validation, unknown mesh, malformed input.
func IsBadRequest(err error) bool { return statusIs(err, http.StatusBadRequest) }

func statusIs(err error, code int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.StatusCode == code
}

// TransportError is a request that got no HTTP answer: the control plane is
// down, the address is wrong, or the context ended.
type TransportError struct {
	Method string
	URL    string
	Err    error
}

func (e *TransportError) Error() string {
	return fmt.Sprintf("cannot reach the control plane (%s %s): %v", e.Method, e.URL, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// ParseError decodes an error response body. Bodies that are not the
// api-server's JSON shape (a proxy's HTML page, an empty body) still give an
// APIError, titled with the HTTP status and carrying a short excerpt.
func ParseError(status int, body []byte) *APIError {
	e := &APIError{StatusCode: status}
	var wire struct {
		Title   string  `json:"title"`
		Details string  `json:"details"`
		Causes  []Cause `json:"causes"`
		// grpc-gateway's default shape, in case the custom error handler is
		// not installed on some route.
		Message string `json:"message"`
	}
	if err := json.Unmarshal(body, &wire); err == nil && (wire.Title != "" || wire.Details != "" || wire.Message != "" || len(wire.Causes) > 0) {
		e.Title, e.Details, e.Causes = wire.Title, wire.Details, wire.Causes
		if e.Details == "" {
			e.Details = wire.Message
		}
	} else {
		e.Details = excerpt(body, 200)
	}
	if e.Title == "" {
		e.Title = statusTitle(status)
	}
	return e
}

func statusTitle(status int) string {
	if t := http.StatusText(status); t != "" {
		return t
	}
	return fmt.Sprintf("HTTP %d", status)
}

// excerpt returns up to n bytes of printable text from b on one line.
func excerpt(b []byte, n int) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > n {
		s = s[:n]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "..."
	}
	return strings.ToValidUTF8(s, "?")
}
