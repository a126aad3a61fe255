package kcptun

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Client keeps a pool of KCP sessions to one server and opens streams over
// them, round-robin. A session that dies (keepalive timeout, socket error) is
// replaced in the background; with WithAutoExpire a session stops taking new
// streams after a while and is closed once its last stream ends or the
// scavenge TTL passes. A Client is safe for concurrent use.
//
// KCP delivers a session's bytes in order, so every stream of a session
// waits behind any packet the session lost, and behind what a transfer on
// another stream has queued. Unless WithConns or WithAdaptive(false) is
// given, a Client therefore opens a stream on a side session (a second KCP
// session, from its own UDP port) when its session is busy: at least 8 of
// its packets unacknowledged, or data arriving at a rate that keeps as many
// in flight toward it. Messages beside a bulk transfer then see the path's
// delay rather than the transfer's queue and losses. The side session is
// dialed when first needed (the Dial that needs it waits for it up to two
// round trips and a retransmission timeout, 1 s at most, and otherwise uses
// the busy session), and closed once it has carried no stream for 30 s. Two
// transfers at once then run as two KCP flows, as with WithConns(2).
type Client struct {
	cfg    *config
	addr   string
	ra     remoteAddr
	slots  []*slot
	side   *slot               // the side session, nil when the pool is pinned (WithConns, WithAdaptive(false))
	busy   func(*session) bool // (*session).busy; tests replace it
	next   atomic.Uint32
	ctx    context.Context // ends when the Client is closed
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the Client started

	mu      sync.Mutex
	closed  bool
	stopped bool             // Shutdown or Close: no new streams
	open    int              // streams handed out and not finished
	drained chan struct{}    // closed when open drops to 0 after stopped
	closing finishingStreams // closed streams whose writers are finishing
	retired map[*session]struct{}

	dials    atomic.Uint64
	failures atomic.Uint64
	formats  serverFormat // what the server speaks (detect_client.go)
}

// ClientStats is a snapshot of a Client's pool.
type ClientStats struct {
	Sessions    int    // live sessions taking new streams, the side session included
	Side        int    // 1 while the side session is open (see Client), else 0
	Retired     int    // expired sessions still serving their streams
	Streams     int    // streams open on all sessions (a closed one until its last bytes went to smux)
	Dials       uint64 // sessions dialed successfully since NewClient
	FailedDials uint64 // session dials that failed
	// PerSession holds the counters of every live and retired session.
	PerSession []SessionStats
}

// Stats returns a snapshot of the Client's pool.
func (c *Client) Stats() ClientStats {
	st := ClientStats{Dials: c.dials.Load(), FailedDials: c.failures.Load()}
	for _, sl := range c.pool() {
		sl.mu.Lock()
		if s := sl.sess; s != nil && !s.isClosed() {
			st.Sessions++
			if sl == c.side {
				st.Side++
			}
			st.Streams += int(s.streams.Load())
			st.PerSession = append(st.PerSession, s.stats())
		}
		sl.mu.Unlock()
	}
	c.mu.Lock()
	st.Retired = len(c.retired)
	for s := range c.retired {
		st.Streams += int(s.streams.Load())
		st.PerSession = append(st.PerSession, s.stats())
	}
	c.mu.Unlock()
	return st
}

// slot holds one pooled session, or the dial that will fill it.
type slot struct {
	mu      sync.Mutex
	sess    *session
	dialing chan struct{} // closed when the dial in flight ends; nil if none
	err     error         // the last dial's error
	failed  time.Time     // when the last dial failed
}

// pool returns every slot of the Client: the pooled ones and the side slot.
func (c *Client) pool() []*slot {
	if c.side == nil {
		return c.slots
	}
	return append(c.slots[:len(c.slots):len(c.slots)], c.side)
}

// NewClient returns a Client for the kcptun server at addr ("host:port", or
// "host:min-max" for a random port per session). It starts dialing its
// WithConns sessions in the background and returns at once; option errors are
// reported here, connection errors by Dial.
func NewClient(addr string, opts ...Option) (*Client, error) {
	cfg, err := newConfig(entryClient, opts)
	if err != nil {
		return nil, err
	}
	ra, err := parseAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("kcptun: client %s: %w", addr, err)
	}
	c := &Client{cfg: cfg, addr: addr, ra: ra, retired: make(map[*session]struct{})}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	// Set before the first dial starts: its goroutine compares its slot
	// with c.side.
	if cfg.adaptive && !cfg.connsSet {
		c.side = &slot{} // dialed when needed, not refilled when its session dies
	}
	c.busy = (*session).busy
	c.slots = make([]*slot, cfg.conns)
	for i := range c.slots {
		c.slots[i] = &slot{}
		c.slots[i].mu.Lock()
		c.startDial(c.slots[i])
		c.slots[i].mu.Unlock()
	}
	return c, nil
}

