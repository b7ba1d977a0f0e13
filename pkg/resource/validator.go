package resource

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Cause is one validation problem at a field path.
type Cause struct {
	Field   string `json:"field"`
	Message string `json:"message"`
	// Line is the 1-based line of the YAML (or JSON) document the problem
	// is on, when the cause comes from decoding a document; 0 otherwise.
	Line int `json:"line,omitempty"`
}

// Description is the message with the line leading it ("line 3: ..."):
// how a cause travels in a gRPC BadRequest field violation, which has no
// line of its own. CauseFromDescription reads it back.
func (c Cause) Description() string {
	if c.Line > 0 {
		return "line " + strconv.Itoa(c.Line) + ": " + c.Message
	}
	return c.Message
}

// CauseFromDescription is the cause of a field violation made with
// Description.
func CauseFromDescription(field, desc string) Cause {
	c := Cause{Field: field, Message: desc}
	if rest, ok := strings.CutPrefix(desc, "line "); ok {
		if num, msg, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil && n > 0 {
				c.Line, c.Message = n, msg
			}
		}
	}
	return c
}

// String formats a cause as "field: message" with its line when known.
func (c Cause) String() string {
	s := c.Message
	if c.Field != "" {
		s = c.Field + ": " + s
	}
	if c.Line > 0 {
		s = "line " + strconv.Itoa(c.Line) + ": " + s
	}
	return s
}

// ValidationError lists every problem found in a resource at once.
type ValidationError struct {
	Causes []Cause
}

func (e *ValidationError) Error() string {
	return "invalid resource: " + joinCauses(e.Causes)
}

// Validator collects causes under a field path.
type Validator struct {
	path   string
	causes *[]Cause
}

// NewValidator returns an empty validator rooted at the resource.
func NewValidator() *Validator { return &Validator{causes: &[]Cause{}} }

// Field returns a validator for a child field.
func (v *Validator) Field(name string) *Validator {
	p := name
	if v.path != "" {
		p = v.path + "." + name
	}
	return &Validator{path: p, causes: v.causes}
}

// Index returns a validator for a list element.
func (v *Validator) Index(i int) *Validator {
	return &Validator{path: v.path + "[" + strconv.Itoa(i) + "]", causes: v.causes}
}

// Key returns a validator for a map entry.
func (v *Validator) Key(k string) *Validator {
	return &Validator{path: v.path + "[" + strconv.Quote(k) + "]", causes: v.causes}
}

// Addf records a problem at this validator's path.
func (v *Validator) Addf(format string, args ...any) {
	*v.causes = append(*v.causes, Cause{Field: v.path, Message: fmt.Sprintf(format, args...)})
}

// addLine records a problem at this validator's path, on a document line.
func (v *Validator) addLine(line int, format string, args ...any) {
	*v.causes = append(*v.causes, Cause{Field: v.path, Message: fmt.Sprintf(format, args...), Line: line})
}

func joinCauses(causes []Cause) string {
	parts := make([]string, len(causes))
	for i, c := range causes {
		parts[i] = c.String()
	}
	return strings.Join(parts, "; ")
}

// Err returns the collected problems, or nil.
func (v *Validator) Err() error {
	if len(*v.causes) == 0 {
		return nil
	}
	return &ValidationError{Causes: append([]Cause(nil), *v.causes...)}
}

