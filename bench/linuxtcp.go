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

// linuxCC is the congestion control of the tcp-linux system.
const linuxCC = "cubic"

// newLinuxTCPTestbed starts the tcp-linux system: the kernel's TCP with
// CUBIC between two namespaces of the benchmark's own, through the emulator.
func newLinuxTCPTestbed(cfg kcptuntest.Config) (*testbed, error) {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	p, err := kerneltcp.New(ctx, "bench", cfg, linuxCC)
	if err != nil {
		return nil, fmt.Errorf("bench: %s: %w", TCPLinux, err)
	}
	return &testbed{relay: p.Relay(), dial: p.Dial, srv: loadserver.Start(p.Listener()), closer: func() error { p.Close(); return nil }, ipPackets: true}, nil
}
