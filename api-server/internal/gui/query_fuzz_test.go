package gui_test

import (
	"testing"

	"github.com/weftmesh/weft/api-server/internal/gui"
)

// FuzzParseDataplaneQuery: any query string either fails with an error or
// parses within the limits.
func FuzzParseDataplaneQuery(f *testing.F) {
	for _, s := range []string{"", "name=web&tag=weft.io/service:web&status=online&offset=50&size=200", "tag=a:b&tag=c:*", "mesh=default&zone=zone-1", "size=0", "%", "tag=::", "offset=99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := gui.ParseDataplaneQuery(raw)
		if err != nil {
			return
		}
		if len(raw) > gui.MaxQueryLength {
			t.Fatalf("accepted a query of %d bytes", len(raw))
		}
		if q.Size < 1 || q.Size > gui.MaxPageSize || q.Offset < 0 || len(q.Tags) > gui.MaxTagFilters {
			t.Fatalf("out of bounds: %+v", q)
		}
		if q.Status != "" && q.Status != gui.StatusOnline && q.Status != gui.StatusOffline {
			t.Fatalf("status %q", q.Status)
		}
	})
}