var (
	nameRe  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
	labelRe = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	tagKey  = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?$`)
	// tagValue is Kuma's character set for tag values.
	tagValue = regexp.MustCompile(`^[A-Za-z0-9.\-_:]+$`)
)

// CheckName validates a resource name: lowercase DNS-compatible, ≤ 253.
func CheckName(v *Validator, name string) {
	switch {
	case name == "":
		v.Addf("must not be empty")
	case len(name) > 253:
		v.Addf("must be at most 253 characters")
	case !nameRe.MatchString(name):
		v.Addf("%q must consist of lowercase letters, digits, '-' and '.', and start and end with a letter or digit", name)
	}
}

// CheckLabel validates a DNS label: mesh names, zone names and service
// names, so that <service>.<mesh>.mesh is always a valid DNS name.
func CheckLabel(v *Validator, s string) {
	switch {
	case s == "":
		v.Addf("must not be empty")
	case len(s) > 63:
		v.Addf("must be at most 63 characters")
	case !labelRe.MatchString(s):
		v.Addf("%q must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit", s)
	}
}

// IsLabel reports whether s is a valid DNS label.
func IsLabel(s string) bool { return len(s) > 0 && len(s) <= 63 && labelRe.MatchString(s) }

// ParseDuration parses Go durations plus "d" (days) and "y" (365 days) units
// as whole-number suffixes, e.g. "10y", "30d", "1h30m".
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	for _, u := range []struct {
		suffix string
		d      time.Duration
	}{{"y", 365 * 24 * time.Hour}, {"d", 24 * time.Hour}} {
		if strings.HasSuffix(s, u.suffix) {
			n, err := strconv.ParseUint(strings.TrimSuffix(s, u.suffix), 10, 32)
			if err != nil {
				return 0, fmt.Errorf("invalid duration %q", s)
			}
			return time.Duration(n) * u.d, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (examples: 250ms, 5s, 1h, 30d)", s)
	}
	return d, nil
}

// checkDuration validates an optional duration field: empty is allowed.
func checkDuration(v *Validator, s string) {
	if s == "" {
		return
	}
	d, err := ParseDuration(s)
	if err != nil {
		v.Addf("%v", err)
		return
	}
	if d <= 0 {
		v.Addf("must be positive")
	}
}

func checkTags(v *Validator, tags map[string]string, allowWildcard bool) {
	for _, k := range sortedKeys(tags) {
		val := tags[k]
		kv := v.Key(k)
		switch {
		case strings.HasPrefix(k, kumaTagPrefix):
			kv.Addf("%s tags are Kuma's: write %s%s (weftctl apply --from-kuma rewrites them)", kumaTagPrefix, weftTagPrefix, strings.TrimPrefix(k, kumaTagPrefix))
			continue
		case !tagKey.MatchString(k) || len(k) > 253:
			kv.Addf("tag name %q is not valid: letters, digits, '.', '-', '_' and '/', starting and ending with a letter or digit", k)
			continue
		case val == "":
			kv.Addf("tag value must not be empty")
			continue
		case val == "*":
			if !allowWildcard {
				kv.Addf("wildcard is not allowed here")
			}
			continue
		case len(val) > 253 || !tagValue.MatchString(val):
			kv.Addf("tag value %q must consist of letters, digits, '.', '-', '_' and ':'", val)
			continue
		}
		if k == ServiceTag && !IsLabel(val) {
			kv.Addf("service name %q must be a DNS label: lowercase letters, digits and '-', at most 63 characters", val)
		}
		if k == ProtocolTag && !validProtocols[val] {
			kv.Addf("protocol %q is not one of tcp, http, http2, grpc", val)
		}
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkServiceTag reports a missing weft.io/service tag (an empty or Kuma
// one is checkTags' to report: one problem, one cause).
func checkServiceTag(v *Validator, tags map[string]string) {
	if _, ok := tags[ServiceTag]; !ok && tags[kumaTagPrefix+"service"] == "" {
		v.Key(ServiceTag).Addf("tag is required")
	}
}

func checkPort(v *Validator, p uint32, required bool) {
	if p == 0 && !required {
		return
	}
	if p < 1 || p > 65535 {
		v.Addf("must be in 1..65535")
	}
}

func checkPercentage(v *Validator, p float64) {
	if p < 0 || p > 100 {
		v.Addf("must be in 0..100")
	}
}

var bandwidthRe = regexp.MustCompile(`^[0-9]+(kbps|mbps|gbps)$`)
