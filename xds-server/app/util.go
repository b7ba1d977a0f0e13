package app

import (
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

func (c cacheLogger) Debugf(format string, args ...any) { c.l.Debug(fmt.Sprintf(format, args...)) }
func (c cacheLogger) Infof(format string, args ...any)  { c.l.Debug(fmt.Sprintf(format, args...)) }
func (c cacheLogger) Warnf(format string, args ...any)  { c.l.Warn(fmt.Sprintf(format, args...)) }
func (c cacheLogger) Errorf(format string, args ...any) { c.l.Error(fmt.Sprintf(format, args...)) }
