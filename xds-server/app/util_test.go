package app

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// formatCount counts how often it is formatted (%v calls String).
type formatCount struct{ n *int }

func (f formatCount) String() string { *f.n++; return "formatted" }

// TestCacheLoggerFormatsOnlyWhenEnabled: go-control-plane's debug lines are
// formatted only when the logger would write them — at info level their
// arguments (whole requests) are never printed.
func TestCacheLoggerFormatsOnlyWhenEnabled(t *testing.T) {
	for _, tc := range []struct {
		level slog.Level
		want  int
	}{{slog.LevelInfo, 0}, {slog.LevelDebug, 2}} {
		var buf bytes.Buffer
		l := cacheLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tc.level}))}
		n := 0
		l.Debugf("watch %v", formatCount{&n})
		l.Infof("respond %v", formatCount{&n})
		if n != tc.want {
			t.Errorf("level %s: arguments formatted %d times, want %d", tc.level, n, tc.want)
		}
		if got := strings.Count(buf.String(), "formatted"); got != tc.want {
			t.Errorf("level %s: %d lines written, want %d:\n%s", tc.level, got, tc.want, buf.String())
		}
	}
	// Warnings are written at info level.
	var buf bytes.Buffer
	cacheLogger{slog.New(slog.NewTextHandler(&buf, nil))}.Warnf("w %d", 1)
	if !strings.Contains(buf.String(), "w 1") {
		t.Errorf("warning not written: %q", buf.String())
	}
}
