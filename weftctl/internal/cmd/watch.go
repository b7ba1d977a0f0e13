package cmd

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// defaultWatchInterval is how often --watch refreshes a view.
const defaultWatchInterval = 2 * time.Second

// watchable adds --watch (-w) and --watch-interval to an inspect view: the
// view is printed again every interval, under a line with the time, until
// Ctrl-C. The first failure is returned; later ones are printed and the
// watch goes on (a control plane restarting does not end it).
func watchable(run RunFunc) RunFunc {
	return func(ctx context.Context, a *App, args []string) error {
		watch, interval, rest, err := watchFlags(args)
		if err != nil {
			return err
		}
		if !watch {
			return run(ctx, a, rest)
		}
		for i := 0; ; i++ {
			if i > 0 {
				fmt.Fprintln(a.Stdout)
			}
			fmt.Fprintf(a.Stdout, "Every %s: %s (Ctrl-C stops)\n", interval, a.Now().UTC().Format(time.RFC3339))
			if err := run(ctx, a, rest); err != nil {
				if i == 0 || ctx.Err() != nil {
					return err
				}
				fmt.Fprintf(a.Stderr, "Error: %v\n", err)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(interval):
			}
		}
	}
}

// watchFlags takes --watch/-w and --watch-interval D out of args (the view
// parses the rest); everything after "--" is left alone.
func watchFlags(args []string) (watch bool, interval time.Duration, rest []string, err error) {
	interval = defaultWatchInterval
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if !strings.HasPrefix(arg, "-") {
			name = ""
		}
		switch name {
		case "w", "watch":
			watch = !hasVal || val == "true"
		case "watch-interval":
			if !hasVal {
				if i+1 >= len(args) {
					return false, 0, nil, usageErrorf("--watch-interval needs a duration, e.g. 5s")
				}
				i++
				val = args[i]
			}
			if interval, err = time.ParseDuration(val); err != nil || interval < 500*time.Millisecond {
				return false, 0, nil, usageErrorf("--watch-interval: %q is not a duration of at least 500ms", val)
			}
		default:
			rest = append(rest, arg)
		}
	}
	return watch, interval, rest, nil
}
