package gui

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/weftmesh/weft/pkg/resource"
)

// Limits of a dataplane query: everything a browser controls is capped
// before it is used.
const (
	// MaxQueryLength caps the raw query string of a GUI API request.
	MaxQueryLength = 2048
	// MaxPageSize is the largest page of dataplanes; DefaultPageSize the
	// page without size=.
	MaxPageSize     = 200
	DefaultPageSize = 50
	// MaxTagFilters caps the tag= filters of one query.
	MaxTagFilters = 8
	// maxFilterLen caps a name filter, a tag key or a tag value.
	maxFilterLen = 253
)

// Status filters.
const (
	StatusOnline  = "online"
	StatusOffline = "offline"
)

// DataplaneQuery is a parsed GET /gui/api/dataplanes query: a page of the
// dataplanes matching every filter.
type DataplaneQuery struct {
	// Mesh limits to one mesh ("" every mesh).
	Mesh string
	// Name keeps dataplanes whose name contains it.
	Name string
	// Tags keeps dataplanes with every key=value among their tags (any
	// inbound's or the gateway's); a "*" value matches any value.
	Tags map[string]string
	// Status is "", StatusOnline or StatusOffline.
	Status string
	// Zone keeps dataplanes owned by this zone.
	Zone   string
	Offset int
	Size   int
}

// ParseDataplaneQuery parses and bounds a dataplane query. Errors name
// the parameter.
func ParseDataplaneQuery(raw string) (DataplaneQuery, error) {
	q := DataplaneQuery{Size: DefaultPageSize}
	if len(raw) > MaxQueryLength {
		return q, fmt.Errorf("query: at most %d bytes", MaxQueryLength)
	}
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return q, fmt.Errorf("query: %v", err)
	}
	one := func(k string) (string, error) {
		v := vals[k]
		if len(v) > 1 {
			return "", fmt.Errorf("%s: given %d times, at most once", k, len(v))
		}
		if len(v) == 0 {
			return "", nil
		}
		if len(v[0]) > maxFilterLen {
			return "", fmt.Errorf("%s: at most %d bytes", k, maxFilterLen)
		}
		return v[0], nil
	}
	for k := range vals {
		switch k {
		case "mesh", "name", "tag", "status", "zone", "offset", "size":
		default:
			return q, fmt.Errorf("%s: unknown parameter (known: mesh, name, tag, status, zone, offset, size)", truncate(k, 64))
		}
	}
	if q.Mesh, err = one("mesh"); err != nil {
		return q, err
	}
	if q.Mesh != "" && !resource.IsLabel(q.Mesh) {
		return q, fmt.Errorf("mesh: %q is not a valid mesh name", truncate(q.Mesh, 64))
	}
	if q.Name, err = one("name"); err != nil {
		return q, err
	}
	if q.Zone, err = one("zone"); err != nil {
		return q, err
	}
	if q.Status, err = one("status"); err != nil {
		return q, err
	}
	if q.Status != "" && q.Status != StatusOnline && q.Status != StatusOffline {
		return q, fmt.Errorf("status: %q is not online or offline", truncate(q.Status, 64))
	}
	tags := vals["tag"]
	if len(tags) > MaxTagFilters {
		return q, fmt.Errorf("tag: at most %d tag filters", MaxTagFilters)
	}
	for i, t := range tags {
		k, v, ok := strings.Cut(t, ":")
		if !ok || k == "" || v == "" || len(k) > maxFilterLen || len(v) > maxFilterLen {
			return q, fmt.Errorf("tag[%d]: want key:value (each 1 to %d bytes)", i, maxFilterLen)
		}
		if q.Tags == nil {
			q.Tags = map[string]string{}
		}
		q.Tags[k] = v
	}
	num := func(k string, def, max int) (int, error) {
		s, err := one(k)
		if err != nil || s == "" {
			return def, err
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > max {
			return 0, fmt.Errorf("%s: want a number from 0 to %d", k, max)
		}
		return n, nil
	}
	if q.Offset, err = num("offset", 0, 1<<30); err != nil {
		return q, err
	}
	if q.Size, err = num("size", DefaultPageSize, MaxPageSize); err != nil {
		return q, err
	}
	if q.Size == 0 {
		q.Size = DefaultPageSize
	}
	return q, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
