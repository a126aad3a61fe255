package bench

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/xtaci/smux"

	"github.com/seed-fc8f924e/kcptun"
	"github.com/seed-fc8f924e/kcptun/internal/loadserver"
	"github.com/seed-fc8f924e/kcptun/internal/rawkcptun"
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

// newTestbed starts system over a relay configured with cfg; p sizes the
// KCP systems' windows and buffers.
func newTestbed(system string, p Path, cfg kcptuntest.Config) (*testbed, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
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

// newSharedTestbeds starts one testbed of each system over path p, each
// with its own relay, whose directions share one bottleneck per direction
// of p's bandwidth and queue, so that the systems' flows compete for it.
// Loss and delay are each relay's own, with different seeds.
func newSharedTestbeds(p Path, seed int64, systems ...string) ([]*testbed, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	up, err := kcptuntest.NewBottleneck(int64(p.Bandwidth), p.QueueBytes())
	if err != nil {
		return nil, fmt.Errorf("bench: shared bottleneck: %w", err)
	}
	down, err := kcptuntest.NewBottleneck(int64(p.Bandwidth), p.QueueBytes())
	if err != nil {
		return nil, fmt.Errorf("bench: shared bottleneck: %w", err)
	}
	var tbs []*testbed
	for i, sys := range systems {
		cfg := p.RelayConfig(seed + int64(i))
		cfg.Up.Bandwidth, cfg.Up.QueueBytes, cfg.Up.Shared = 0, 0, up
		cfg.Down.Bandwidth, cfg.Down.QueueBytes, cfg.Down.Shared = 0, 0, down
		tb, err := newTestbed(sys, p, cfg)
		if err != nil {
			for _, t := range tbs {
				_ = t.Close()
			}
			return nil, fmt.Errorf("bench: flow %d: %w", i+1, err)
		}
		tbs = append(tbs, tb)
	}
	return tbs, nil
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

// rawConfig is the raw system's configuration on path p: the settings
// sdkOptions gives the SDK, applied to kcp-go and smux directly as the
// binaries apply them (internal/rawkcptun, also the root benchmarks' raw
// baseline).
func rawConfig(system string, p Path) rawkcptun.Config {
	nd, iv, rs, nc := rawTiming(system)
	w := kcpWindow(p)
	return rawkcptun.Config{
		Key: kcptun.DefaultKey, Crypt: kcptun.DefaultCrypt,
		DataShards: fecData, ParityShards: fecParity, MTU: kcpMTU,
		NoDelay: nd, Interval: iv, Resend: rs, NC: nc,
		ClientSndWnd: w, ClientRcvWnd: w, ServerSndWnd: w, ServerRcvWnd: w,
		Compression: true,
		SockBuf:     kcptun.DefaultSockBuf,
		Smux:        rawSmuxConfig(p),
	}
}

// rawTiming returns KCP's nodelay, interval, resend and nc of the profile.
func rawTiming(system string) (nodelay, interval, resend, nc int) {
	if system == RawFast3 {
		return 1, 10, 2, 1
	}
	return 1, 20, 2, 1
}

func rawSmuxConfig(p Path) *smux.Config {
	c := smux.DefaultConfig()
	c.Version = kcptun.DefaultSmuxVersion
	c.MaxReceiveBuffer, c.MaxStreamBuffer = smuxBuffers(p)
	c.MaxFrameSize = kcptun.DefaultFrameSize
	c.KeepAliveInterval = kcptun.DefaultKeepAlive
	return c
}

func newRawTestbed(system string, p Path, cfg kcptuntest.Config) (*testbed, error) {
	rc := rawConfig(system, p)
	ln, err := rawkcptun.Listen("127.0.0.1:0", rc)
	if err != nil {
		return nil, fmt.Errorf("bench: %s: %w", system, err)
	}
	relay, err := kcptuntest.NewRelay(ln.Addr().String(), cfg)
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("bench: %s: %w", system, err)
	}
	cl, err := rawkcptun.Dial(relay.Addr().String(), rc)
	if err != nil {
		_ = relay.Close()
		_ = ln.Close()
		return nil, fmt.Errorf("bench: %s: %w", system, err)
	}
	return &testbed{
		relay:  relay,
		dial:   func(context.Context) (net.Conn, error) { return cl.OpenStream() },
		srv:    loadserver.Start(ln),
		closer: cl.Close,
	}, nil
}
