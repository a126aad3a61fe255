package packet

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/seed-fc8f924e/kcptun/internal/adapt"
)

// kcpSeg is one KCP segment: a PUSH of n data bytes, or an ACK (n 0).
func kcpSeg(cmd byte, sn, ts, una uint32, n int) []byte {
	return segment(nil, cmd, sn, ts, una, n)
}

// TestAdaptiveWindowBoundsQueue drives a peer's controller, on a synthetic
// clock, as a KCP sender over a path whose bottleneck queues without limit
// and never drops (a CPU-starved host looks like this; so does a deep
// buffer), with 5 % random loss that KCP repairs by fast retransmission.
// KCP sends whatever its send window allows; the window the controller sets
// must keep the queue it builds near one bandwidth-delay product, while the
// holes the losses leave must not stall the pipe.
//
// A window sized from the smoothed RTT (to cover a retransmission's time)
// fed on itself here: the queue it allowed raised the RTT, which raised the
// window, up to the largest one; KCP's RTT, measured from when it hands a
// segment over, rose with it to seconds and its retransmission timeout
// with it, and a session stalled.
func TestAdaptiveWindowBoundsQueue(t *testing.T) {
	c, _ := pacedPair(t)
	p := c.Peer()
	const (
		mtu   = 1400
		data  = mtu - kcpOverhead
		rate  = 1 << 20 // bottleneck, bytes per second
		base  = 10 * time.Millisecond
		until = 8 * time.Second
		warm  = 2 * time.Second
	)
	serialize := time.Duration(mtu) * time.Second / rate
	var now time.Duration
	snd := 0
	p.EnableAdaptive(AdaptiveConfig{MTU: mtu, SetWindows: func(s, _ int) { snd = s }, Seed: 1})
	p.ad.Load().clock = func() time.Duration { return now }

	type ack struct {
		at     time.Duration
		sn, ts uint32
		sentAt time.Duration
	}
	var (
		rng       = rand.New(rand.NewPCG(1, 2))
		acks      []ack // in arrival order: the bottleneck is FIFO
		busy      time.Duration
		next      uint32
		una       uint32
		acked     = map[uint32]bool{}
		lost      = map[uint32]int{} // sn: ACKs of later segments seen since
		delivered int
		maxRTT    time.Duration
		maxWnd    int
	)
	send := func(sn uint32, resend bool) {
		ts := uint32(now / time.Millisecond)
		m, _ := p.adaptOut(kcpSeg(cmdPush, sn, ts, 0, data))
		p.transmitted(m, true)
		if !resend && rng.Float64() < 0.05 {
			lost[sn] = 0
			return
		}
		busy = max(busy, now) + serialize
		acks = append(acks, ack{at: busy + base, sn: sn, ts: ts, sentAt: now})
	}
	for now < until {
		for int32(next-una) < int32(snd) {
			send(next, false)
			next++
		}
		if len(acks) == 0 { // everything in flight lost: KCP's timeout
			now += 200 * time.Millisecond
			for sn := range lost {
				delete(lost, sn)
				send(sn, true)
			}
			continue
		}
		a := acks[0]
		acks = acks[1:]
		now = a.at
		if !acked[a.sn] {
			acked[a.sn] = true
			delivered++
		}
		for acked[una] {
			delete(acked, una)
			una++
		}
		p.adaptIn(kcpSeg(cmdAck, a.sn, a.ts, una, 0))
		if now > warm {
			maxRTT = max(maxRTT, now-a.sentAt)
			maxWnd = max(maxWnd, snd)
		}
		for sn, n := range lost {
			if int32(sn-a.sn) < 0 {
				if lost[sn] = n + 1; n+1 >= 2 {
					delete(lost, sn)
					send(sn, true)
				}
			}
		}
	}
	st, _ := p.Adaptive()
	goodput := float64(delivered) * mtu / until.Seconds()
	t.Logf("goodput %.0f%% of the bottleneck, max RTT after %v: %v, largest send window %d, final state %+v",
		100*goodput/rate, warm, maxRTT, maxWnd, st)
	// One BDP of queue doubles the RTT; allow for Startup's overshoot and
	// ProbeBW's probing on top of it.
	if limit := 4 * (base + serialize); maxRTT > limit {
		t.Errorf("RTT reached %v after %v (base %v): the send window let a standing queue build", maxRTT, warm, base)
	}
	if goodput < 0.7*rate {
		t.Errorf("goodput %.0f B/s, want at least 70 %% of the bottleneck's %d: losses stalled the window", goodput, rate)
	}
}

// TestAdaptiveKeepsFirstFECShape checks that a session sends with the first
// real FEC shape (two data shards or more) its controller chose whenever
// FEC is on, and only switches it off and on: a kcp-go receiver mis-decodes
// around a change of shape. A shape of one data shard is sent as bare
// copies with FEC off, and fixes nothing: a thin-then-bulk session's first
// real shape is its bulk one.
func TestAdaptiveKeepsFirstFECShape(t *testing.T) {
	a := &adaptive{ctl: adapt.New(adapt.Config{}), cfg: AdaptiveConfig{MTU: 1400}}
	for _, step := range []struct {
		chosen, sent [2]int
		copies       int
	}{
		{[2]int{0, 0}, [2]int{0, 0}, 0},
		{[2]int{1, 3}, [2]int{0, 0}, 3},
		{[2]int{1, 1}, [2]int{0, 0}, 1},
		{[2]int{4, 2}, [2]int{4, 2}, 0},
		{[2]int{10, 3}, [2]int{4, 2}, 0},
		{[2]int{1, 2}, [2]int{0, 0}, 2},
		{[2]int{0, 0}, [2]int{0, 0}, 0},
		{[2]int{2, 1}, [2]int{4, 2}, 0},
	} {
		a.ctl.PinFEC(step.chosen[0], step.chosen[1])
		if d, p, c := a.fecShape(); d != step.sent[0] || p != step.sent[1] || c != step.copies {
			t.Errorf("controller chose %d+%d: sent with %d+%d and %d copies, want %d+%d and %d", step.chosen[0], step.chosen[1], d, p, c, step.sent[0], step.sent[1], step.copies)
		}
	}
	// WithFEC pins a shape: it is sent as it is.
	a = &adaptive{ctl: adapt.New(adapt.Config{}), cfg: AdaptiveConfig{MTU: 1400, FECPinned: true}}
	a.ctl.PinFEC(4, 2)
	_, _, _ = a.fecShape()
	a.ctl.PinFEC(10, 3)
	if d, p, c := a.fecShape(); d != 10 || p != 3 || c != 0 {
		t.Errorf("pinned 10+3 after 4+2: sent with %d+%d and %d copies", d, p, c)
	}
	a.ctl.PinFEC(1, 2)
	if d, p, c := a.fecShape(); d != 1 || p != 2 || c != 0 {
		t.Errorf("pinned 1+2: sent with %d+%d and %d copies", d, p, c)
	}
}
