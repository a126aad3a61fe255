package adapt

import (
	"testing"
	"time"
)

// flushPeer models a peer that holds its ACKs for a flush interval (KCP's
// update interval) on a path whose own RTT is far shorter (loopback, a
// LAN). The sender sends at the controller's pacing rate within its
// inflight limit; the peer acknowledges at each flush what arrived since
// the last, at most perFlush packets (the path's capacity: a bottleneck
// without a queue, which drops the rest), and the ACKs arrive together.
// The controller's RTT samples are then mostly the wait for the flush.
type flushPeer struct {
	c        *Controller
	interval time.Duration
	pathRTT  time.Duration
	perFlush int
	now      time.Duration
	nextSend time.Duration
	sent     []time.Duration // send times of packets not acknowledged yet
}

// run simulates until the time until, one flush interval at a time.
func (f *flushPeer) run(until time.Duration) {
	mss := int64(f.c.cfg.MSS)
	for f.now < until {
		flush := (f.now/f.interval + 1) * f.interval
		// Send what the limit allows at the pacing rate until the ACKs
		// of the next flush arrive.
		inflight := int64(len(f.sent)) * mss
		for t := max(f.now, f.nextSend); t < flush+f.pathRTT/2 && inflight+mss <= f.c.InflightLimit(); {
			inflight += mss
			f.c.OnSend(t, int(mss), int(inflight))
			f.sent = append(f.sent, t)
			gap := time.Duration(0)
			if r := f.c.PacingRate(); r > 0 {
				gap = time.Duration(float64(mss) / float64(r) * float64(time.Second))
			}
			t += gap
			f.nextSend = t
		}
		n := 0
		for n < len(f.sent) && f.sent[n]+f.pathRTT/2 <= flush {
			n++
		}
		acked := min(n, f.perFlush)
		ackAt := flush + f.pathRTT/2
		for _, at := range f.sent[:acked] {
			f.c.OnAck(ackAt, int(mss), ackAt-at, false)
		}
		if n > acked {
			f.c.OnLoss(ackAt, n-acked)
		}
		f.sent = f.sent[n:]
		f.now = ackAt
	}
}

// newFlushPeer returns a controller whose minimum RTT is the path's (the
// handshake's packet was answered at once) behind a peer that flushes
// every 30 ms.
func newFlushPeer(perFlush int) *flushPeer {
	c := New(Config{Seed: 1, AckDelay: 30 * time.Millisecond})
	f := &flushPeer{c: c, interval: 30 * time.Millisecond, pathRTT: 200 * time.Microsecond, perFlush: perFlush}
	c.OnSend(0, c.cfg.MSS, c.cfg.MSS)
	c.OnAck(f.pathRTT, c.cfg.MSS, f.pathRTT, false)
	f.now = f.pathRTT
	return f
}

// TestStartupGrowsBehindFlushingPeer checks that slow start keeps
// doubling on a path whose RTT samples are all the peer's ACK delay:
// samples that came in one flush show no queue (they measured one packet's
// wait for the flush), and the limit's cap, twice the bandwidth-delay
// product, counts the ACK delay as part of the round trip. Before, the
// first round's bunched samples ended slow start and the cap held the
// window where it was, so a loopback transfer crawled at a few Mbit/s for
// seconds.
func TestStartupGrowsBehindFlushingPeer(t *testing.T) {
	f := newFlushPeer(1 << 20)
	f.run(f.interval) // the first flush brings the first estimate
	first := f.c.InflightLimit()
	f.run(6 * f.interval) // five more
	st := f.c.State()
	if grew := float64(f.c.InflightLimit()) / float64(first); grew < 16 {
		t.Errorf("in five flushes the limit grew %.1f times (mode %v, bandwidth %d B/s), want slow start's doubling (32)", grew, st.Mode, st.Bandwidth)
	}
}

// TestProbeBWGrowsBehindFlushingPeer checks that ProbeBW's probing raises
// the estimate where the peer's ACK delay makes most of the round trip:
// the path's capacity rises a hundredfold after the controller settled at
// the lower one, and within two seconds the estimate must have grown at
// least fourfold. Before, a probing phase lasted the path's minimum RTT
// (0.2 ms, over before the flush that would show its effect) and its
// window counted the ACK delay once, not times the gain: the estimate grew
// 2.6 times in those two seconds.
func TestProbeBWGrowsBehindFlushingPeer(t *testing.T) {
	f := newFlushPeer(20)
	f.run(3 * time.Second)
	before := f.c.State()
	if before.Mode != ModeProbeBW {
		t.Fatalf("mode %v after 3 s at 20 packets a flush, want probe-bw", before.Mode)
	}
	f.perFlush = 2000
	f.run(5 * time.Second)
	after := f.c.State()
	if grew := float64(after.Bandwidth) / float64(before.Bandwidth); grew < 4 {
		t.Errorf("in 2 s after the capacity rose the estimate grew %.2f times (%d to %d B/s), want at least 4", grew, before.Bandwidth, after.Bandwidth)
	}
}
