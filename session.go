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

	"github.com/seed-fc8f924e/kcptun/internal/crypt"
	"github.com/seed-fc8f924e/kcptun/internal/packet"
)

// ErrNoResponse reports a new session that the server never acknowledged.
// Test for it with errors.Is. KCP and smux send nothing back until data flows,
// so this is how an unreachable address, blocked UDP, or a key or cipher
// mismatch (the server drops packets that fail its checksum) shows itself.
var ErrNoResponse = errors.New("no response from server")

// initialRTO is kcp-go's retransmission timeout before any ACK arrived (ms).
const initialRTO = 200

// session is one KCP session with the smux session over it.
type session struct {
	kcp     *kcp.UDPSession
	peer    *packet.Peer // the packet layer's view of the session; nil until bound
	pconn   *packet.Conn // the packet conn the session runs on
	tr      io.Writer    // what smux writes to: the KCP session, or snappy over it
	version byte         // smux protocol version
	window  uint32       // smux v2 stream window advertised to the peer
	mux     *smux.Session
	created time.Time
	streams atomic.Int64  // Streams handed out and not yet closed
	idle    chan struct{} // receives a token whenever streams drops to 0
	closing sync.Once
}

func newSession(k *kcp.UDPSession, tr io.Writer, c *config, m *smux.Session) *session {
	return &session{kcp: k, tr: tr, version: byte(c.smuxVersion), window: uint32(c.streamBuf), mux: m,
		created: time.Now(), idle: make(chan struct{}, 1)}
}

// sendFIN writes a smux FIN frame for stream sid straight to the transport.
// smux's own CloseWrite would do the same but also arm a clean-up that drops
// the stream's unread bytes when the peer's FIN arrives. Frames stay whole:
// smux writes one frame per call and both transports serialise calls, and
// every frame of a Write that returned is already written.
func (s *session) sendFIN(sid uint32) error {
	var f [smuxHeaderSize]byte
	f[0], f[1] = s.version, smuxCmdFIN
	binary.LittleEndian.PutUint32(f[4:], sid)
	_, err := s.tr.Write(f[:])
	return err
}

// sendWindowUpdate writes a smux v2 window update for stream sid: consumed
// is the total the user has read, an absolute count, so a repeat is harmless.
func (s *session) sendWindowUpdate(sid, consumed uint32) error {
	var f [smuxHeaderSize + 8]byte
	f[0], f[1] = s.version, smuxCmdUPD
	binary.LittleEndian.PutUint16(f[2:], 8)
	binary.LittleEndian.PutUint32(f[4:], sid)
	binary.LittleEndian.PutUint32(f[8:], consumed)
	binary.LittleEndian.PutUint32(f[12:], s.window)
	_, err := s.tr.Write(f[:])
	return err
}

const (
	smuxCmdFIN = 1
	smuxCmdUPD = 4
)

// close closes smux (which closes the KCP session under it) and the KCP
// session itself, once.
func (s *session) close() {
	s.closing.Do(func() {
		if s.mux != nil {
			_ = s.mux.Close()
		}
		_ = s.kcp.Close()
	})
}

func (s *session) isClosed() bool { return s.mux.IsClosed() }

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
	sc.KeepAliveTimeout = c.idleTimeout
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
	if c.dscp != 0 {
		if err := s.SetDSCP(c.dscp); err != nil {
			c.logger.Warn("kcptun: cannot set DSCP", "dscp", c.dscp, "err", err)
		}
	}
	if c.sockBuf > 0 {
		if err := s.SetReadBuffer(c.sockBuf); err != nil {
			c.logger.Warn("kcptun: cannot set socket read buffer", "bytes", c.sockBuf, "err", err)
		}
		if err := s.SetWriteBuffer(c.sockBuf); err != nil {
			c.logger.Warn("kcptun: cannot set socket write buffer", "bytes", c.sockBuf, "err", err)
		}
	}
	return nil
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
		AckDelay: time.Duration(max(c.timing().Interval, modeProfiles[ModeFast].Interval)) * time.Millisecond,
	})
}

// transport returns what smux runs over: the session itself, or snappy framing
// over it.
func (c *config) transport(s *kcp.UDPSession) io.ReadWriteCloser {
	if c.compression {
		return newCompressedConn(s, c.frameSize)
	}
	return s
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
	tr := c.transport(ks)
	// A smux NOP frame: the server's smux ignores it, but its KCP must
	// acknowledge it, which proves that the path, the key and the cipher work.
	probe := []byte{byte(c.smuxVersion), 3, 0, 0, 0, 0, 0, 0}
	if _, err := tr.Write(probe); err != nil {
		_ = ks.Close()
		return nil, err
	}
	mux, err := smux.Client(tr, c.smuxConfig())
	if err != nil {
		_ = ks.Close()
		return nil, err
	}
	s := newSession(ks, tr, c, mux)
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
	const maxPoll = 10 * time.Millisecond
	poll := 500 * time.Microsecond
	t := time.NewTimer(poll)
	defer t.Stop()
	for {
		if s.GetSRTT() != 0 || s.GetRTO() != initialRTO {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			poll = min(2*poll, maxPoll)
			t.Reset(poll)
		}
	}
}

// noResponseError builds the error of a dial whose session was never acknowledged.
func noResponseError(addr string, c *config, wait time.Duration) error {
	return fmt.Errorf("kcptun: dial %s: %w within %v: check the address and port, that UDP is not blocked on the path, "+
		"and that both ends use the same key and cipher (%q here)", addr, ErrNoResponse, wait.Round(time.Millisecond), c.crypt)
}
