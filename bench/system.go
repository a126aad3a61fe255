package bench

import (
	"context"
	"crypto/pbkdf2"
	"crypto/sha1"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/golang/snappy"
	kcp "github.com/xtaci/kcp-go/v5"
	"github.com/xtaci/smux"

	"github.com/seed-fc8f924e/kcptun"
	"github.com/seed-fc8f924e/kcptun/internal/loadserver"
	"github.com/seed-fc8f924e/kcptun/kcptuntest"
)

// The systems Run can measure.
const (
	// SDKFast2 is the kcptun SDK (Listen and a Client) in the fast2 profile.
	SDKFast2 = "sdk-fast2"
	// SDKFast3 is the kcptun SDK in the fast3 profile.
	SDKFast3 = "sdk-fast3"
	// RawFast2 is kcp-go and smux used directly, with snappy framing, with
	// the settings SDKFast2 uses: the SDK's overhead is the difference.
	RawFast2 = "raw-fast2"
	// RawFast3 is kcp-go and smux used directly with SDKFast3's settings.
	RawFast3 = "raw-fast3"
	// TCP is gVisor's userspace TCP with CUBIC; see TCPPath. It runs
	// anywhere, without privileges.
	TCP = "tcp"
	// TCPLinux is the kernel's TCP with CUBIC between two network
	// namespaces joined through the emulator by TUN devices. It needs root
	// on Linux (see LinuxTCPAvailable).
	TCPLinux = "tcp-linux"
	// TCPLinuxBBR is TCPLinux with the kernel's BBR congestion control
	// instead of CUBIC. It also needs the tcp_bbr module (see
	// SystemAvailable).
	TCPLinuxBBR = "tcp-linux-bbr"
	// SDKAuto is the kcptun SDK with no option but the key: what a user who
	// tunes nothing gets. It stays on the SDK's defaults on every path.
	SDKAuto = "sdk-auto"
)

// Systems lists every system, in the order tables show them.
var Systems = []string{SDKAuto, SDKFast2, SDKFast3, RawFast2, RawFast3, TCP, TCPLinux, TCPLinuxBBR}

// The KCP settings shared by the SDK and raw systems: the SDK's defaults
// (cipher aes with the default key, MTU 1350, FEC 10+3, snappy compression,
// smux v2 with 8 KiB frames), except for the windows and buffers, which are
// sized to the path (kcpWindow, smuxBuffers) so that no system is window
// limited.
const (
	kcpMTU        = 1350
	fecData       = kcptun.DefaultDataShards
	fecParity     = kcptun.DefaultParityShards
	minKCPWindow  = 32
	maxKCPWindow  = 8192
	udpIPOverhead = 28 // IPv4 and UDP headers, not counted by the relay
)

// kcpWindow returns the KCP send and receive window used on p: 1.5 times
// the bandwidth-delay product in packets, at least 32. KCP in these profiles
// has no congestion control (nc=1) and FEC adds 3 parity packets to every 10
// the window lets out, so this keeps what it puts in flight within the
// path's pipe plus its one-BDP queue. (The SDK's default client send window,
// 128 packets, overflows that queue on the matrix's shorter, slower paths.)
func kcpWindow(p Path) int {
	return min(max(3*p.BDP()/(2*kcpMTU), minKCPWindow), maxKCPWindow)
}

// smuxBuffers returns smux's session and stream buffers for p: the SDK's
// defaults, or twice the bandwidth-delay product when that is larger.
func smuxBuffers(p Path) (session, stream int) {
	session = max(kcptun.DefaultSmuxBuffer, 2*p.BDP())
	stream = max(kcptun.DefaultStreamBuffer, 2*p.BDP())
	return session, stream
}

// fecEfficiency is the share of datagrams that carry data under FEC, k/(k+m).
const fecEfficiency = float64(fecData) / float64(fecData+fecParity)

// testbed is one system running over a fresh relay: a server that serves
// the benchmark protocol (see serve) and a way to dial it.
type testbed struct {
	relay  *kcptuntest.Relay
	dial   func(ctx context.Context) (net.Conn, error)
	srv    *loadserver.Server
	closer func() error // stops the client side and the transport
	// ipPackets is true when the relay carries whole IP packets (TCP), false
	// when it carries UDP payloads whose 28 header bytes it does not count.
	ipPackets bool
}

