package kcptun

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"
	"github.com/xtaci/smux"

	"github.com/seed-fc8f924e/kcptun/internal/smuxwire"

	"github.com/seed-fc8f924e/kcptun/internal/crypt"
	"github.com/seed-fc8f924e/kcptun/internal/packet"
)

// ErrNoResponse reports a new session that the server never acknowledged,
// whether the dial timeout or the caller's context deadline ended the wait
// (the error then matches context.DeadlineExceeded too; a cancelled context
// gives context.Canceled instead). Test for it with errors.Is. KCP and smux send nothing back until data flows,
// so this is how an unreachable address, blocked UDP, or a key or cipher
// mismatch (the server drops packets that fail its checksum) shows itself.
var ErrNoResponse = errors.New("no response from server")

// initialRTO is kcp-go's retransmission timeout before any ACK arrived (ms).
const initialRTO = 200

// session is one KCP session with the smux session over it.
type session struct {
	kcp     *kcp.UDPSession
	base    *kcpConn           // kcp wrapped: what the transport reads and writes
	tr      io.ReadWriteCloser // what smux runs over: base, or snappy over it, behind guard
	guard   *updateGuard       // keeps each stream's window updates in order (tr itself)
	cfg     *config
	server  bool
	version byte         // smux protocol version
	window  uint32       // smux v2 stream window advertised to the peer
	peer    *packet.Peer // the packet layer's view of the session; nil until bound
	pconn   *packet.Conn // the packet conn the session runs on
	mux     *smux.Session
	created time.Time
	streams atomic.Int64  // Streams handed out and not yet closed
	picked  atomic.Int64  // UnixNano when a Client last picked it for a new stream
	idle    chan struct{} // receives a token whenever streams drops to 0
	bufs    sync.Pool     // chunk buffers of the Streams' writers, frameSize bytes
	small   sync.Pool     // smallChunk-byte chunk buffers, for short writes
	closing sync.Once

	idleMu    sync.Mutex
	idleTimer *time.Timer // closes the session once it received nothing for cfg.idleTimeout
	idled     atomic.Bool // the idle timeout closed the session
}

// newSession wraps a configured KCP session and builds the transport smux
// runs over (s.tr); start puts smux on it.
func newSession(k *kcp.UDPSession, c *config, server bool) *session {
	s := &session{kcp: k, base: &kcpConn{s: k, corkLimit: min(maxCork, c.streamBuf/4)}, cfg: c, server: server, version: byte(c.smuxVersion),
		window: uint32(c.streamBuf), created: time.Now(), idle: make(chan struct{}, 1)}
	s.guard = newUpdateGuard(c.transport(s.base))
	s.tr = s.guard
	size := c.frameSize
	s.bufs.New = func() any { b := make([]byte, size); return &b }
	s.small.New = func() any { b := make([]byte, smallChunk); return &b }
	return s
}

// smallChunk is the size of the buffers that carry writes this short or
// shorter (when frames are longer). smux keeps the last frame it wrote
// referenced until it writes the next one, so a session that last sent a
// short message holds a small buffer while idle, not a whole frame's.
const smallChunk = 1024

// writeBuf returns a buffer from the session's pools for a write of n bytes:
// a small one when n fits, otherwise one of frameSize bytes.
func (s *session) writeBuf(n int) *[]byte {
	if n <= smallChunk && smallChunk < s.cfg.frameSize {
		return s.small.Get().(*[]byte)
	}
	return s.bufs.Get().(*[]byte)
}

// putWriteBuf returns a buffer from writeBuf to its pool.
func (s *session) putWriteBuf(b *[]byte) {
	if len(*b) == smallChunk && smallChunk < s.cfg.frameSize {
		s.small.Put(b)
		return
	}
	s.bufs.Put(b)
}

// start records the smux session running over s.tr (or over a wrapper of
// it) and arms the idle timeout.
func (s *session) start(m *smux.Session) {
	s.mux = m
	s.idleMu.Lock()
	s.idleTimer = time.AfterFunc(s.cfg.idleTimeout, s.checkIdle)
	s.idleMu.Unlock()
}

