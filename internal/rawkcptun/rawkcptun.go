// Package rawkcptun is the baseline the benchmarks hold the SDK against:
// kcp-go and smux used directly, wired as the classic kcptun binaries wire
// them. Each KCP session is tuned in the binaries' order, and with
// compression on it runs under snappy's own stream reader and buffered
// writer, flushed after every write, as the binaries' compressed stream does.
// The root package's benchmarks and the bench module's matrix both use it,
// so that "raw" means the same thing in both.
//
// It is a measuring device, not a second SDK: no dial probe, no liveness
// handling beyond smux's keepalive, no address ranges.
package rawkcptun

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/golang/snappy"
	kcp "github.com/xtaci/kcp-go/v5"
	"github.com/xtaci/smux"

	"github.com/seed-fc8f924e/kcptun/internal/crypt"
	"github.com/seed-fc8f924e/kcptun/internal/kcpdrain"
)

// Config holds the settings of both ends. Fields that the binaries set per
// role come in client and server pairs.
type Config struct {
	Key   string // pre-shared key, derived as the binaries derive it
	Crypt string // cipher name, as in internal/crypt

	DataShards, ParityShards int // FEC; 0 turns it off
	MTU                      int

	// NoDelay, Interval, Resend and NC are KCP's timing values.
	NoDelay, Interval, Resend, NC int

	ClientSndWnd, ClientRcvWnd int // the dialing end's windows, in packets
	ServerSndWnd, ServerRcvWnd int // the listening end's windows

	ACKNoDelay  bool
	Compression bool // snappy framing under smux
	SockBuf     int  // UDP socket buffers of both ends; 0 leaves them

	Smux *smux.Config // smux settings of both ends
}

// blockCrypt builds the cipher of c, kcp-go's own implementation as in the
// binaries; each session gets its own.
func (c *Config) blockCrypt() (kcp.BlockCrypt, error) {
	return crypt.NewReference(c.Crypt, crypt.DeriveKey(c.Key))
}

// tune applies the per-session settings in the order the binaries use: the
// client sets its windows before the MTU and its socket buffers last, the
// server sets the MTU first and its socket buffers on the listener.
func (c *Config) tune(s *kcp.UDPSession, client bool) {
	//lint:ignore SA1019 stream mode is off by default and the wire format needs it
	s.SetStreamMode(true)
	s.SetWriteDelay(false)
	s.SetNoDelay(c.NoDelay, c.Interval, c.Resend, c.NC)
	if client {
		s.SetWindowSize(c.ClientSndWnd, c.ClientRcvWnd)
		s.SetMtu(c.MTU)
	} else {
		s.SetMtu(c.MTU)
		s.SetWindowSize(c.ServerSndWnd, c.ServerRcvWnd)
	}
	s.SetACKNoDelay(c.ACKNoDelay)
	if client && c.SockBuf > 0 {
		_ = s.SetReadBuffer(c.SockBuf)
		_ = s.SetWriteBuffer(c.SockBuf)
	}
}

// transport is what smux runs over: the session, or snappy framing over it.
func (c *Config) transport(s *kcp.UDPSession) io.ReadWriteCloser {
	if !c.Compression {
		return s
	}
	return NewSnappyConn(s)
}

// SnappyConn is the binaries' compressed stream: snappy's framing reader, and
// its buffered writer flushed after every write so that each write leaves at
// once.
type SnappyConn struct {
	conn io.ReadWriteCloser
	w    *snappy.Writer
	r    *snappy.Reader
}

// NewSnappyConn wraps conn in snappy framing, both ways.
func NewSnappyConn(conn io.ReadWriteCloser) *SnappyConn {
	return &SnappyConn{conn: conn, w: snappy.NewBufferedWriter(conn), r: snappy.NewReader(conn)}
}

