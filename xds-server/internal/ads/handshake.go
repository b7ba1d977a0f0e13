package ads

import (
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// LimitHandshakes bounds how many of l's connections are in their set-up
// (TLS handshake and HTTP/2 preface) at once.
//
// Without it a reconnect storm collapses: thousands of connections share
// the CPU fairly, so every handshake finishes late, most of them after the
// connection timeout, and the proxies retry with a growing back-off (a
// replica killed with 5,000 proxies took 50 s to 2 min to move them at
// 10k; the proxies' errors were handshake and preface timeouts). With a
// bound the handshakes finish a few at a time, in arrival order.
//
// A connection takes a slot when its client's first bytes arrive (a
// connection that sends nothing holds none) and gives it back when gRPC
// clears the set-up deadline (done, either way), when it is closed, or
// after maxHold, whichever comes first: a client that stalls mid-handshake
// delays the others by at most maxHold. Waiting for a slot (at most
// HandshakeMaxWait) does not count against the set-up deadline. n ≤ 0: no
// bound.
func LimitHandshakes(l net.Listener, n int, maxHold time.Duration, log *slog.Logger) net.Listener {
	if n <= 0 {
		return l
	}
	return &handshakeListener{Listener: l, slots: make(chan struct{}, n), maxHold: maxHold, log: log}
}

type handshakeListener struct {
	net.Listener
	slots   chan struct{}
	maxHold time.Duration
	log     *slog.Logger
	// lastFull is when waiting for a slot was last logged (unix ns).
	lastFull atomic.Int64
}

func (l *handshakeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &handshakeConn{Conn: c, l: l}, nil
}

// noteFull logs, at most once a minute, that connections wait for a slot.
func (l *handshakeListener) noteFull() {
	now := time.Now().UnixNano()
	last := l.lastFull.Load()
	if now-last < int64(time.Minute) || !l.lastFull.CompareAndSwap(last, now) {
		return
	}
	l.log.Info("connection set-up is queued: the maximum of TLS handshakes run at once; the rest wait in arrival order (normal in a reconnect storm; raise --max-concurrent-handshakes only if there are idle cores)",
		"max", cap(l.slots))
}

type handshakeConn struct {
	net.Conn
	l *handshakeListener

	// over: set-up finished or the connection closed; reads skip the lock.
	over atomic.Bool

	mu       sync.Mutex
	started  bool // a slot was asked for (first read)
	held     bool
	done     bool // set-up over: never take a slot again
	deadline time.Time
	hold     *time.Timer
}

// SetDeadline is what gRPC calls before the set-up (the connection
// timeout) and after it (zero: done, either way).
func (c *handshakeConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	if t.IsZero() {
		c.done = true
		c.over.Store(true)
		c.releaseLocked()
	} else {
		c.deadline = t
	}
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *handshakeConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if c.over.Load() {
		return n, err
	}
	c.mu.Lock()
	first := !c.started && !c.done && n > 0
	if first {
		c.started = true
	}
	deadline := c.deadline
	c.mu.Unlock()
	if first {
		c.acquire(deadline)
	}
	return n, err
}

// acquire waits for a slot, at most HandshakeMaxWait, then moves the
// set-up deadline (zero: none) later by the time waited: a connection is
// not timed out for waiting its turn. When the wait runs out, the set-up
// goes on without a slot.
func (c *handshakeConn) acquire(deadline time.Time) {
	start := time.Now()
	select {
	case c.l.slots <- struct{}{}:
	default:
		c.l.noteFull()
		t := time.NewTimer(HandshakeMaxWait)
		defer t.Stop()
		select {
		case c.l.slots <- struct{}{}:
		case <-t.C:
			c.extend(deadline, start)
			return
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		// Closed or finished while waiting.
		<-c.l.slots
		return
	}
	c.extendLocked(deadline, start)
	c.held = true
	c.hold = time.AfterFunc(c.l.maxHold, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.releaseLocked()
	})
}

func (c *handshakeConn) extend(deadline, start time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.extendLocked(deadline, start)
}

func (c *handshakeConn) extendLocked(deadline, start time.Time) {
	// Not when gRPC has set another deadline meanwhile (or cleared it).
	if c.done || deadline.IsZero() || !c.deadline.Equal(deadline) {
		return
	}
	c.deadline = deadline.Add(time.Since(start))
	c.Conn.SetDeadline(c.deadline)
}

func (c *handshakeConn) releaseLocked() {
	if !c.held {
		return
	}
	c.held = false
	if c.hold != nil {
		c.hold.Stop()
		c.hold = nil
	}
	<-c.l.slots
}

func (c *handshakeConn) Close() error {
	c.mu.Lock()
	c.done = true
	c.over.Store(true)
	c.releaseLocked()
	c.mu.Unlock()
	return c.Conn.Close()
}