// checkIdle closes the session if it has been waiting for the peer's next
// byte for the idle timeout, and otherwise re-arms itself for the moment it
// would have. smux asks for bytes only while it has room for them, so a
// session whose user stopped reading is not counted as idle: the peer cannot
// send then.
func (s *session) checkIdle() {
	d := s.cfg.idleTimeout
	next := d
	if since := s.base.waitingSince.Load(); since != 0 {
		waited := time.Since(time.Unix(0, since))
		if waited >= d {
			s.idled.Store(true)
			s.cfg.logger.Debug("kcptun: session idle, closing it", "remote", s.kcp.RemoteAddr(), "idle", waited.Round(time.Millisecond))
			s.close()
			return
		}
		next = d - waited
	}
	s.idleMu.Lock()
	defer s.idleMu.Unlock()
	if s.idleTimer != nil && !s.isClosed() {
		s.idleTimer.Reset(next)
	}
}

// kcpConn is a KCP session as the transport sees it. It notes since when a
// Read has been waiting for the peer (the idle timeout's clock) and counts
// writes (so that a closing Dial stream knows how many of KCP's segments
// hold the SDK's own frames rather than the user's bytes) and the bytes
// written (so that it knows when KCP has sent them all).
type kcpConn struct {
	s            *kcp.UDPSession
	head         []byte       // bytes read before the transport existed (detection), served first
	waitingSince atomic.Int64 // UnixNano when the pending Read began, 0 if none
	writes       atomic.Uint64
	written      atomic.Uint64 // bytes handed to KCP, counted before the write
	opening      sync.RWMutex  // held by openStream: Read hands over nothing meanwhile

	// more counts writes announced to follow (moreFollows): the next write
	// takes one and may leave KCP's flush to the write after it.
	more      atomic.Int64
	corkLimit int        // the most bytes left unflushed
	wmu       sync.Mutex // serialises writes, so that each runs under the write delay it chose
	delaying  bool       // kcp-go's write delay is on; under wmu
	corked    int        // bytes written since a write last flushed; under wmu
	corks     uint64     // writes that left their flush to a later write; under wmu
}

// maxCork is the most bytes writes leave unflushed to the writes announced to
// follow them: four of kcptun's default 8 KiB frames. A quarter of the stream
// buffer bounds it too. A smux v2 peer lets the next frame of a stream
// through once it has read half its window since its last update, which it
// can then do without the bytes left unflushed. A peer whose stream buffer
// is less than half this one's (and below 64 KiB) may wait for kcp-go's
// timer, an interval, instead.
const maxCork = 32 << 10

// moreFollows tells the conn that another write will follow the next one (a
// Stream's writer that has more queued behind the chunk it writes). The next
// write may then leave KCP's flush to it.
func (c *kcpConn) moreFollows() { c.more.Add(1) }

func (c *kcpConn) Read(p []byte) (int, error) {
	if len(c.head) > 0 { // one reader at a time: smux's or snappy's
		n := copy(p, c.head)
		if c.head = c.head[n:]; len(c.head) == 0 {
			c.head = nil
		}
		return n, nil
	}
	c.waitingSince.Store(time.Now().UnixNano())
	n, err := c.s.Read(p)
	c.waitingSince.Store(0)
	// Bytes that arrived while a stream is being opened wait until smux
	// has recorded it (openStream).
	c.opening.RLock()
	//lint:ignore SA2001 the lock is a barrier: nothing to guard, only openStream to wait for
	c.opening.RUnlock()
	return n, err
}

func (c *kcpConn) Write(p []byte) (int, error) {
	return c.writeVec([][]byte{p}, len(p))
}

// WriteBuffers keeps smux and the snappy writer on kcp-go's vectored path.
func (c *kcpConn) WriteBuffers(v [][]byte) (int, error) {
	n := 0
	for _, b := range v {
		n += len(b)
	}
	return c.writeVec(v, n)
}

