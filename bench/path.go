// Package bench measures kcptun against TCP and against raw kcp-go+smux over
// the same emulated lossy path, in one process on loopback.
//
// Every system runs through a kcptuntest.Relay configured from a Path: the
// same loss, delay and bottleneck in each direction, with the same seed, so
// the systems see the same loss decisions for the i-th datagram of each
// direction. The TCP baseline is gVisor's userspace TCP (CUBIC, SACK, RACK)
// in two netstacks whose IP packets travel as UDP datagrams through the
// relay; see TCPPath. Run executes one workload on one system over one path
// and returns a Result; cmd/matrix runs a whole matrix of them. The
// two-flow workloads (Share, VsCubic) give each flow its own relay, and the
// relays share one kcptuntest.Bottleneck per direction.
//
// Heavy dependencies (gVisor) live in this nested module only, so that a
// `go get` of the SDK never pulls them.
package bench

import (
	"fmt"
	"time"

	"github.com/seed-fc8f924e/kcptun/kcptuntest"
)

// Path is one emulated network path, the same in both directions.
type Path struct {
	// Loss is the probability that a datagram is lost, in each direction
	// independently, in [0, 1).
	Loss float64
	// RTT is the round-trip propagation delay; each direction gets half.
	RTT time.Duration
	// Bandwidth is the bottleneck rate of each direction in bit/s; 0 means
	// no cap.
	Bandwidth Bitrate
}

// Bitrate is a rate in bit/s.
type Bitrate int64

// Validate reports a field of p that is out of range.
func (p Path) Validate() error {
	switch {
	case !(p.Loss >= 0 && p.Loss < 1):
		return fmt.Errorf("bench: path loss %v: want a probability in [0, 1)", p.Loss)
	case p.RTT < 0 || p.RTT > 10*time.Second:
		return fmt.Errorf("bench: path RTT %v: want 0..10s", p.RTT)
	case p.Bandwidth < 0:
		return fmt.Errorf("bench: path bandwidth %d bit/s: must not be negative", p.Bandwidth)
	}
	return nil
}

// String describes p as "loss=5% rtt=80ms bw=20Mbit/s".
func (p Path) String() string {
	bw := "unlimited"
	if p.Bandwidth > 0 {
		bw = fmt.Sprintf("%gMbit/s", float64(p.Bandwidth)/1e6)
	}
	return fmt.Sprintf("loss=%g%% rtt=%v bw=%s", p.Loss*100, p.RTT, bw)
}

// BDP returns the path's bandwidth-delay product in bytes, or 0 when the
// bandwidth is not capped.
func (p Path) BDP() int {
	return int(float64(p.Bandwidth) / 8 * p.RTT.Seconds())
}

// QueueBytes is the drop-tail queue in front of each direction's bottleneck:
// one bandwidth-delay product, at least kcptuntest.DefaultQueueBytes, the
// classic rule of thumb for a router buffer.
func (p Path) QueueBytes() int {
	return max(p.BDP(), kcptuntest.DefaultQueueBytes)
}

// RelayConfig returns the emulator configuration of p with the given seed.
func (p Path) RelayConfig(seed int64) kcptuntest.Config {
	l := kcptuntest.Link{
		Loss:      p.Loss,
		Delay:     p.RTT / 2,
		Bandwidth: int64(p.Bandwidth),
	}
	if p.Bandwidth > 0 {
		l.QueueBytes = p.QueueBytes()
	}
	return kcptuntest.Config{Up: l, Down: l, Seed: seed}
}

// Mbps returns b in Mbit/s.
func (b Bitrate) Mbps() float64 { return float64(b) / 1e6 }
