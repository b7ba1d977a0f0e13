package cmd

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestWatchFlags(t *testing.T) {
	w, iv, rest, err := watchFlags([]string{"-m", "demo", "--watch", "--watch-interval", "1s", "-o", "wide", "--", "-w"})
	if err != nil || !w || iv != time.Second || strings.Join(rest, " ") != "-m demo -o wide -- -w" {
		t.Fatalf("= %v %v %q %v", w, iv, rest, err)
	}
	if w, iv, _, _ := watchFlags([]string{"-w=false"}); w || iv != defaultWatchInterval {
		t.Fatalf("-w=false: %v %v", w, iv)
	}
	if _, _, _, err := watchFlags([]string{"-w", "--watch-interval=1ms"}); err == nil {
		t.Fatal("1ms accepted")
	}
}

// --watch prints the view again until the context ends; a later failure is
// printed and the watch goes on; the first failure ends it.
func TestWatchRepeatsUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut bytes.Buffer
	a := New(nil, &out, &errOut)
	runs := 0
	view := watchable(func(ctx context.Context, a *App, args []string) error {
		runs++
		if len(args) != 1 || args[0] != "-o=wide" {
			t.Errorf("args = %q", args)
		}
		switch runs {
		case 2:
			return errors.New("control plane restarting")
		case 3:
			cancel()
		}
		a.Stdout.Write([]byte("view\n"))
		return nil
	})
	if err := view(ctx, a, []string{"--watch", "-o=wide", "--watch-interval=500ms"}); err != nil {
		t.Fatal(err)
	}
	if runs != 3 || strings.Count(out.String(), "Every 500ms: ") != 3 || !strings.Contains(errOut.String(), "Error: control plane restarting") {
		t.Fatalf("runs %d\nstdout:\n%s\nstderr:\n%s", runs, out.String(), errOut.String())
	}
	runs = 1 // the next run fails: a first failure is returned
	if err := view(context.Background(), a, []string{"-w", "-o=wide"}); err == nil {
		t.Fatal("first failure not returned")
	}
}
