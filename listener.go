package kcptun

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang/snappy"
	kcp "github.com/xtaci/kcp-go/v5"
	"github.com/xtaci/smux"

	"github.com/seed-fc8f924e/kcptun/internal/kcpdrain"
	"github.com/seed-fc8f924e/kcptun/internal/packet"
	"github.com/seed-fc8f924e/kcptun/internal/smuxwire"
)

// Listener accepts streams from kcptun clients. It implements net.Listener:
// Accept returns the streams of every client session, each as a *Stream.
// Close stops everything at once; Shutdown first lets open streams finish.
type Listener struct {
	cfg    *config
	lns    []*kcp.Listener
	pconns []*packet.Conn // the packet conn under each of lns

	accepts    chan *Stream
	stopAccept chan struct{} // closed by Shutdown or Close: Accept returns
	done       chan struct{} // closed by Close
	stopOnce   sync.Once
	closeOnce  sync.Once
	wg         sync.WaitGroup // every goroutine the Listener started
	acceptWG   sync.WaitGroup // the acceptSessions loops, a subset of wg

	mu       sync.Mutex
	sessions map[*session]struct{}
	open     int           // streams handed out and not closed
	drained  chan struct{} // closed when open reaches 0 during Shutdown
	draining bool
	closing  finishingStreams // closed streams whose writers are finishing

	refused atomic.Uint64
	total   atomic.Uint64
	formats formatCounters // what the clients speak (detect_listener.go)
}

// ListenerStats is a snapshot of a Listener's sessions.
type ListenerStats struct {
	Sessions        int    // KCP sessions open now, those still showing their format included
	Streams         int    // streams accepted and not yet closed
	TotalSessions   uint64 // sessions accepted since Listen
	RefusedSessions uint64 // sessions refused by the WithMaxSessions cap

	// What the clients spoke, per session since Listen.
	SmuxV1Sessions     uint64 // sessions whose client spoke smux v1
	SmuxV2Sessions     uint64 // sessions whose client spoke smux v2
	CompressedSessions uint64 // sessions whose client used snappy compression
	// MismatchedSessions counts sessions refused because the client's smux
	// version or compression differed from one pinned by WithSmuxVersion or
	// WithCompression.
	MismatchedSessions uint64
	// PerSession holds the counters of every open session, in no
	// particular order.
	PerSession []SessionStats
}

// Listen listens for kcptun clients on the UDP address addr ("host:port", or
// "host:min-max" to listen on every port of the range).
func Listen(addr string, opts ...Option) (*Listener, error) {
	cfg, err := newConfig(entryListen, opts)
	if err != nil {
		return nil, err
	}
	ra, err := parseAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("kcptun: listen %s: %w", addr, err)
	}
	l := newListener(cfg)
	for port := ra.lo; port <= ra.hi; port++ {
		hp := net.JoinHostPort(ra.host, strconv.Itoa(port))
		ln, pc, err := listenPacketConn(cfg, hp)
		if err != nil {
			l.closeListeners()
			return nil, fmt.Errorf("kcptun: listen %s: %w", hp, err)
		}
		l.lns = append(l.lns, ln)
		l.pconns = append(l.pconns, pc)
		cfg.applySocketOptions(ln)
	}
	l.start()
	return l, nil
}

func newListener(cfg *config) *Listener {
	return &Listener{
		cfg:        cfg,
		accepts:    make(chan *Stream),
		stopAccept: make(chan struct{}),
		done:       make(chan struct{}),
		sessions:   make(map[*session]struct{}),
	}
}

// start runs an accept loop on every kcp-go listener.
func (l *Listener) start() {
	for _, ln := range l.lns {
		l.wg.Add(1)
		l.acceptWG.Add(1)
		go l.acceptSessions(ln)
	}
}

// Accept waits for the next stream from any client session.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case st := <-l.accepts:
		return st, nil
	case <-l.stopAccept:
		return nil, &net.OpError{Op: "accept", Net: "kcp", Addr: l.Addr(), Err: net.ErrClosed}
	}
}

// Addr returns the UDP address of the first (or only) port listened on.
func (l *Listener) Addr() net.Addr { return l.lns[0].Addr() }

// Addrs returns the UDP address of every port listened on.
func (l *Listener) Addrs() []net.Addr {
	addrs := make([]net.Addr, len(l.lns))
	for i, ln := range l.lns {
		addrs[i] = ln.Addr()
	}
	return addrs
}

// Stats returns a snapshot of the Listener's sessions and streams.
func (l *Listener) Stats() ListenerStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := ListenerStats{
		Sessions:        len(l.sessions) + int(l.formats.detecting.Load()),
		Streams:         l.open,
		TotalSessions:   l.total.Load(),
		RefusedSessions: l.refused.Load(),
		PerSession:      make([]SessionStats, 0, len(l.sessions)),

		SmuxV1Sessions:     l.formats.v1.Load(),
		SmuxV2Sessions:     l.formats.v2.Load(),
		CompressedSessions: l.formats.compressed.Load(),
		MismatchedSessions: l.formats.mismatched.Load(),
	}
	for s := range l.sessions {
		st.PerSession = append(st.PerSession, s.stats())
	}
	return st
}