// Dial opens a new stream to the server.
func (c *Client) Dial() (net.Conn, error) { return c.DialContext(context.Background()) }

// DialContext opens a new stream, waiting at most until ctx ends for a session
// to become ready. When the server never acknowledges the session, the error
// matches ErrNoResponse, also when ctx's deadline ended the wait (it then
// matches context.DeadlineExceeded as well); a cancelled ctx gives an error
// that matches context.Canceled.
func (c *Client) DialContext(ctx context.Context) (net.Conn, error) {
	if err := c.openStreams(); err != nil {
		return nil, err
	}
	start := time.Now()
	var lastErr error
	// A session can die between being picked and opening the stream; try each
	// slot once more before giving up.
	for range len(c.slots) + 1 {
		s, err := c.pick(ctx, start)
		if err != nil {
			return nil, err
		}
		st, err := s.openStream()
		if err == nil {
			c.mu.Lock()
			if c.stopped {
				c.mu.Unlock()
				_ = st.Close()
				return nil, c.closedError()
			}
			c.open++
			c.mu.Unlock()
			return newStream(st, s, c), nil
		}
		lastErr = err
		c.cfg.logger.Debug("kcptun: session refused a stream, replacing it", "addr", c.addr, "err", err)
		s.close()
	}
	return nil, fmt.Errorf("kcptun: dial %s: open stream: %w", c.addr, lastErr)
}

// busySegments is how many KCP segments in flight, in either direction,
// make a session busy for the Client's placement of new streams: a bulk
// transfer keeps more out even on a 2 Mbit/s, 40 ms path (13-38 there,
// hundreds at 100 Mbit/s); a game's messages keep one or two. At 32, a
// transfer at 2 Mbit/s did not count, and messages beside it waited 180-250
// ms at the median instead of 60-70. Counting a burst of a few requests as
// busy costs no more than a side session opened early.
const busySegments = 8

// sideSessionLinger is how long a side session that carries no stream stays
// open for the next one.
const sideSessionLinger = 30 * time.Second

// sideWait bounds how long a Dial waits for the side session to be dialed
// before it opens its stream on the busy session instead: two round trips
// of that session and KCP's first retransmission timeout (so that one lost
// packet of the dial does not leave the stream behind the busy one for
// good), at most 1 s. sideRetry is how long the Client leaves the side
// session alone after its dial failed.
const (
	sideWaitMax = time.Second
	sideRetry   = 30 * time.Second
)

// busy reports whether the session carries a transfer: busySegments of its
// own segments unacknowledged, or data arriving fast enough to keep that many
// of the peer's in flight over the round trip.
func (s *session) busy() bool {
	if s.peer == nil {
		return false
	}
	if s.peer.Stats().Unacked() >= busySegments {
		return true
	}
	a, ok := s.peer.Adaptive()
	if !ok {
		return false
	}
	rtt := a.SmoothedRTT
	if rtt <= 0 {
		rtt = a.MinRTT
	}
	return float64(a.ReceiveRate)*rtt.Seconds() >= float64(busySegments*s.cfg.kcpMTU())
}

// pick returns the session for a new stream: the next pooled session in
// turn or, when that one is busy and the Client keeps a side session, the
// side session, dialed if needed, unless it is busy too and carries more
// streams. When the side session cannot be had in time the busy one serves.
func (c *Client) pick(ctx context.Context, start time.Time) (*session, error) {
	s, err := c.sessionOf(ctx, c.slots[int(c.next.Add(1)-1)%len(c.slots)], start)
	if err != nil || c.side == nil || !c.busy(s) {
		return s, err
	}
	c.side.mu.Lock()
	skip := c.side.sess == nil && c.side.dialing == nil && time.Since(c.side.failed) < sideRetry
	c.side.mu.Unlock()
	if skip {
		return s, nil
	}
	wait := sideWaitMax
	if st, ok := s.peer.Adaptive(); ok && st.SmoothedRTT > 0 {
		wait = min(2*st.SmoothedRTT+(initialRTO+50)*time.Millisecond, sideWaitMax)
	}
	sctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	side, err := c.sessionOf(sctx, c.side, start)
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, err // the caller's own deadline or cancellation
	case err != nil:
		c.cfg.logger.Debug("kcptun: no side session yet, opening the stream on the busy one", "addr", c.addr, "err", err)
		return s, nil
	case c.busy(side) && side.streams.Load() > s.streams.Load():
		return s, nil
	}
	return side, nil
}

