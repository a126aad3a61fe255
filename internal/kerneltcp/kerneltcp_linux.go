//go:build linux

package kerneltcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/seed-fc8f924e/kcptun/kcptuntest"
)

// Package kerneltcp runs the kernel's TCP between two network namespaces of
// the calling program's own, each holding one TUN device. It reads the IP packets
// that one namespace's TCP sends into its TUN device and sends each as a UDP
// datagram on loopback through a kcptuntest relay to a socket of its own,
// which writes them into the other namespace's TUN device, and back. So
// both TCP ends are the kernel's, with its congestion control, SACK, RACK
// and timers; only the path is emulated.
//
// The addresses, 192.0.2.1 and 192.0.2.2 (TEST-NET-1, RFC 5737), exist only
// inside those namespaces, which are removed, with their devices, by Close.
// examples/demo and the bench module use it as their TCP baseline.

const (
	clientAddr  = "192.0.2.1"
	serverAddr  = "192.0.2.2"
	tcpPort     = "5201"
	cloneNewNet = 0x40000000
	tunDevice   = "/dev/net/tun"
	dialTimeout = 10 * time.Second
)

// ErrUnavailable wraps every reason why the tcp-linux system cannot
// run here.
var ErrUnavailable = errors.New("kernel TCP baseline unavailable")

// nsCounter numbers the namespace pairs of this process.
var nsCounter atomic.Int64

// Path is the kernel TCP path through the emulator.
type Path struct {
	nsA, nsB   string
	tunA, tunB *os.File
	udpA, udpB *net.UDPConn
	relay      *kcptuntest.Relay
	ln         net.Listener
	cc         string
	peerB      atomic.Pointer[netip.AddrPort] // the relay's upstream socket
	wg         sync.WaitGroup
	closeOnce  sync.Once
}

// setnsNumber is the setns system call's number, which package syscall does
// not define on every architecture.
func setnsNumber() (uintptr, bool) {
	switch runtime.GOARCH {
	case "amd64":
		return 308, true
	case "arm64", "riscv64", "loong64":
		return 268, true
	case "386":
		return 346, true
	case "arm":
		return 375, true
	}
	return 0, false
}

// Available reports why the tcp-linux system cannot run here, or
// nil: it needs root, the ip command and /dev/net/tun.
func Available() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: it needs root to create network namespaces and TUN devices", ErrUnavailable)
	}
	if _, ok := setnsNumber(); !ok {
		return fmt.Errorf("%w: setns is not known on %s", ErrUnavailable, runtime.GOARCH)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("%w: the ip command (iproute2) is not installed", ErrUnavailable)
	}
	if _, err := os.Stat(tunDevice); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// availableCCFile lists the congestion controls the kernel has loaded.
const availableCCFile = "/proc/sys/net/ipv4/tcp_available_congestion_control"

// CongestionControlAvailable reports why TCP congestion control cc (such as
// "cubic" or "bbr") cannot be set on a socket here, or nil. When the kernel
// has not loaded it, it tries once to load the module tcp_CC with modprobe.
// The error wraps ErrUnavailable.
func CongestionControlAvailable(cc string) error {
	if cc == "" {
		return nil
	}
	if ccLoaded(cc) {
		return nil
	}
	if path, err := exec.LookPath("modprobe"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = exec.CommandContext(ctx, path, "tcp_"+cc).Run() // judged by the list below
		cancel()
		if ccLoaded(cc) {
			return nil
		}
	}
	return fmt.Errorf("%w: TCP congestion control %q is not in %s and modprobe tcp_%s did not load it", ErrUnavailable, cc, availableCCFile, cc)
}

// ccLoaded reports whether the kernel lists congestion control cc as
// available.
func ccLoaded(cc string) bool {
	b, err := os.ReadFile(availableCCFile)
	if err != nil {
		return false
	}
	for _, f := range strings.Fields(string(b)) {
		if f == cc {
			return true
		}
	}
	return false
}