// writeVec counts and writes v (n bytes) to KCP. kcp-go flushes after every write, and
// a flush walks every segment KCP holds unacknowledged: on a fast path, with
// thousands in flight, that walk per 8 KiB frame was a tenth of the sender's
// CPU time. A write announced to be followed by another (moreFollows) turns
// kcp-go's write delay on and leaves the flush to a later write, until
// corkLimit bytes wait. If the announced write never comes (its stream
// failed), kcp-go's timer sends what waits within an interval; KCP flushes
// on every acknowledgement that moves its window as well.
func (c *kcpConn) writeVec(v [][]byte, n int) (int, error) {
	c.writes.Add(1)
	c.written.Add(uint64(n))
	hinted := false
	for m := c.more.Load(); m > 0; m = c.more.Load() {
		if c.more.CompareAndSwap(m, m-1) {
			hinted = true
			break
		}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	cork := hinted && c.corked+n < c.corkLimit
	if cork != c.delaying {
		c.s.SetWriteDelay(cork)
		c.delaying = cork
	}
	if cork {
		c.corked += n
		c.corks++
	} else {
		c.corked = 0
	}
	return c.s.WriteBuffers(v)
}

func (c *kcpConn) Close() error { return c.s.Close() }

// LocalAddr and RemoteAddr let smux report the session's addresses.
func (c *kcpConn) LocalAddr() net.Addr  { return c.s.LocalAddr() }
func (c *kcpConn) RemoteAddr() net.Addr { return c.s.RemoteAddr() }

// openStream opens a stream on the session. smux (v1.5.56) sends the
// stream's SYN before it records the stream, and drops the frames of a
// stream it has not recorded: a peer that answered at once (a server's
// banner, a reply already waiting) lost its first bytes and its end when
// the opening goroutine was slow to run, and the stream hung. So the
// transport hands smux nothing until the stream is recorded.
func (s *session) openStream() (*smux.Stream, error) {
	s.base.opening.Lock()
	defer s.base.opening.Unlock()
	return s.mux.OpenStream()
}

// sendFIN writes a smux FIN frame for stream sid straight to the transport,
// instead of smux's CloseWrite (see internal/smuxwire).
func (s *session) sendFIN(sid uint32) error {
	f := smuxwire.FIN(s.version, sid)
	_, err := s.tr.Write(f[:])
	return err
}

// sendWindowUpdate writes a smux v2 window update for stream sid: consumed
// is the total the user has read, an absolute count, so a repeat is harmless
// (see internal/smuxwire).
func (s *session) sendWindowUpdate(sid, consumed uint32) error {
	f := smuxwire.WindowUpdate(sid, consumed, s.window)
	_, err := s.tr.Write(f[:])
	return err
}

// close closes smux (which closes the KCP session under it) and the KCP
// session itself, once.
func (s *session) close() {
	s.closing.Do(func() {
		s.idleMu.Lock()
		if s.idleTimer != nil {
			s.idleTimer.Stop()
		}
		s.idleMu.Unlock()
		if s.mux != nil {
			_ = s.mux.Close()
		}
		_ = s.kcp.Close()
	})
}

func (s *session) isClosed() bool { return s.mux == nil || s.mux.IsClosed() }

// streamOpened and streamClosed count the Streams handed to the user.
func (s *session) streamOpened() { s.streams.Add(1) }

func (s *session) streamClosed() {
	if s.streams.Add(-1) == 0 {
		select {
		case s.idle <- struct{}{}:
		default:
		}
	}
}

// smuxConfig builds smux's configuration from ours.
func (c *config) smuxConfig() *smux.Config {
	sc := smux.DefaultConfig()
	sc.Version = c.smuxVersion
	sc.MaxReceiveBuffer = c.smuxBuf
	sc.MaxStreamBuffer = c.streamBuf
	sc.MaxFrameSize = c.frameSize
	sc.KeepAliveInterval = c.keepAlive
	// The session's own idle timer (checkIdle) judges silence.
	smuxwire.DisableKeepAliveTimeout(sc)
	return sc
}

// tune applies the per-session KCP settings in the binaries' order.
func (c *config) tune(s *kcp.UDPSession, server bool) error {
	t := c.timing()
	if c.adaptive {
		t.NC = 1 // KCP's own congestion window would fight the controller
	}
	snd, rcv := c.windows(server)
	//lint:ignore SA1019 stream mode is off by default and the wire format needs it
	s.SetStreamMode(true)
	s.SetWriteDelay(false)
	s.SetNoDelay(t.NoDelay, t.Interval, t.Resend, t.NC)
	if server {
		if !s.SetMtu(c.kcpMTU()) {
			return bad("WithMTU", c.mtu, "kcp-go refused it")
		}
		s.SetWindowSize(snd, rcv)
	} else {
		s.SetWindowSize(snd, rcv)
		if !s.SetMtu(c.kcpMTU()) {
			return bad("WithMTU", c.mtu, "kcp-go refused it")
		}
	}
	s.SetACKNoDelay(c.ackNoDelay)
	if c.adaptive {
		s.SetRateLimit(0) // the packet layer paces, within the limit
	} else {
		s.SetRateLimit(uint32(c.rateLimit))
	}
	if server {
		return nil
	}
	c.applySocketOptions(s)
	return nil
}

// udpSocket is what the socket options apply to: a client's KCP session or a
// Listener's KCP listener, each over its own UDP socket.
type udpSocket interface {
	SetDSCP(dscp int) error
	SetReadBuffer(bytes int) error
	SetWriteBuffer(bytes int) error
}

// applySocketOptions applies WithDSCP and WithSockBuf to sock, the one place
// both clients and Listeners set them. Like the binaries, a refusal is
// logged and the socket used as it is.
func (c *config) applySocketOptions(sock udpSocket) {
	if c.dscp != 0 {
		if err := sock.SetDSCP(c.dscp); err != nil {
			c.logger.Warn("kcptun: cannot set DSCP", "dscp", c.dscp, "err", err)
		}
	}
	if c.sockBuf > 0 {
		if err := sock.SetReadBuffer(c.sockBuf); err != nil {
			c.logger.Warn("kcptun: cannot set socket read buffer", "bytes", c.sockBuf, "err", err)
		}
		if err := sock.SetWriteBuffer(c.sockBuf); err != nil {
			c.logger.Warn("kcptun: cannot set socket write buffer", "bytes", c.sockBuf, "err", err)
		}
	}
}

// adaptSession starts the session's adaptive controller, unless
// WithAdaptive(false): WithWindow and WithFEC pin their parts, WithRateLimit
// caps the pacing rate, and the role's fixed receive window is the least
// the controller advertises.
func (c *config) adaptSession(ks *kcp.UDPSession, p *packet.Peer, server bool) {
	if !c.adaptive || p == nil {
		return
	}
	var snd, rcv int
	if c.windowSet {
		snd, rcv = c.sndWnd, c.rcvWnd
	}
	_, minRcv := c.windows(server)
	mtu := c.kcpMTU()
	var ackNow func(bool)
	if !c.ackNoDelay { // WithACKNoDelay(true) acknowledges everything at once
		ackNow = ks.SetACKNoDelay
	}
	p.EnableAdaptive(packet.AdaptiveConfig{
		MTU:              mtu,
		Overhead:         c.mtu - mtu,
		RateLimit:        int64(c.rateLimit),
		SendWindow:       snd,
		ReceiveWindow:    rcv,
		FECPinned:        c.fecSet,
		DataShards:       c.dataShards,
		ParityShards:     c.parityShards,
		MinReceiveWindow: minRcv,
		SetWindows:       func(snd, rcv int) { ks.SetWindowSize(snd, rcv) },
		Seed:             rand.Uint64(),
		// The peer's flush interval is not known; assume one like ours,
		// and at least the default mode's.
		AckDelay:  time.Duration(max(c.timing().Interval, modeProfiles[ModeFast].Interval)) * time.Millisecond,
		SetAckNow: ackNow,
	})
}

// transport returns what smux runs over: the session itself, or snappy framing
// over it.
func (c *config) transport(s *kcpConn) io.ReadWriteCloser {
	var rw io.ReadWriteCloser = s
	if c.onServerFormat != nil {
		rw = newSniffConn(s, c.onServerFormat)
	}
	if c.compression {
		return newCompressedConn(rw, c.frameSize)
	}
	return rw
}

// blockCrypt builds a fresh cipher instance for one session or listener.
func (c *config) blockCrypt() (kcp.BlockCrypt, error) {
	return crypt.New(c.crypt, c.pass)
}

// dialSession opens a KCP session to raddr from a new UDP socket, puts smux
// over it and waits until the server has acknowledged it. On any failure
// everything it created is closed.
func dialSession(ctx context.Context, c *config, raddr *net.UDPAddr) (*session, error) {
	network := "udp4"
	if raddr.IP.To4() == nil {
		network = "udp6"
	}
	udp, err := net.ListenUDP(network, nil)
	if err != nil {
		return nil, err
	}
	pcfg, err := c.packetConfig(true)
	if err != nil {
		_ = udp.Close()
		return nil, err
	}
	return startSession(ctx, c, packet.NewClientConn(udp, raddr, pcfg), raddr)
}

// startSession runs a client KCP session on pconn (which kcp-go closes with
// the session), puts smux over it and waits until the server has
// acknowledged it. On any failure it closes everything, pconn included.
func startSession(ctx context.Context, c *config, pconn *packet.Conn, raddr *net.UDPAddr) (*session, error) {
	var b [4]byte
	if _, err := crand.Read(b[:]); err != nil {
		_ = pconn.Close()
		return nil, err
	}
	conv := binary.LittleEndian.Uint32(b[:])
	// No cipher and no FEC in kcp-go: the packet conn does both.
	ks, err := kcp.NewConn4(conv, pconn.Peer().Addr(), nil, 0, 0, true, pconn)
	if err != nil {
		_ = pconn.Close()
		return nil, err
	}
	if err := c.tune(ks, false); err != nil {
		_ = ks.Close()
		return nil, err
	}
	c.adaptSession(ks, pconn.Peer(), false)
	s := newSession(ks, c, false)
	// A smux NOP frame: the server's smux ignores it, but its KCP must
	// acknowledge it, which proves that the path, the key and the cipher work.
	probe := smuxwire.NOP(byte(c.smuxVersion))
	if _, err := s.tr.Write(probe[:]); err != nil {
		_ = ks.Close()
		return nil, err
	}
	mux, err := smux.Client(s.tr, c.smuxConfig())
	if err != nil {
		_ = ks.Close()
		return nil, err
	}
	s.start(mux)
	s.peer, s.pconn = pconn.Peer(), pconn
	if err := waitAcknowledged(ctx, ks); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// waitAcknowledged returns once the peer has acknowledged a KCP segment. kcp-go
// exposes no event for that, so it watches the RTT estimator, which changes on
// the first ACK: the smoothed RTT becomes non-zero, or (for a sub-millisecond
// round trip) the RTO moves off its initial 200 ms to max(minRTO, interval).
// The one blind spot is a manual interval of exactly 200 ms on a sub-millisecond
// path, where the dial waits for the first RTT sample of at least 1 ms.
func waitAcknowledged(ctx context.Context, s *kcp.UDPSession) error {
	return pollUntil(ctx, func() bool { return s.GetSRTT() != 0 || s.GetRTO() != initialRTO })
}

// pollUntil calls cond at once and then after half a millisecond, doubling
// the interval up to 10 ms, until cond reports true (pollUntil returns nil)
// or ctx ends (it returns ctx's error). It is for kcp-go's and the packet
// layer's state, which signals no change.
func pollUntil(ctx context.Context, cond func() bool) error {
	const maxPoll = 10 * time.Millisecond
	poll := 500 * time.Microsecond
	t := time.NewTimer(poll)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			poll = min(2*poll, maxPoll)
			t.Reset(poll)
		}
	}
	return nil
}