// Read reads decompressed bytes.
func (c *SnappyConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Write compresses p and flushes it to the underlying conn.
func (c *SnappyConn) Write(p []byte) (int, error) {
	if _, err := c.w.Write(p); err != nil {
		return 0, err
	}
	if err := c.w.Flush(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close closes the underlying conn.
func (c *SnappyConn) Close() error { return c.conn.Close() }

// Client is the dialing end: one KCP session with an smux client over it.
type Client struct {
	ks  *kcp.UDPSession
	mux *smux.Session
}

// Dial opens a KCP session to addr and starts smux over it. Like the
// binaries, it sends nothing until a stream is opened.
func Dial(addr string, c Config) (*Client, error) {
	block, err := c.blockCrypt()
	if err != nil {
		return nil, fmt.Errorf("rawkcptun: dial %s: %w", addr, err)
	}
	ks, err := kcp.DialWithOptions(addr, block, c.DataShards, c.ParityShards)
	if err != nil {
		return nil, fmt.Errorf("rawkcptun: dial %s: %w", addr, err)
	}
	c.tune(ks, true)
	mux, err := smux.Client(c.transport(ks), c.Smux)
	if err != nil {
		_ = ks.Close()
		return nil, fmt.Errorf("rawkcptun: dial %s: smux: %w", addr, err)
	}
	return &Client{ks: ks, mux: mux}, nil
}

// OpenStream opens a stream on the session.
func (c *Client) OpenStream() (net.Conn, error) {
	st, err := c.mux.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("rawkcptun: open stream: %w", err)
	}
	return st, nil
}

// Close closes smux and the KCP session under it.
func (c *Client) Close() error {
	err := c.mux.Close()
	_ = c.ks.Close() // in case smux had stopped already
	if errors.Is(err, io.ErrClosedPipe) {
		err = nil
	}
	return err
}

// Listener is the listening end: a kcp-go listener whose sessions each run an
// smux server, and whose Accept returns the streams of all of them.
type Listener struct {
	c       Config
	ln      *kcp.Listener
	streams chan net.Conn
	done    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	muxes   []*smux.Session
	once    sync.Once
}

// Listen listens on the UDP address addr.
func Listen(addr string, c Config) (*Listener, error) {
	block, err := c.blockCrypt()
	if err != nil {
		return nil, fmt.Errorf("rawkcptun: listen %s: %w", addr, err)
	}
	ln, err := kcp.ListenWithOptions(addr, block, c.DataShards, c.ParityShards)
	if err != nil {
		return nil, fmt.Errorf("rawkcptun: listen %s: %w", addr, err)
	}
	if c.SockBuf > 0 {
		_ = ln.SetReadBuffer(c.SockBuf)
		_ = ln.SetWriteBuffer(c.SockBuf)
	}
	l := &Listener{c: c, ln: ln, streams: make(chan net.Conn), done: make(chan struct{})}
	l.wg.Add(1)
	go l.acceptSessions()
	return l, nil
}

func (l *Listener) acceptSessions() {
	defer l.wg.Done()
	for {
		ks, err := l.ln.AcceptKCP()
		if err != nil {
			return
		}
		l.c.tune(ks, false)
		mux, err := smux.Server(l.c.transport(ks), l.c.Smux)
		if err != nil {
			_ = ks.Close()
			continue
		}
		l.mu.Lock()
		select {
		case <-l.done: // Close has taken the list already
			l.mu.Unlock()
			_ = mux.Close()
			return
		default:
		}
		l.muxes = append(l.muxes, mux)
		l.mu.Unlock()
		l.wg.Add(1)
		go l.acceptStreams(mux)
	}
}

func (l *Listener) acceptStreams(mux *smux.Session) {
	defer l.wg.Done()
	for {
		st, err := mux.AcceptStream()
		if err != nil {
			return
		}
		select {
		case l.streams <- st:
		case <-l.done:
			_ = st.Close()
			return
		}
	}
}

// Accept returns the next stream of any session.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.streams:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Addr returns the listening address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close closes the listener and every session, and waits for its goroutines.
func (l *Listener) Close() error {
	l.once.Do(func() {
		l.mu.Lock()
		close(l.done)
		muxes := l.muxes
		l.muxes = nil
		l.mu.Unlock()
		_ = l.ln.Close()
		for _, m := range muxes {
			_ = m.Close()
		}
		l.wg.Wait()
		// kcp-go's Close leaves sessions queued in its backlog running, and
		// its read loop may still queue one for a datagram it read.
		kcpdrain.Backlog(l.ln)
	})
	return nil
}