// New builds the namespaces, devices, pumps and relay, and the
// listener in the server namespace. cc is the congestion control to set on
// both sockets, "" for the kernel's default; New fails with ErrUnavailable
// when the kernel does not have it (see CongestionControlAvailable).
func New(ctx context.Context, tag string, rc kcptuntest.Config, cc string) (p *Path, err error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if err := CongestionControlAvailable(cc); err != nil {
		return nil, err
	}
	sweepStale(ctx, tag)
	pid, n := os.Getpid(), nsCounter.Add(1)
	p = &Path{nsA: fmt.Sprintf("kcptun-%s-%d-%d-a", tag, pid, n), nsB: fmt.Sprintf("kcptun-%s-%d-%d-b", tag, pid, n), cc: cc}
	defer func() {
		if err != nil {
			p.Close()
			p = nil
		}
	}()
	for _, ns := range []string{p.nsA, p.nsB} {
		if err := ipCmd(ctx, "netns", "add", ns); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	if p.tunA, err = p.addTUN(ctx, fmt.Sprintf("k%.1s%d-%da", tag, pid%1000000, n%1000), p.nsA, clientAddr); err != nil {
		return nil, err
	}
	if p.tunB, err = p.addTUN(ctx, fmt.Sprintf("k%.1s%d-%db", tag, pid%1000000, n%1000), p.nsB, serverAddr); err != nil {
		return nil, err
	}
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	if p.udpB, err = net.ListenUDP("udp4", lo); err != nil {
		return nil, fmt.Errorf("tcp path: %w", err)
	}
	if p.udpA, err = net.ListenUDP("udp4", lo); err != nil {
		return nil, fmt.Errorf("tcp path: %w", err)
	}
	for _, u := range []*net.UDPConn{p.udpA, p.udpB} {
		_ = u.SetReadBuffer(4 << 20)
		_ = u.SetWriteBuffer(4 << 20)
	}
	if p.relay, err = kcptuntest.NewRelay(p.udpB.LocalAddr().String(), rc); err != nil {
		return nil, fmt.Errorf("tcp path: %w", err)
	}
	ra := p.relay.Addr().AddrPort()
	ra = netip.AddrPortFrom(ra.Addr().Unmap(), ra.Port())
	var peerA atomic.Pointer[netip.AddrPort]
	peerA.Store(&ra)
	p.wg.Add(4)
	go p.tunToUDP(p.tunA, p.udpA, &peerA)
	go p.udpToTUN(p.udpA, p.tunA, nil)
	go p.tunToUDP(p.tunB, p.udpB, &p.peerB)
	go p.udpToTUN(p.udpB, p.tunB, &p.peerB)
	err = inNetns(p.nsB, func() error {
		lc := net.ListenConfig{Control: p.setCC}
		var lerr error
		p.ln, lerr = lc.Listen(ctx, "tcp4", net.JoinHostPort(serverAddr, tcpPort))
		return lerr
	})
	if err != nil {
		return nil, fmt.Errorf("tcp path: listen in namespace %s: %w", p.nsB, err)
	}
	return p, nil
}

// addTUN creates a TUN device, moves it into namespace ns, gives it addr
// and brings it up. The device disappears when the returned file is closed.
func (p *Path) addTUN(ctx context.Context, name, ns, addr string) (*os.File, error) {
	fd, err := syscall.Open(tunDevice, syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %v", ErrUnavailable, tunDevice, err)
	}
	var req struct {
		name  [16]byte
		flags uint16
		_     [22]byte
	}
	copy(req.name[:15], name)
	req.flags = syscall.IFF_TUN | syscall.IFF_NO_PI
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TUNSETIFF, uintptr(unsafe.Pointer(&req))); e != 0 {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("%w: create TUN device %s: %v", ErrUnavailable, name, e)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("tcp path: TUN device %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name) // non-blocking: reads go through the poller, Close ends them
	steps := [][]string{
		{"link", "set", name, "netns", ns},
		{"-n", ns, "link", "set", name, "addrgenmode", "none"}, // no IPv6 link-local chatter
		{"-n", ns, "addr", "add", addr + "/24", "dev", name},
		{"-n", ns, "link", "set", name, "up"},
	}
	for i, s := range steps {
		if err := ipCmd(ctx, s...); err != nil && i != 1 {
			_ = f.Close()
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	return f, nil
}

// ipCmd runs the ip command, with a bound on its time.
func ipCmd(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// inNetns runs fn on an OS thread switched into network namespace ns, so
// that the sockets fn creates live there. The thread is never switched back:
// the goroutine ends locked to it, and the runtime retires the thread.
func inNetns(ns string, fn func() error) error {
	nr, _ := setnsNumber()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see above
		fd, err := syscall.Open("/var/run/netns/"+ns, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			done <- err
			return
		}
		_, _, e := syscall.RawSyscall(nr, uintptr(fd), cloneNewNet, 0)
		_ = syscall.Close(fd)
		if e != 0 {
			done <- fmt.Errorf("setns %s: %v", ns, e)
			return
		}
		done <- fn()
	}()
	return <-done
}

// setCC sets the congestion control of a socket before it listens or
// connects.
func (p *Path) setCC(_, _ string, c syscall.RawConn) error {
	if p.cc == "" {
		return nil
	}
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptString(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CONGESTION, p.cc)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("set TCP congestion control %q: %w", p.cc, serr)
	}
	return nil
}

// dial opens a TCP connection from the client namespace to the server.
// Relay returns the emulator both directions of the path go through.
func (p *Path) Relay() *kcptuntest.Relay { return p.relay }

// Listener returns the TCP listener in the server namespace.
func (p *Path) Listener() net.Listener { return p.ln }

// Dial opens a TCP connection from the client namespace to the Listener.
func (p *Path) Dial(ctx context.Context) (net.Conn, error) {
	var c net.Conn
	err := inNetns(p.nsA, func() error {
		d := net.Dialer{Timeout: dialTimeout, Control: p.setCC}
		var derr error
		c, derr = d.DialContext(ctx, "tcp4", net.JoinHostPort(serverAddr, tcpPort))
		return derr
	})
	if err != nil {
		return nil, fmt.Errorf("tcp dial in namespace %s: %w", p.nsA, err)
	}
	return c, nil
}

// tunToUDP sends every packet read from tun as one datagram to peer.
func (p *Path) tunToUDP(tun *os.File, u *net.UDPConn, peer *atomic.Pointer[netip.AddrPort]) {
	defer p.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := tun.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			time.Sleep(time.Millisecond) // not a busy loop on a persistent error
			continue
		}
		if to := peer.Load(); to != nil {
			_, _ = u.WriteToUDPAddrPort(buf[:n], *to) // a failed write is a lost packet
		}
	}
}

// udpToTUN writes every datagram received on u into tun; learn, when set,
// records where the datagrams come from.
func (p *Path) udpToTUN(u *net.UDPConn, tun *os.File, learn *atomic.Pointer[netip.AddrPort]) {
	defer p.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := u.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(time.Millisecond) // not a busy loop on a persistent error
			continue
		}
		if learn != nil {
			from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
			if cur := learn.Load(); cur == nil || *cur != from {
				learn.Store(&from)
			}
		}
		if _, err := tun.Write(buf[:n]); errors.Is(err, os.ErrClosed) {
			return
		}
	}
}

// Close removes everything newTCPPath created, in reverse order, and waits
// for the pumps.
func (p *Path) Close() {
	p.closeOnce.Do(func() {
		if p.ln != nil {
			_ = p.ln.Close()
		}
		for _, f := range []*os.File{p.tunA, p.tunB} {
			if f != nil {
				_ = f.Close()
			}
		}
		for _, u := range []*net.UDPConn{p.udpA, p.udpB} {
			if u != nil {
				_ = u.Close()
			}
		}
		p.wg.Wait()
		if p.relay != nil {
			_ = p.relay.Close()
		}
		for _, ns := range []string{p.nsA, p.nsB} {
			_ = ipCmd(context.Background(), "netns", "del", ns) // fails harmlessly if never added
		}
	})
}

// sweepStale removes the namespaces of earlier runs with the same tag that
// were killed before they could clean up: those named kcptun-TAG-PID-N-a or
// -b whose process no longer exists. Nothing else is touched.
func sweepStale(ctx context.Context, tag string) {
	entries, err := os.ReadDir("/var/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "kcptun-"+tag+"-")
		if !ok {
			continue
		}
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = ipCmd(ctx, "netns", "del", e.Name())
		}
	}
}
