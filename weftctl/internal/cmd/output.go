package cmd

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/weftmesh/weft/weftctl/internal/client"
)

// Output formats.
const (
	formatTable = "table"
	formatYAML  = "yaml"
	formatJSON  = "json"
)

// outputFlag registers -o/--output.
func outputFlag(fs *flag.FlagSet) *string {
	o := new(string)
	*o = formatTable
	fs.StringVar(o, "o", formatTable, "output format: table, yaml or json")
	fs.StringVar(o, "output", formatTable, "output format: table, yaml or json (same as -o)")
	return o
}

func checkFormat(f string) error {
	switch f {
	case formatTable, formatYAML, formatJSON:
		return nil
	}
	return usageErrorf("unknown output format %q: use table, yaml or json", f)
}

// table writes aligned columns.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, headers ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)}
	t.row(headers...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			c = "-"
		}
		// Tabs or newlines in a value would break the columns.
		c = strings.Map(func(r rune) rune {
			if r == '\t' || r == '\n' || r == '\r' {
				return ' '
			}
			return r
		}, c)
		if i > 0 {
			fmt.Fprint(t.tw, "\t")
		}
		fmt.Fprint(t.tw, c)
	}
	fmt.Fprint(t.tw, "\n")
}

func (t *table) flush() error { return t.tw.Flush() }

// since formats the time elapsed from t to now like kubectl: 42s, 5m, 3h,
// 12d, 2y. A zero time is "-".
func since(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return humanDuration(now.Sub(t))
}

// until formats the time from now to t, "expired" if past.
func until(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := t.Sub(now)
	if d <= 0 {
		return "expired " + humanDuration(-d) + " ago"
	}
	return "in " + humanDuration(d)
}

func humanDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	case d < 2*365*24*time.Hour:
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	return strconv.Itoa(int(d/(365*24*time.Hour))) + "y"
}

// formatTags renders tags as "k=v,k2=v2", sorted.
func formatTags(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + tags[k]
	}
	return strings.Join(parts, ",")
}

// writeJSON writes v (or raw JSON) indented, with a trailing newline.
func writeJSON(w io.Writer, raw []byte) error {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return fmt.Errorf("format JSON: %w", err)
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

// writeYAML converts raw JSON to YAML, keeping the key order.
func writeYAML(w io.Writer, raw []byte) error {
	y, err := jsonToOrderedYAML(raw)
	if err != nil {
		return fmt.Errorf("format YAML: %w", err)
	}
	_, err = w.Write(y)
	return err
}

// writeObjects prints objects as YAML (one document each, separated by
// "---", so the output can be fed back to apply) or as JSON (the API's list
// shape, {"total": N, "items": [...]}). single prints one object bare.
func writeObjects(w io.Writer, format string, objs []*client.Object, single bool) error {
	if single && len(objs) == 1 {
		if format == formatJSON {
			return writeJSON(w, objs[0].Raw)
		}
		return writeYAML(w, objs[0].Raw)
	}
	if format == formatJSON {
		items := make([]json.RawMessage, len(objs))
		for i, o := range objs {
			items[i] = o.Raw
		}
		raw, err := json.Marshal(struct {
			Total int               `json:"total"`
			Items []json.RawMessage `json:"items"`
		}{len(objs), items})
		if err != nil {
			return err
		}
		return writeJSON(w, raw)
	}
	for i, o := range objs {
		if i > 0 {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		if err := writeYAML(w, o.Raw); err != nil {
			return err
		}
	}
	return nil
}