// Close stops accepting, closes every session the Listener accepted (and with
// them their streams) and its sockets, and waits for its goroutines to stop
// and for streams already closed to finish, so that Stats then counts none of
// them. It is safe to call more than once and concurrently with everything else.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		l.stopAccepting()
		close(l.done)
		l.closeListeners()
		// No session may be closed before kcp-go's read loops stopped: a late
		// datagram from its client would open a fresh one.
		l.acceptWG.Wait()
		l.mu.Lock()
		sessions := make([]*session, 0, len(l.sessions))
		for s := range l.sessions {
			sessions = append(sessions, s)
		}
		l.mu.Unlock()
		for _, s := range sessions {
			s.close()
		}
		l.wg.Wait()
		l.closing.wait()
	})
	return nil
}

// Shutdown stops accepting new streams and sessions, waits until every
// accepted stream has been closed or ctx ends, then until the peers have
// acknowledged every KCP segment the sessions sent (at most 2 s, for a peer
// that vanished), and closes everything as Close does. It returns ctx's
// error if streams were still open.
func (l *Listener) Shutdown(ctx context.Context) error {
	l.stopAccepting()
	l.mu.Lock()
	if !l.draining {
		l.draining = true
		l.drained = make(chan struct{})
		if l.open == 0 {
			close(l.drained)
		}
	}
	drained := l.drained
	l.mu.Unlock()

	var err error
	select {
	case <-drained:
		// The streams are closed; give KCP the chance to deliver what they
		// wrote last before the sessions go.
		l.waitDelivered(ctx, time.Duration(l.cfg.timing().Interval)*time.Millisecond)
	case <-ctx.Done():
		err = ctx.Err()
	}
	_ = l.Close()
	return err
}

// maxFlushWait bounds how long Shutdown waits for KCP to deliver.
const maxFlushWait = 2 * time.Second

// waitDelivered waits, until ctx ends, until no session has a KCP segment
// that its peer has not acknowledged, throughout two flush intervals (what
// kcp-go still holds unsent goes out within one interval and then counts as
// unacknowledged). The packet layer counts each session's unacknowledged
// segments exactly, from the sn it sends and the una its peer reports.
func (l *Listener) waitDelivered(ctx context.Context, interval time.Duration) {
	waitDelivered(ctx, interval, l.unacked)
}

// waitDelivered waits, until ctx ends and at most maxFlushWait, until
// unacked reads zero throughout two flush intervals.
func waitDelivered(ctx context.Context, interval time.Duration, unacked func() uint64) {
	ctx, cancel := context.WithTimeout(ctx, maxFlushWait)
	defer cancel()
	const poll = time.Millisecond
	t := time.NewTicker(poll)
	defer t.Stop()
	var quiet time.Duration
	for quiet < 2*interval {
		if unacked() == 0 {
			quiet += poll
		} else {
			quiet = 0
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// unacked sums the sessions' unacknowledged segments.
func (l *Listener) unacked() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n uint64
	for s := range l.sessions {
		if s.peer != nil {
			n += uint64(s.peer.Stats().Unacked())
		}
	}
	return n
}

func (l *Listener) stopAccepting() { l.stopOnce.Do(func() { close(l.stopAccept) }) }

func (l *Listener) closeListeners() {
	for _, ln := range l.lns {
		_ = ln.Close()
	}
	for _, pc := range l.pconns {
		_ = pc.Close()
	}
}

// listenPacketConn opens a UDP socket on hp with the packet layer over it
// and a kcp-go listener (no cipher, no FEC of its own) over that.
func listenPacketConn(cfg *config, hp string) (*kcp.Listener, *packet.Conn, error) {
	ua, err := net.ResolveUDPAddr("udp", hp)
	if err != nil {
		return nil, nil, err
	}
	udp, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, nil, err
	}
	pcfg, err := cfg.packetConfig(true)
	if err != nil {
		_ = udp.Close()
		return nil, nil, err
	}
	diag, err := newCipherDiagnosis(cfg)
	if err != nil {
		_ = udp.Close()
		return nil, nil, err
	}
	pcfg.AuthFailed = func(from net.Addr, datagram []byte) { diag.failed(from, datagram, time.Now()) }
	pc := packet.NewConn(udp, pcfg)
	ln, err := kcp.ServeConn(nil, 0, 0, pc)
	if err != nil {
		_ = pc.Close()
		return nil, nil, err
	}
	return ln, pc, nil
}

// acceptSessions takes new KCP sessions from one port and serves each.
func (l *Listener) acceptSessions(ln *kcp.Listener) {
	defer l.wg.Done()
	defer l.acceptWG.Done()
	for {
		ks, err := ln.AcceptKCP()
		if err != nil {
			select {
			case <-l.done:
			default:
				l.cfg.logger.Error("kcptun: listener stopped", "addr", ln.Addr(), "err", err)
			}
			kcpdrain.Backlog(ln)
			return
		}
		if err := l.cfg.tune(ks, true); err != nil {
			l.cfg.logger.Error("kcptun: cannot configure session", "remote", ks.RemoteAddr(), "err", err)
			_ = ks.Close()
			continue
		}
		l.startSession(ks)
	}
}

// register adds s to the Listener's sessions unless the Listener is closing or
// full. Either way s is no longer detecting its format: register counts it out
// of the sessions detecting in the same step as it counts it in, so that
// Stats never counts it twice (a test saw 4 sessions of 3).
func (l *Listener) register(s *session) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.formats.detecting.Add(-1)
	select {
	case <-l.stopAccept:
		return false
	default:
	}
	if len(l.sessions) >= l.cfg.maxSessions {
		if l.refused.Add(1) == 1 {
			l.cfg.logger.Warn("kcptun: session cap reached, refusing new sessions", "max", l.cfg.maxSessions)
		}
		return false
	}
	l.sessions[s] = struct{}{}
	l.total.Add(1)
	l.bind(s)
	return true
}

