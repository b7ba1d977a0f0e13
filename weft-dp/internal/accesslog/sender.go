package accesslog

import (
	"context"
	"log/slog"
	"net"
	"sync/atomic"
	"time"
)

// Sender streams lines to one TCP backend: a bounded queue (a full queue
// drops the line and counts it; the first drop is logged), one connection,
// reconnecting with a back-off that doubles up to a cap.
type Sender struct {
	addr  string
	queue chan string
	log   *slog.Logger
	dial  func(ctx context.Context, addr string) (net.Conn, error)
	minB  time.Duration
	maxB  time.Duration

	sent, dropped atomic.Uint64
	dropLogged    atomic.Bool
}

// maxBatch bounds the bytes written to the backend in one write.
const maxBatch = 64 << 10

// writeTimeout bounds one write to the backend: a backend that stops
// reading is treated as gone.
const writeTimeout = 10 * time.Second

func newSender(addr string, queue int, minB, maxB time.Duration, log *slog.Logger) *Sender {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &Sender{addr: addr, queue: make(chan string, queue), log: log.With("backend", addr), dial: func(ctx context.Context, a string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", a)
	}, minB: minB, maxB: maxB}
}

// Enqueue queues a line without blocking; it reports false when the queue
// is full and the line was dropped.
func (s *Sender) Enqueue(line string) bool {
	select {
	case s.queue <- line:
		return true
	default:
		s.dropped.Add(1)
		if s.dropLogged.CompareAndSwap(false, true) {
			s.log.Warn("access log backend is not keeping up: dropping lines (counted, logged only this once)", "queue", cap(s.queue))
		}
		return false
	}
}

// Sent and Dropped are the lines written to the backend and dropped.
func (s *Sender) Sent() uint64    { return s.sent.Load() }
func (s *Sender) Dropped() uint64 { return s.dropped.Load() }

// run writes queued lines until ctx ends.
func (s *Sender) run(ctx context.Context) {
	var (
		conn    net.Conn
		pending []byte // the batch a failed write did not deliver
		lines   int
		backoff = s.minB
		lastErr string
	)
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	fail := func(err error) bool {
		if msg := err.Error(); msg != lastErr {
			s.log.Warn("access log backend unreachable, retrying", "err", err, "retry", backoff)
			lastErr = msg
		} else {
			s.log.Debug("access log backend unreachable, retrying", "err", err, "retry", backoff)
		}
		t := time.NewTimer(backoff)
		defer t.Stop()
		backoff = min(backoff*2, s.maxB)
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for {
		if pending == nil {
			select {
			case <-ctx.Done():
				return
			case l := <-s.queue:
				pending, lines = append(append(pending, l...), '\n'), 1
			}
		drain:
			for len(pending) < maxBatch {
				select {
				case l := <-s.queue:
					pending = append(append(pending, l...), '\n')
					lines++
				default:
					break drain
				}
			}
		}
		if conn == nil {
			c, err := s.dial(ctx, s.addr)
			if err != nil {
				if ctx.Err() != nil || !fail(err) {
					return
				}
				continue
			}
			conn = c
			if lastErr != "" {
				s.log.Info("access log backend reachable again")
				lastErr = ""
			}
		}
		_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := conn.Write(pending); err != nil {
			// Part of the batch may have arrived; sending it whole again
			// may repeat lines, never lose them while the queue holds.
			conn.Close()
			conn = nil
			if !fail(err) {
				return
			}
			continue
		}
		backoff = s.minB
		s.sent.Add(uint64(lines))
		pending, lines = nil, 0
	}
}
