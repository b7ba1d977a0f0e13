//go:build unix

package up

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockFile is taken in the data dir for as long as `weftctl up` runs.
const lockFile = "up.lock"

// lockDataDir takes an exclusive, non-blocking lock on <dir>/up.lock, so
// a second `weftctl up` on the same data dir fails at once with a clear
// message instead of blocking in etcd's backend (which holds its own lock
// and waits for it forever, deaf to Ctrl-C). The lock goes with the
// process; the returned func releases it earlier.
func lockDataDir(dir string) (func(), error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid := ""
		if b, rerr := os.ReadFile(path); rerr == nil {
			if n, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
				pid = fmt.Sprintf(" (pid %d)", n)
			}
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data dir %s is in use by another weftctl up%s: stop that one, or run this one with its own --data-dir and --port-offset 1000", dir, pid)
		}
		return nil, fmt.Errorf("lock data dir %s: %w", dir, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