// newTestbed starts system over path p.
func newTestbed(system string, p Path, seed int64) (*testbed, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	cfg := p.RelayConfig(seed)
	switch system {
	case SDKFast2, SDKFast3, SDKAuto:
		return newSDKTestbed(system, p, cfg)
	case RawFast2, RawFast3:
		return newRawTestbed(system, p, cfg)
	case TCP:
		tp, err := NewTCPPath(cfg)
		if err != nil {
			return nil, err
		}
		return &testbed{relay: tp.Relay(), dial: tp.DialContext, srv: loadserver.Start(tp.Listener()), closer: tp.Close, ipPackets: true}, nil
	case TCPLinux, TCPLinuxBBR:
		return newLinuxTCPTestbed(system, cfg)
	}
	return nil, fmt.Errorf("bench: unknown system %q: want one of %s", system, strings.Join(Systems, ", "))
}

// Close stops the server, the client side and the relay, and waits for
// their goroutines.
func (t *testbed) Close() error {
	t.srv.Close()
	err := t.closer()
	if rerr := t.relay.Close(); err == nil {
		err = rerr
	}
	return err
}

// sdkOptions are the SDK options of a system on path p.
func sdkOptions(system string, p Path) []kcptun.Option {
	if system == SDKAuto {
		return []kcptun.Option{kcptun.WithKey(kcptun.DefaultKey)}
	}
	mode := kcptun.ModeFast2
	if system == SDKFast3 || system == RawFast3 {
		mode = kcptun.ModeFast3
	}
	w := kcpWindow(p)
	ss, st := smuxBuffers(p)
	return []kcptun.Option{
		kcptun.WithMode(mode),
		kcptun.WithWindow(w, w),
		kcptun.WithSmuxBuffer(ss, st),
		kcptun.WithMTU(kcpMTU),
		kcptun.WithFEC(fecData, fecParity),
	}
}

func newSDKTestbed(system string, p Path, cfg kcptuntest.Config) (*testbed, error) {
	opts := sdkOptions(system, p)
	ln, err := kcptun.Listen("127.0.0.1:0", opts...)
	if err != nil {
		return nil, fmt.Errorf("bench: %s: listen: %w", system, err)
	}
	relay, err := kcptuntest.NewRelay(ln.Addr().String(), cfg)
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("bench: %s: %w", system, err)
	}
	cl, err := kcptun.NewClient(relay.Addr().String(), opts...)
	if err != nil {
		_ = relay.Close()
		_ = ln.Close()
		return nil, fmt.Errorf("bench: %s: client: %w", system, err)
	}
	return &testbed{
		relay:  relay,
		dial:   cl.DialContext,
		srv:    loadserver.Start(ln),
		closer: cl.Close,
	}, nil
}

// kcptun's key derivation: PBKDF2-SHA1 of the key, salt "kcp-go", 4096
// rounds, 32 bytes, used whole by the "aes" cipher.
func rawBlockCrypt() (kcp.BlockCrypt, error) {
	pass, err := pbkdf2.Key(sha1.New, kcptun.DefaultKey, []byte("kcp-go"), 4096, 32)
	if err != nil {
		return nil, err
	}
	return kcp.NewAESBlockCrypt(pass)
}

// rawTiming returns KCP's nodelay, interval, resend and nc of the profile.
func rawTiming(system string) (nodelay, interval, resend, nc int) {
	if system == RawFast3 {
		return 1, 10, 2, 1
	}
	return 1, 20, 2, 1
}

// tuneRaw applies the settings the SDK applies, in the binaries' order.
func tuneRaw(s *kcp.UDPSession, system string, p Path, client bool) {
	nd, iv, rs, nc := rawTiming(system)
	w := kcpWindow(p)
	s.SetStreamMode(true) //lint:ignore SA1019 kcptun and the SDK set stream mode this way
	s.SetWriteDelay(false)
	s.SetNoDelay(nd, iv, rs, nc)
	s.SetWindowSize(w, w)
	s.SetMtu(kcpMTU)
	s.SetACKNoDelay(false)
	if client {
		_ = s.SetReadBuffer(kcptun.DefaultSockBuf)
		_ = s.SetWriteBuffer(kcptun.DefaultSockBuf)
	}
}

func rawSmuxConfig(p Path) *smux.Config {
	c := smux.DefaultConfig()
	c.Version = kcptun.DefaultSmuxVersion
	c.MaxReceiveBuffer, c.MaxStreamBuffer = smuxBuffers(p)
	c.MaxFrameSize = kcptun.DefaultFrameSize
	c.KeepAliveInterval = kcptun.DefaultKeepAlive
	return c
}

// snappyConn is kcptun's classic CompStream: snappy framing, flushed on
// every write.
type snappyConn struct {
	conn io.ReadWriteCloser
	w    *snappy.Writer
	r    *snappy.Reader
}