// noResponseError builds the error of a dial whose session was never
// acknowledged: it matches ErrNoResponse and context.DeadlineExceeded (a
// timeout, as net.Error's Timeout reports), whichever deadline ended the wait.
func noResponseError(addr string, c *config, wait time.Duration) error {
	return fmt.Errorf("kcptun: dial %s: %w within %v (%w): check the address and port, that UDP is not blocked on the path, "+
		"and that both ends use the same key and cipher (%q here)", addr, ErrNoResponse, wait.Round(time.Millisecond),
		context.DeadlineExceeded, c.crypt)
}

// waitUnacked waits until KCP holds at most keep segments that are queued or
// sent and not yet acknowledged, or until deadline or the session's end; it
// reports whether it got there. kcp-go exposes no per-session queue length,
// but the packet layer sees every segment KCP sends and every
// acknowledgement: KCP has sent everything once the data it sent at least
// once adds up to the bytes written to it, and what is left unacknowledged
// then is the packet layer's count of segments above the peer's cumulative
// acknowledgement. The wait polls (pollUntil); nothing is sent and no
// window is touched, so a peer that has gone costs the deadline and nothing
// more.
func (s *session) waitUnacked(keep int, deadline time.Time) bool {
	if s.peer == nil {
		return false
	}
	st := s.peer.Stats()
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	closed := false
	err := pollUntil(ctx, func() bool {
		closed = s.isClosed()
		return closed || st.DataSent() >= s.base.written.Load() && int(st.Unacked()) <= keep
	})
	return err == nil && !closed
}

// flushGrace is how long a closing Dial stream waits for the acknowledgement
// of its session's last frames (the end of the stream, a window update) once
// everything the user wrote is delivered: a round trip with its variance and
// two flush intervals (the peer acknowledges on its next flush), between 20 ms
// and 1 s. A peer that has gone never answers. With adaptation on, kcp-go's
// RTT includes the margin the packet layer adds to lengthen its timer, so
// twice the controller's smoothed RTT stands for the round trip instead.
func (s *session) flushGrace() time.Duration {
	rtt := time.Duration(s.kcp.GetSRTT()+4*s.kcp.GetSRTTVar()) * time.Millisecond
	if s.peer != nil {
		if st, ok := s.peer.Adaptive(); ok && st.SmoothedRTT > 0 {
			rtt = 2 * st.SmoothedRTT
		}
	}
	g := rtt + 2*time.Duration(s.cfg.timing().Interval)*time.Millisecond
	return min(max(g, 20*time.Millisecond), time.Second)
}