// sessionOf returns the slot's live session, dialing a new one if needed.
func (c *Client) sessionOf(ctx context.Context, sl *slot, start time.Time) (*session, error) {
	for {
		sl.mu.Lock()
		if s := sl.sess; s != nil {
			switch {
			case s.isClosed():
				sl.sess = nil
			case c.cfg.autoExpire > 0 && time.Since(s.created) >= c.cfg.autoExpire:
				sl.sess = nil
				c.retire(s)
			default:
				s.picked.Store(time.Now().UnixNano())
				sl.mu.Unlock()
				return s, nil
			}
		}
		if sl.dialing == nil {
			if err := c.startDial(sl); err != nil {
				sl.mu.Unlock()
				return nil, err
			}
		}
		wait := sl.dialing
		sl.mu.Unlock()

		select {
		case <-wait:
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				// The session the caller waited for was never acknowledged.
				return nil, noResponseError(c.addr, c.cfg, time.Since(start))
			}
			return nil, fmt.Errorf("kcptun: dial %s: %w", c.addr, ctx.Err())
		}
		sl.mu.Lock()
		s, err := sl.sess, sl.err
		sl.mu.Unlock()
		if s == nil && err == nil {
			continue // the session died at once and its slot is being refilled
		}
		if s == nil {
			return nil, err
		}
		if !s.isClosed() {
			// A session dialed for this caller serves it even if it is
			// already past WithAutoExpire.
			s.picked.Store(time.Now().UnixNano())
			return s, nil
		}
	}
}

// startDial starts filling sl in the background. sl.mu must be held.
func (c *Client) startDial(sl *slot) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.closedError()
	}
	done := make(chan struct{})
	sl.dialing = done
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		s, err := c.formats.open(c.ctx, c.cfg, c.addr, c.ra) // in the server's format, once known
		if err != nil {
			c.failures.Add(1)
			c.cfg.logger.Warn("kcptun: session dial failed", "addr", c.addr, "side", sl == c.side, "err", err)
		} else {
			c.dials.Add(1)
		}
		sl.mu.Lock()
		c.mu.Lock()
		if c.closed && s != nil {
			s.close()
			s, err = nil, c.closedError()
		}
		switch {
		case s != nil && sl == c.side:
			c.wg.Add(1)
			go c.watchSide(sl, s)
		case s != nil:
			c.wg.Add(1)
			go c.watch(sl, s)
		default:
			sl.failed = time.Now()
		}
		c.mu.Unlock()
		sl.sess, sl.err, sl.dialing = s, err, nil
		sl.mu.Unlock()
		close(done)
	}()
	return nil
}

// watch replaces the slot's session as soon as it dies, so that the next
// Dial does not have to trip over a dead session.
func (c *Client) watch(sl *slot, s *session) {
	defer c.wg.Done()
	select {
	case <-s.mux.CloseChan():
	case <-c.ctx.Done():
		return
	}
	s.close()
	c.cfg.logger.Info("kcptun: session closed, replacing it", "addr", c.addr, "session", s.stats())
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.sess == s {
		sl.sess = nil
		if sl.dialing == nil {
			_ = c.startDial(sl)
		}
	}
}

// watchSide closes the side session once it has carried no stream for the
// linger time, and forgets it when it dies: the next busy Dial dials
// another.
func (c *Client) watchSide(sl *slot, s *session) {
	defer c.wg.Done()
	linger := c.cfg.sideLinger
	t := time.NewTimer(linger)
	defer t.Stop()
	for {
		select {
		case <-s.mux.CloseChan():
			c.cfg.logger.Info("kcptun: side session closed", "addr", c.addr, "session", s.stats())
		case <-c.ctx.Done():
			return
		case <-s.idle:
			t.Reset(linger)
			continue
		case <-t.C:
			sl.mu.Lock()
			unused := time.Since(time.Unix(0, s.picked.Load()))
			switch {
			case s.streams.Load() > 0: // s.idle restarts the wait when they end
				sl.mu.Unlock()
				t.Reset(linger)
				continue
			case unused < linger: // picked for a stream that is being opened
				sl.mu.Unlock()
				t.Reset(linger - unused)
				continue
			}
			if sl.sess == s {
				sl.sess = nil
			}
			sl.mu.Unlock()
			c.cfg.logger.Info("kcptun: side session unused, closing it", "addr", c.addr, "session", s.stats())
		}
		break
	}
	s.close()
	sl.mu.Lock()
	if sl.sess == s {
		sl.sess = nil
	}
	sl.mu.Unlock()
}

