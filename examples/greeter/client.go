package greeter

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// Outcome names a call's result: "OK" or the gRPC status code
// ("PermissionDenied", "Unavailable", ...).
func Outcome(err error) string {
	if err == nil {
		return "OK"
	}
	return status.Code(err).String()
}

// Tally counts calls: the successful ones by serving zone, the failed ones
// by status code.
type Tally struct {
	mu      sync.Mutex
	byZone  map[string]int
	failed  map[string]int
	lastErr string
	lastOK  string
}

// Add records one call.
func (t *Tally) Add(r Reply, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byZone == nil {
		t.byZone, t.failed = map[string]int{}, map[string]int{}
	}
	if err != nil {
		t.failed[Outcome(err)]++
		t.lastErr = status.Convert(err).Message()
		return
	}
	t.byZone[r.Zone]++
	t.lastOK = r.Message
}

// String is one line: "served by zone-2: 41, zone-1: 3; failed: 0".
func (t *Tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b strings.Builder
	b.WriteString("served by ")
	if len(t.byZone) == 0 {
		b.WriteString("nobody yet")
	}
	for i, z := range sortedKeys(t.byZone) {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %d", z, t.byZone[z])
	}
	n := 0
	for _, c := range t.failed {
		n += c
	}
	fmt.Fprintf(&b, "; failed: %d", n)
	if n > 0 {
		var parts []string
		for _, code := range sortedKeys(t.failed) {
			parts = append(parts, fmt.Sprintf("%s %d", code, t.failed[code]))
		}
		fmt.Fprintf(&b, " (%s; last: %s)", strings.Join(parts, ", "), t.lastErr)
	}
	if t.lastOK != "" {
		fmt.Fprintf(&b, "; last reply: %q", t.lastOK)
	}
	return b.String()
}

// Served returns the successful calls served by zone.
func (t *Tally) Served(zone string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byZone[zone]
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Describe is the one-line report of a call.
func Describe(r Reply, err error) string {
	if err != nil {
		return fmt.Sprintf("%s: %s", Outcome(err), status.Convert(err).Message())
	}
	return fmt.Sprintf("OK from %s in %s: %s", r.Instance, r.Zone, r.Message)
}

// Caller calls the Greeter repeatedly.
type Caller struct {
	Conn     *grpc.ClientConn
	Name     string
	Interval time.Duration
	Timeout  time.Duration
	Out      io.Writer
}

func (c *Caller) call(ctx context.Context) (Reply, error) {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	return Call(ctx, c.Conn, c.Name)
}

func (c *Caller) pause(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(c.Interval):
		return true
	}
}

// Until calls until a call's outcome is want ("OK", "PermissionDenied",
// ...), reporting each different outcome on the way once; it gives up
// after wait.
func (c *Caller) Until(ctx context.Context, want string, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	last := ""
	for {
		r, err := c.call(ctx)
		if Outcome(err) == want {
			fmt.Fprintf(c.Out, "got %s\n", Describe(r, err))
			return nil
		}
		if d := Describe(r, err); d != last {
			fmt.Fprintf(c.Out, "waiting for %s, got %s\n", want, d)
			last = d
		}
		if !c.pause(ctx) {
			return fmt.Errorf("no %s within %s (last: %s)", want, wait, last)
		}
	}
}

// Calls makes count calls (0: until ctx ends), printing each, or, with
// summary > 0, the tally every summary. It returns the tally.
func (c *Caller) Calls(ctx context.Context, count int, summary time.Duration) *Tally {
	t := &Tally{}
	next := time.Now().Add(summary)
	for i := 1; count == 0 || i <= count; i++ {
		r, err := c.call(ctx)
		if ctx.Err() != nil {
			break
		}
		t.Add(r, err)
		if summary <= 0 {
			fmt.Fprintf(c.Out, "call %d: %s\n", i, Describe(r, err))
		} else if time.Now().After(next) {
			fmt.Fprintf(c.Out, "calls to %s: %s\n", c.Conn.Target(), t)
			next = time.Now().Add(summary)
		}
		if (count == 0 || i < count) && !c.pause(ctx) {
			break
		}
	}
	return t
}
