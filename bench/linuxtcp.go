package bench

import (
	"context"
	"fmt"

	"github.com/seed-fc8f924e/kcptun/internal/kerneltcp"
	"github.com/seed-fc8f924e/kcptun/internal/loadserver"
	"github.com/seed-fc8f924e/kcptun/kcptuntest"
)

// ErrLinuxTCPUnavailable wraps every reason why the tcp-linux system cannot
// run here (it needs Linux, root, the ip command and /dev/net/tun).
var ErrLinuxTCPUnavailable = kerneltcp.ErrUnavailable

// LinuxTCPAvailable reports why the tcp-linux system cannot run here, or nil.
func LinuxTCPAvailable() error { return kerneltcp.Available() }

// SystemAvailable reports why system cannot run here, or nil. Only the
// kernel TCP systems can be unavailable: they need what LinuxTCPAvailable
// checks, and their congestion control in the kernel (tcp-linux-bbr loads
// the tcp_bbr module when it can). The error wraps ErrLinuxTCPUnavailable.
func SystemAvailable(system string) error {
	cc, ok := linuxCC[system]
	if !ok {
		return nil
	}
	if err := kerneltcp.Available(); err != nil {
		return err
	}
	return kerneltcp.CongestionControlAvailable(cc)
}

// linuxCC is the congestion control of each kernel TCP system.
var linuxCC = map[string]string{TCPLinux: "cubic", TCPLinuxBBR: "bbr"}

// newLinuxTCPTestbed starts a kernel TCP system: the kernel's TCP with the
// system's congestion control between two namespaces of the benchmark's
// own, through the emulator.
func newLinuxTCPTestbed(system string, cfg kcptuntest.Config) (*testbed, error) {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	p, err := kerneltcp.New(ctx, "bench", cfg, linuxCC[system])
	if err != nil {
		return nil, fmt.Errorf("bench: %s: %w", system, err)
	}
	return &testbed{relay: p.Relay(), dial: p.Dial, srv: loadserver.Start(p.Listener()), closer: func() error { p.Close(); return nil }, ipPackets: true}, nil
}
