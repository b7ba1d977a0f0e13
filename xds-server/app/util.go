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

// cacheLogger adapts slog to go-control-plane's logger.
type cacheLogger struct{ l *slog.Logger }

// Debugf and Infof (go-control-plane's per-watch and per-response
// chatter, logged at debug) format only when debug is enabled: the
// arguments include whole requests, and formatting them for a discarded
// record cost every connecting proxy a few Sprintf calls.
func (c cacheLogger) Debugf(format string, args ...any) { c.debug(format, args) }
func (c cacheLogger) Infof(format string, args ...any)  { c.debug(format, args) }

func (c cacheLogger) debug(format string, args []any) {
	if c.l.Enabled(context.Background(), slog.LevelDebug) {
		c.l.Debug(fmt.Sprintf(format, args...))
	}
}

func (c cacheLogger) Warnf(format string, args ...any)  { c.l.Warn(fmt.Sprintf(format, args...)) }
func (c cacheLogger) Errorf(format string, args ...any) { c.l.Error(fmt.Sprintf(format, args...)) }