// retire takes an expired session out of rotation and closes it once its last
// stream ends or the scavenge TTL passes.
func (c *Client) retire(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		s.close()
		return
	}
	c.retired[s] = struct{}{}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		ttl := time.NewTimer(c.cfg.scavengeTTL)
		defer ttl.Stop()
	wait:
		for s.streams.Load() > 0 {
			select {
			case <-s.idle:
			case <-ttl.C:
				break wait
			case <-s.mux.CloseChan():
				break wait
			case <-c.ctx.Done():
				break wait
			}
		}
		c.cfg.logger.Info("kcptun: session closed", "addr", c.addr, "retired", true, "session", s.stats())
		s.close()
		c.mu.Lock()
		delete(c.retired, s)
		c.mu.Unlock()
	}()
}

// Close closes every session of the pool, which ends their streams, and waits
// for the Client's goroutines to stop. It is safe to call more than once.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.stop()
	c.cancel()
	retired := make([]*session, 0, len(c.retired))
	for s := range c.retired {
		retired = append(retired, s)
	}
	c.mu.Unlock()

	for _, s := range retired {
		s.close()
	}
	for _, sl := range c.pool() {
		sl.mu.Lock()
		if sl.sess != nil {
			c.cfg.logger.Info("kcptun: session closed", "addr", c.addr, "session", sl.sess.stats())
			sl.sess.close()
		}
		sl.mu.Unlock()
	}
	c.wg.Wait()
	c.closing.wait()
	return nil
}

func (c *Client) closedError() error {
	return fmt.Errorf("kcptun: client %s: %w", c.addr, net.ErrClosed)
}

// openStreams reports whether the Client still opens streams.
func (c *Client) openStreams() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return c.closedError()
	}
	return nil
}

// stop makes the Client refuse new streams. c.mu must be held.
func (c *Client) stop() {
	if c.stopped {
		return
	}
	c.stopped = true
	c.drained = make(chan struct{})
	if c.open == 0 {
		close(c.drained)
	}
}

// ownsSession tells the Client's streams that their sessions are shared.
func (c *Client) ownsSession() bool { return false }

// streamClosing counts a stream of the Client whose Close has begun.
func (c *Client) streamClosing() { c.closing.add() }

// streamReleased counts a stream of the Client that has finished.
func (c *Client) streamReleased() {
	defer c.closing.done()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open--
	if c.stopped && c.open == 0 {
		close(c.drained)
	}
}

// unacked sums the KCP segments the Client's sessions sent that their
// server has not acknowledged yet.
func (c *Client) unacked() uint64 {
	var n uint64
	add := func(s *session) {
		if s != nil && s.peer != nil {
			n += uint64(s.peer.Stats().Unacked())
		}
	}
	for _, sl := range c.pool() {
		sl.mu.Lock()
		add(sl.sess)
		sl.mu.Unlock()
	}
	c.mu.Lock()
	for s := range c.retired {
		add(s)
	}
	c.mu.Unlock()
	return n
}

// Shutdown closes the Client gracefully: Dial fails from now on (the error
// matches net.ErrClosed), Shutdown waits until every stream the Client opened
// has been closed and has handed its last bytes to its session, or until ctx
// ends, then until the server has acknowledged every KCP segment the
// sessions sent (at most 2 s, for a server that vanished), and closes the Client as Close does. It returns ctx's
// error if streams were still open.
func (c *Client) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	c.stop()
	drained := c.drained
	c.mu.Unlock()
	var err error
	select {
	case <-drained:
		waitDelivered(ctx, time.Duration(c.cfg.timing().Interval)*time.Millisecond, c.unacked)
	case <-ctx.Done():
		err = ctx.Err()
	}
	_ = c.Close()
	return err
}