// bind attaches a new session to the packet conn it arrived on, which from
// then on keeps its counters, recovers its FEC and follows its migrations.
func (l *Listener) bind(s *session) {
	pc := l.pconns[0]
	if len(l.pconns) > 1 {
		local := s.kcp.LocalAddr().String()
		for _, c := range l.pconns {
			if c.LocalAddr().String() == local {
				pc = c
			}
		}
	}
	s.pconn = pc
	s.peer = pc.Bind(s.kcp.RemoteAddr(), s.kcp.GetConv())
	l.cfg.adaptSession(s.kcp, s.peer, true)
}

// serveSession hands the session's streams to Accept until it ends.
func (l *Listener) serveSession(s *session) {
	defer l.wg.Done()
	defer func() {
		s.close()
		l.cfg.logger.Info("kcptun: session ended", "session", s.stats())
		l.mu.Lock()
		delete(l.sessions, s)
		l.mu.Unlock()
		s.pconn.Forget(s.peer)
	}()
	remote := s.kcp.RemoteAddr()
	l.cfg.logger.Debug("kcptun: session opened", "remote", remote)
	// A session that opens no stream in time is dropped, so stray or replayed
	// datagrams cannot hold sessions open.
	_ = s.mux.SetDeadline(time.Now().Add(l.cfg.acceptTO))
	first := true
	for {
		st, err := s.mux.AcceptStream()
		if err != nil {
			l.logSessionEnd(remote, err, first)
			return
		}
		// The Stream owns the close, not smux's finalizer.
		smuxwire.KeepAccepted(st)
		if first {
			first = false
			_ = s.mux.SetDeadline(time.Time{})
		}
		stream, ok := l.handOut(st, s)
		if !ok {
			_ = st.Close()
			continue
		}
		select {
		case l.accepts <- stream:
		case <-l.stopAccept:
			_ = stream.Close()
		}
	}
}

// handOut wraps an accepted smux stream and counts it, unless the Listener
// is shutting down.
func (l *Listener) handOut(st *smux.Stream, s *session) (*Stream, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.draining {
		return nil, false
	}
	select {
	case <-l.stopAccept:
		return nil, false
	default:
	}
	l.open++
	return newStream(st, s, l), true
}

// ownsSession tells the Listener's streams that their sessions are shared.
func (l *Listener) ownsSession() bool { return false }

// streamClosing counts a stream of the Listener whose Close has begun.
func (l *Listener) streamClosing() { l.closing.add() }

// streamReleased counts a stream of the Listener that has finished.
func (l *Listener) streamReleased() {
	defer l.closing.done()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.draining && l.open == 0 {
		close(l.drained)
	}
}

// logSessionEnd reports why a session ended, with a hint where the cause is
// most likely a setting that differs between the two ends.
func (l *Listener) logSessionEnd(remote net.Addr, err error, noStream bool) {
	lg := l.cfg.logger
	switch {
	case errors.Is(err, smux.ErrInvalidProtocol):
		lg.Warn("kcptun: smux protocol error from client: both ends must use the same smux version and compression setting",
			"remote", remote, "smuxver", l.cfg.smuxVersion, "compression", l.cfg.compression, "err", err)
	case errors.Is(err, snappy.ErrCorrupt) || errors.Is(err, snappy.ErrUnsupported):
		lg.Warn("kcptun: cannot decompress the client's stream: both ends must agree on compression",
			"remote", remote, "compression", l.cfg.compression, "err", err)
	case errors.Is(err, smux.ErrTimeout) && noStream:
		lg.Debug("kcptun: session opened no stream in time, closing it", "remote", remote)
	default:
		lg.Debug("kcptun: session closed", "remote", remote, "err", err)
	}
}
