package app

import (
	"context"
	"fmt"
	"log/slog"

	clientv3 "go.etcd.io/etcd/client/v3"
)

type clientv3Closer struct {
	cli   *clientv3.Client
	owned bool
}

func (c *clientv3Closer) close() {
	if c.owned {
		_ = c.cli.Close()
	}
}

// cacheLogger adapts slog to go-control-plane's logger. The snapshot
// cache logs a debug line per response (with the request's resource
// names): it is formatted only when debug logging is on, not once per
// proxy per change for nothing.
type cacheLogger struct{ l *slog.Logger }

func (c cacheLogger) Debugf(format string, args ...any) { c.debug(format, args) }
func (c cacheLogger) Infof(format string, args ...any)  { c.debug(format, args) }

func (c cacheLogger) debug(format string, args []any) {
	if c.l.Enabled(context.Background(), slog.LevelDebug) {
		c.l.Debug(fmt.Sprintf(format, args...))
	}
}
func (c cacheLogger) Warnf(format string, args ...any)  { c.l.Warn(fmt.Sprintf(format, args...)) }
func (c cacheLogger) Errorf(format string, args ...any) { c.l.Error(fmt.Sprintf(format, args...)) }