func newSnappyConn(c io.ReadWriteCloser) *snappyConn {
	return &snappyConn{conn: c, w: snappy.NewBufferedWriter(c), r: snappy.NewReader(c)}
}

func (c *snappyConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *snappyConn) Write(p []byte) (int, error) {
	if _, err := c.w.Write(p); err != nil {
		return 0, err
	}
	if err := c.w.Flush(); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *snappyConn) Close() error { return c.conn.Close() }

// rawListener serves the smux streams of every KCP session of a kcp-go
// listener as a net.Listener.
type rawListener struct {
	ln      *kcp.Listener
	streams chan net.Conn
	done    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	muxes   []*smux.Session
	once    sync.Once
}

func newRawListener(system string, p Path) (*rawListener, error) {
	block, err := rawBlockCrypt()
	if err != nil {
		return nil, err
	}
	ln, err := kcp.ListenWithOptions("127.0.0.1:0", block, fecData, fecParity)
	if err != nil {
		return nil, err
	}
	_ = ln.SetReadBuffer(kcptun.DefaultSockBuf)
	_ = ln.SetWriteBuffer(kcptun.DefaultSockBuf)
	l := &rawListener{ln: ln, streams: make(chan net.Conn), done: make(chan struct{})}
	l.wg.Add(1)
	go l.acceptSessions(system, p)
	return l, nil
}

func (l *rawListener) acceptSessions(system string, p Path) {
	defer l.wg.Done()
	for {
		ks, err := l.ln.AcceptKCP()
		if err != nil {
			return
		}
		tuneRaw(ks, system, p, false)
		mux, err := smux.Server(newSnappyConn(ks), rawSmuxConfig(p))
		if err != nil {
			_ = ks.Close()
			continue
		}
		l.mu.Lock()
		l.muxes = append(l.muxes, mux)
		l.mu.Unlock()
		l.wg.Add(1)
		go l.acceptStreams(mux)
	}
}

func (l *rawListener) acceptStreams(mux *smux.Session) {
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

func (l *rawListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.streams:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *rawListener) Addr() net.Addr { return l.ln.Addr() }

// Close closes the listener and every session, and waits for the goroutines.
func (l *rawListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		_ = l.ln.Close()
		l.mu.Lock()
		for _, m := range l.muxes {
			_ = m.Close()
		}
		l.mu.Unlock()
		l.wg.Wait()
		// kcp-go's Close leaves sessions queued in its backlog running; take
		// and close them for a bounded while.
		deadline := time.Now().Add(time.Second)
		for misses := 0; misses < 64 && time.Now().Before(deadline); {
			ks, err := l.ln.AcceptKCP()
			if err != nil {
				misses++
				continue
			}
			misses = 0
			_ = ks.Close()
		}
	})
	return nil
}

// rawClient is the client end of a raw system: one KCP session with smux.
type rawClient struct {
	ks  *kcp.UDPSession
	mux *smux.Session
}

func newRawTestbed(system string, p Path, cfg kcptuntest.Config) (*testbed, error) {
	ln, err := newRawListener(system, p)
	if err != nil {
		return nil, fmt.Errorf("bench: %s: listen: %w", system, err)
	}
	relay, err := kcptuntest.NewRelay(ln.Addr().String(), cfg)
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("bench: %s: %w", system, err)
	}
	fail := func(err error) (*testbed, error) {
		_ = relay.Close()
		_ = ln.Close()
		return nil, fmt.Errorf("bench: %s: dial: %w", system, err)
	}
	block, err := rawBlockCrypt()
	if err != nil {
		return fail(err)
	}
	ks, err := kcp.DialWithOptions(relay.Addr().String(), block, fecData, fecParity)
	if err != nil {
		return fail(err)
	}
	tuneRaw(ks, system, p, true)
	mux, err := smux.Client(newSnappyConn(ks), rawSmuxConfig(p))
	if err != nil {
		_ = ks.Close()
		return fail(err)
	}
	c := &rawClient{ks: ks, mux: mux}
	return &testbed{
		relay: relay,
		dial: func(context.Context) (net.Conn, error) {
			st, err := c.mux.OpenStream()
			if err != nil {
				return nil, err
			}
			return st, nil
		},
		srv: loadserver.Start(ln),
		closer: func() error {
			_ = c.mux.Close() // closes the KCP session under it
			_ = c.ks.Close()  // in case smux had stopped already
			return nil
		},
	}, nil
}
