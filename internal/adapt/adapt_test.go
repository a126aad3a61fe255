package adapt

import (
	"math"
	"testing"
	"time"
)

const (
	mbit100 = 100e6 / 8 // bytes per second
	pps100  = float64(mbit100) / DefaultMSS
	rtt40   = 40 * time.Millisecond
)

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{ModeStartup: "startup", ModeDrain: "drain", ModeProbeBW: "probe-bw", ModeProbeRTT: "probe-rtt", Mode(9): "unknown"} {
		if got := m.String(); got != want {
			t.Errorf("Mode(%d).String() = %q, want %q", m, got, want)
		}
	}
}

// TestStartupFindsBandwidth drives the controller over a simulated clean
// 100 Mbit/s, 40 ms path and checks that Startup measures the bandwidth
// within 15 round trips and hands over to ProbeBW.
func TestStartupFindsBandwidth(t *testing.T) {
	c := New(Config{Seed: 1})
	l := newLink(c, 100, rtt40, 0, 1)
	found := uint64(0)
	for step := 1; step <= 200 && (found == 0 || c.State().Mode != ModeProbeBW); step++ {
		l.run(time.Duration(step) * 10 * time.Millisecond)
		st := c.State()
		if found == 0 && float64(st.Bandwidth) >= 0.9*mbit100 {
			found = st.Rounds
		}
	}
	st := c.State()
	if found == 0 || found > 15 {
		t.Fatalf("bandwidth within 10%% of 100 Mbit/s after %d rounds (0: never), want at most 15; state %+v", found, st)
	}
	if float64(st.Bandwidth) > 1.05*mbit100 {
		t.Errorf("bandwidth %d B/s, more than 5%% above the path's %.0f", st.Bandwidth, mbit100)
	}
	if st.Mode != ModeProbeBW || st.Rounds > 25 {
		t.Errorf("mode %v after %d rounds, want probe-bw within 25", st.Mode, st.Rounds)
	}
	if st.MinRTT < rtt40 || st.MinRTT > rtt40+2*time.Millisecond {
		t.Errorf("min RTT %v, want about %v", st.MinRTT, rtt40)
	}
}

// TestStartupLimitGrowsAsSlowStart drives a window-limited sender on a path
// with no bottleneck, whose peer holds each ACK up to its ACK delay (KCP's
// flush interval, with no flush in between): every round sends what
// InflightLimit allows in one burst, which the peer acknowledges at its
// next flush, one ACK delay later. The rate samples then span the RTT and
// the ACK delay, so a limit made of the estimate alone grew by less than
// 1.5 a round; Startup's limit must grow by at least 1.8, as slow start's
// window, capped at twice the bandwidth-delay product, does.
func TestStartupLimitGrowsAsSlowStart(t *testing.T) {
	const rtt = 100 * time.Millisecond
	c := New(Config{Seed: 1, AckDelay: 20 * time.Millisecond})
	mss := int64(c.cfg.MSS)
	now := time.Duration(0)
	prev := c.InflightLimit()
	for round := 1; round <= 8; round++ {
		n := c.InflightLimit() / mss
		for i := range n {
			c.OnSend(now, int(mss), int((i+1)*mss))
		}
		at := now + rtt + c.cfg.AckDelay
		for range n {
			c.OnAck(at, int(mss), at-now, false)
		}
		now = at + time.Millisecond // the next burst leaves once the ACKs are in
		if m := c.State().Mode; m != ModeStartup {
			t.Fatalf("round %d: mode %v, want startup on a path with no bottleneck", round, m)
		}
		limit := c.InflightLimit()
		if float64(limit) < slowStartGrowth*float64(n*mss) {
			t.Errorf("round %d: inflight limit %d bytes after %d were delivered in one round (limit %d before), want at least %.1f times that",
				round, limit, n*mss, prev, slowStartGrowth)
		}
		prev = limit
	}
}

// slowStartGrowth is the least growth per round of Startup's limit while
// slow start runs, in the model of TestStartupLimitGrowsAsSlowStart.
const slowStartGrowth = 1.8

// TestStartupSlowStartStopsAtQueue drives the window-limited sender of
// TestStartupLimitGrowsAsSlowStart until a queue adds 30 ms to every RTT
// sample: slow start's window must stop (HyStart's delay increase),
// leaving the limit to the estimate.
func TestStartupSlowStartStopsAtQueue(t *testing.T) {
	const rtt = 100 * time.Millisecond
	c := New(Config{Seed: 1, AckDelay: 20 * time.Millisecond})
	mss := int64(c.cfg.MSS)
	now := time.Duration(0)
	for round := 1; round <= 7; round++ {
		queue := time.Duration(0)
		if round > 4 {
			queue = 30 * time.Millisecond
		}
		n := c.InflightLimit() / mss
		for i := range n {
			c.OnSend(now, int(mss), int((i+1)*mss))
		}
		at := now + rtt + queue + c.cfg.AckDelay
		for range n {
			c.OnAck(at, int(mss), at-now, false)
		}
		now = at + time.Millisecond // the next burst leaves once the ACKs are in
		growth := float64(c.InflightLimit()) / float64(n*mss)
		switch {
		case round <= 4 && growth < slowStartGrowth:
			t.Fatalf("round %d, no queue: limit %.2f times what was delivered, want at least %.1f", round, growth, slowStartGrowth)
		case round > 5 && growth >= slowStartGrowth:
			t.Errorf("round %d, 30 ms of queue: limit %.2f times what was delivered, want slow start stopped", round, growth)
		}
	}
}

// TestRandomLossKeepsRate checks that 5 % random loss, at a steady delivery
// rate and RTT, leaves the bandwidth estimate and pacing rate where they
// are on a clean path.
func TestRandomLossKeepsRate(t *testing.T) {
	run := func(loss float64) (minBw, minPacing float64, st State) {
		c := New(Config{Seed: 2})
		o := newOpenLoop(c, pps100, rtt40, loss, 3)
		o.run(5 * time.Second)
		minBw, minPacing = 1e18, 1e18
		for s := 6; s <= 30; s++ {
			o.run(time.Duration(s) * time.Second)
			st = c.State()
			minBw = min(minBw, float64(st.Bandwidth))
			minPacing = min(minPacing, float64(st.PacingRate)/st.PacingGain)
		}
		return minBw, minPacing, st
	}
	cleanBw, _, _ := run(0)
	bw, pacing, st := run(0.05)
	if st.CongestionEvents != 0 {
		t.Errorf("%d congestion events at 5%% random loss, want 0 (state %+v)", st.CongestionEvents, st)
	}
	// The delivery rate of the open-loop flow is 95 % of its sending rate.
	if bw < 0.95*0.95*cleanBw || pacing < 0.95*0.95*cleanBw {
		t.Errorf("at 5%% loss the bandwidth estimate fell to %.0f and the pacing rate / gain to %.0f B/s; clean: %.0f", bw, pacing, cleanBw)
	}
	if st.Mode != ModeProbeBW {
		t.Errorf("mode %v, want probe-bw", st.Mode)
	}
}

// TestMinRTTKeptBySamplesNearIt checks that samples scattered just above
// the minimum RTT (the peer's ACK hold, never matching it exactly) keep it
// from expiring, so that ProbeRTT does not idle the link every ten seconds,
// and that a path whose RTT grew by more than minRTTSlack still has its
// minimum measured again within about the ten seconds of minRTTWindow.
func TestMinRTTKeptBySamplesNearIt(t *testing.T) {
	const base = 200 * time.Millisecond
	grew := base + 60*time.Millisecond
	change := 25 * time.Second
	c := New(Config{Seed: 5})
	o := newOpenLoop(c, 10e6/8/DefaultMSS, base, 0.05, 6)
	noise := rng(7)
	o.rtt = func(at time.Duration) time.Duration {
		rtt := base
		if at >= change {
			rtt = grew
		}
		if at < 100*time.Millisecond {
			return rtt // the minimum, only at the start
		}
		// 0.2-10.2 ms of the peer's ACK hold.
		return rtt + 200*time.Microsecond + time.Duration(noise.float()*float64(10*time.Millisecond))
	}
	probes := 0
	was := c.State().Mode
	step := func(until time.Duration) {
		for at := o.t; at < until; at += 20 * time.Millisecond {
			o.run(at)
			if m := c.State().Mode; m != was {
				if m == ModeProbeRTT {
					probes++
				}
				was = m
			}
		}
	}
	step(change)
	if st := c.State(); probes != 0 || st.MinRTT != base {
		t.Fatalf("%d ProbeRTTs and a minimum RTT of %v in %v of samples 0.2-10.2 ms above %v, want none and %v", probes, st.MinRTT, change, base, base)
	}
	// The path's RTT grows by 60 ms: the old minimum expires once, and
	// the new one holds from then on.
	step(change + minRTTWindow + 2*time.Second)
	if st := c.State(); st.MinRTT < grew {
		t.Errorf("minimum RTT %v %v after the path's RTT grew to %v (%d ProbeRTTs), want at least %v", st.MinRTT, minRTTWindow+2*time.Second, grew, probes, grew)
	}
	if probes != 1 {
		t.Errorf("%d ProbeRTTs after the path's RTT grew, want 1", probes)
	}
}

// TestRisingRTTFlatRateShrinks checks that a queue growing at a flat
// delivery rate (someone else fills the bottleneck) lowers the rate.
func TestRisingRTTFlatRateShrinks(t *testing.T) {
	c := New(Config{Seed: 3})
	o := newOpenLoop(c, pps100, rtt40, 0, 4)
	o.follow = true
	o.run(5 * time.Second)
	before := c.State()
	if before.CongestionEvents != 0 {
		t.Fatalf("congestion events on a steady path: %+v", before)
	}
	start := 5 * time.Second
	o.rtt = func(t time.Duration) time.Duration {
		if t < start {
			return rtt40
		}
		return min(rtt40+(t-start)/25, 200*time.Millisecond) // +40 ms per second
	}
	o.run(10 * time.Second)
	after := c.State()
	if after.CongestionEvents == 0 {
		t.Fatalf("no congestion event while the RTT rose from 40 to 200 ms at a flat delivery rate: %+v", after)
	}
	if float64(after.Bandwidth) > 0.9*float64(before.Bandwidth) {
		t.Errorf("bandwidth estimate %d B/s after the RTT rose, before %d: want a cut", after.Bandwidth, before.Bandwidth)
	}
}

// TestLossSpikeShrinks checks that loss jumping well above its baseline
// counts as congestion, and that the baseline alone does not.
func TestLossSpikeShrinks(t *testing.T) {
	c := New(Config{Seed: 4})
	loss := 0.01
	o := newOpenLoop(c, pps100, rtt40, 0, 5)
	o.loss = func(time.Duration) float64 { return loss }
	o.run(10 * time.Second)
	before := c.State()
	if before.CongestionEvents != 0 {
		t.Fatalf("congestion events at a steady 1%% loss: %+v", before)
	}
	loss = 0.2
	o.run(12 * time.Second)
	after := c.State()
	if after.CongestionEvents == 0 || after.Bandwidth >= before.Bandwidth {
		t.Errorf("loss from 1%% to 20%%: %d congestion events, bandwidth %d -> %d B/s: want a cut", after.CongestionEvents, before.Bandwidth, after.Bandwidth)
	}
}

// TestReceiveWindowCoversSpan checks that the receive window keeps twice
// the largest span the peer's data took at this end, which shows a sender
// the window holds back before the receive rate does, and lets it go once
// ten intervals passed without it.
func TestReceiveWindowCoversSpan(t *testing.T) {
	r := New(Config{})
	r.OnAck(0, 100, rtt40, true) // one RTT sample (a keepalive's)
	r.OnReceive(0, DefaultMSS)
	r.OnReceiveSpan(900)
	if w := r.ReceiveWindow(DefaultMSS); w != 1800 {
		t.Errorf("receive window %d packets after a span of 900, want 1800", w)
	}
	r.OnReceiveSpan(3000)
	if w := r.ReceiveWindow(DefaultMSS); w != DefaultMaxWindow && w < 6000 {
		t.Errorf("receive window %d packets after a span of 3000, want 6000", w)
	}
	// Ten intervals of a slow trickle with a small span.
	for i := 1; i <= 11; i++ {
		r.OnReceive(time.Duration(i)*2*rtt40, DefaultMSS)
		r.OnReceiveSpan(4)
	}
	if w := r.ReceiveWindow(DefaultMSS); w != DefaultMinReceiveWindow {
		t.Errorf("receive window %d packets once the spans aged out, want the minimum %d", w, DefaultMinReceiveWindow)
	}
}

// TestWindowsCoverBDP checks that both windows cover the bandwidth-delay
// product with room for a retransmission, and that pins win.
func TestWindowsCoverBDP(t *testing.T) {
	c := New(Config{Seed: 5})
	l := newLink(c, 100, rtt40, 0.01, 6)
	l.run(5 * time.Second)
	bdpPkts := mbit100 * rtt40.Seconds() / DefaultMSS
	if w := c.SendWindow(DefaultMSS); float64(w) < 2*bdpPkts {
		t.Errorf("send window %d packets, want at least 2 BDP (%.0f)", w, 2*bdpPkts)
	}
	if w := c.SendWindow(DefaultMSS); w > DefaultMaxWindow {
		t.Errorf("send window %d above the maximum", w)
	}
	// The receiving side: data arriving at 100 Mbit/s.
	r := New(Config{})
	if w := r.ReceiveWindow(DefaultMSS); w != DefaultMinReceiveWindow {
		t.Errorf("receive window %d with nothing received, want the minimum %d", w, DefaultMinReceiveWindow)
	}
	r.OnAck(0, 100, rtt40, true) // one RTT sample (a keepalive's)
	gap := time.Duration(float64(time.Second) / pps100)
	for i := range 18519 { // two seconds
		r.OnReceive(time.Duration(i)*gap, DefaultMSS)
	}
	if w := r.ReceiveWindow(DefaultMSS); float64(w) < 2*bdpPkts {
		t.Errorf("receive window %d packets at 100 Mbit/s, want at least 2 BDP (%.0f); state %+v", w, 2*bdpPkts, r.State())
	}
	c.PinWindow(100, 200)
	if s, rw := c.SendWindow(DefaultMSS), c.ReceiveWindow(DefaultMSS); s != 100 || rw != 200 {
		t.Errorf("pinned windows %d, %d, want 100, 200", s, rw)
	}
	if !c.State().WindowPinned {
		t.Error("State does not show the pinned window")
	}
	c.PinWindow(0, 0)
	if s := c.SendWindow(DefaultMSS); s == 100 {
		t.Error("send window still pinned after PinWindow(0, 0)")
	}
}

// TestRateLimit checks that the cap holds on the wire, FEC included.
func TestRateLimit(t *testing.T) {
	const limit = 1 << 20
	c := New(Config{Seed: 6, RateLimit: limit})
	c.PinFEC(10, 3)
	l := newLink(c, 100, rtt40, 0, 7)
	l.run(10 * time.Second)
	if r := c.WirePacingRate(); r > limit {
		t.Errorf("wire pacing rate %d above the %d limit", r, limit)
	}
	if g := l.goodput(5, 10); g > limit*10/13+limit/100 {
		t.Errorf("goodput %.0f B/s above the limit's share of data (%d)", g, limit*10/13)
	}
	c.SetRateLimit(0)
	l.run(20 * time.Second)
	if r := c.WirePacingRate(); r <= limit {
		t.Errorf("wire pacing rate %d still at the limit after SetRateLimit(0)", r)
	}
}

// TestNoAllocations checks that events and outputs allocate nothing.
func TestNoAllocations(t *testing.T) {
	c := New(Config{})
	now := time.Duration(0)
	allocs := testing.AllocsPerRun(1000, func() {
		now += 100 * time.Microsecond
		c.OnSend(now, DefaultMSS, 100*DefaultMSS)
		c.OnAck(now, DefaultMSS, rtt40, false)
		c.OnLoss(now, 1)
		c.OnReceive(now, DefaultMSS)
		c.OnFECStats(now, 10, 1)
		_ = c.PacingRate()
		_ = c.WirePacingRate()
		_ = c.SendWindow(DefaultMSS)
		_ = c.ReceiveWindow(DefaultMSS)
		_, _ = c.FEC()
		_ = c.State()
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per round of events, want 0", allocs)
	}
}

// TestSimLossy runs the controller over simulated bottlenecks with 5 %
// random loss (FEC pinned off: the ARQ alone) and checks that it reaches
// 80 % of C(1-p).
func TestSimLossy(t *testing.T) {
	for _, tc := range []struct {
		mbps float64
		rtt  time.Duration
	}{{100, rtt40}, {10, 100 * time.Millisecond}, {10, 20 * time.Millisecond}} {
		c := New(Config{Seed: 7})
		c.PinFEC(0, 0)
		l := newLink(c, tc.mbps, tc.rtt, 0.05, 8)
		l.run(25 * time.Second)
		capacity := tc.mbps * 1e6 / 8 * 0.95
		g := l.goodput(5, 25)
		t.Logf("%g Mbit/s %v 5%% loss: goodput %.2f Mbit/s = %.0f%% of C(1-p)", tc.mbps, tc.rtt, g*8/1e6, 100*g/capacity)
		if g < 0.8*capacity {
			t.Errorf("%g Mbit/s %v 5%% loss: goodput %.2f Mbit/s, want at least 80%% of C(1-p) = %.2f; state %+v",
				tc.mbps, tc.rtt, g*8/1e6, 0.8*capacity*8/1e6, c.State())
		}
	}
}

// TestSimLossyAdaptiveFEC is TestSimLossy with the FEC shape left to the
// controller (the model sends the parity and recovers with it). The flow
// fills the link, so where the windows cover its re-sends it sends no
// parity (fecState.linkBound); where the largest window is too small for
// them (the packet layer's 4096 packets at 100 Mbit/s and 200 ms) FEC turns
// on. Either way it reaches 80 % of C(1-p), parity included.
func TestSimLossyAdaptiveFEC(t *testing.T) {
	for _, tc := range []struct {
		mbps      float64
		rtt       time.Duration
		maxWindow int
		wantFEC   bool
	}{{100, rtt40, 0, false}, {10, 100 * time.Millisecond, 0, false}, {100, 200 * time.Millisecond, 4096, true}} {
		c := New(Config{Seed: 9, MaxWindow: tc.maxWindow})
		l := newLink(c, tc.mbps, tc.rtt, 0.05, 10)
		l.run(25 * time.Second)
		capacity := tc.mbps * 1e6 / 8 * 0.95
		g := l.goodput(5, 25)
		st := c.State()
		t.Logf("%g Mbit/s %v 5%% loss: goodput %.2f Mbit/s = %.0f%% of C(1-p), FEC %d+%d, %d lost packets",
			tc.mbps, tc.rtt, g*8/1e6, 100*g/capacity, st.DataShards, st.ParityShards, st.LostPackets)
		if g < 0.8*capacity {
			t.Errorf("%g Mbit/s %v: goodput %.2f Mbit/s, want at least 80%% of C(1-p); state %+v", tc.mbps, tc.rtt, g*8/1e6, st)
		}
		if on := st.ParityShards > 0; on != tc.wantFEC {
			t.Errorf("%g Mbit/s %v, largest window %d: FEC %d+%d at 5%% loss, want on %v", tc.mbps, tc.rtt, tc.maxWindow, st.DataShards, st.ParityShards, tc.wantFEC)
		}
	}
}

// TestLossCompensationFillsLink checks lossCompensation on the model's
// path, which loses packets before its bottleneck (as the emulator does): at
// 10 Mbit/s, 200 ms and 10 % loss the flow keeps the bottleneck full, so
// its goodput reaches 93 % of C, the link's rate (98 % measured; 89 %
// when it sent at the delivered rate).
func TestLossCompensationFillsLink(t *testing.T) {
	c := New(Config{Seed: 21})
	l := newLink(c, 10, 200*time.Millisecond, 0.10, 21)
	l.run(40 * time.Second)
	capacity := 10e6 / 8
	g := l.goodput(10, 40)
	st := c.State()
	t.Logf("goodput %.2f Mbit/s = %.1f %% of C; baseline %.3f, mode %v", g*8/1e6, 100*g/capacity, st.LossBaseline, st.Mode)
	if g < 0.93*capacity {
		t.Errorf("goodput %.2f Mbit/s, want at least 93 %% of the 10 Mbit/s link", g*8/1e6)
	}
}

// TestSimClean checks full use of a clean bottleneck with a small queue,
// FEC staying off, and that the minimum RTT never goes stale (ProbeRTT
// measures it again when no sample shows it for ten seconds; a flow that
// keeps no queue sees it all the time) at little cost.
func TestSimClean(t *testing.T) {
	c := New(Config{Seed: 8})
	l := newLink(c, 100, rtt40, 0, 9)
	l.measureFrom = 3 * time.Second
	var stalest time.Duration
	for s := 1; s <= 25; s++ {
		for ms := 0; ms < 1000; ms += 50 {
			l.run(time.Duration(s-1)*time.Second + time.Duration(ms)*time.Millisecond)
			stalest = max(stalest, c.last-c.minRTTStamp)
		}
	}
	st := c.State()
	mean := l.queueDelay / time.Duration(max(l.queueSamples, 1))
	t.Logf("clean 100 Mbit/s 40 ms: goodput %.2f Mbit/s, queueing delay mean %v max %v", l.goodput(3, 24)*8/1e6, mean, l.maxQueue)
	if g := l.goodput(3, 24); g < 0.9*mbit100 {
		t.Errorf("goodput %.2f Mbit/s, want at least 90 Mbit/s; state %+v", g*8/1e6, st)
	}
	if mean > rtt40/10 || l.maxQueue > rtt40/2 {
		t.Errorf("queueing delay mean %v, max %v: want at most %v and %v", mean, l.maxQueue, rtt40/10, rtt40/2)
	}
	// One change: the start-up precaution ends when the flow shows bulk.
	if d, p := c.FEC(); d != 0 || p != 0 || st.FECChanges > 1 {
		t.Errorf("FEC %d+%d (%d changes) on a clean path, want off", d, p, st.FECChanges)
	}
	if stalest > minRTTWindow+time.Second {
		t.Errorf("the minimum RTT went %v without a sample or a ProbeRTT, want at most %v", stalest, minRTTWindow+time.Second)
	}
	if st.CongestionEvents > 2 {
		t.Errorf("%d congestion events on a clean path", st.CongestionEvents)
	}
}

// TestArbitraryEvents feeds random events, including out-of-order times,
// zero and negative values, and checks that the outputs stay in bounds.
func TestArbitraryEvents(t *testing.T) {
	r := rng(12345)
	for run := range 20 {
		c := New(Config{Seed: uint64(run), RateLimit: int64(run%3) * 1e6})
		now := time.Duration(0)
		for range 20000 {
			now += time.Duration((r.float() - 0.05) * float64(5*time.Millisecond)) // sometimes backwards
			n := int(r.float()*3000) - 100
			rtt := time.Duration((r.float() - 0.1) * float64(300*time.Millisecond))
			switch int(r.float() * 5) {
			case 0:
				c.OnSend(now, n, n*int(r.float()*100))
			case 1:
				c.OnAck(now, n, rtt, r.float() < 0.3)
			case 2:
				c.OnLoss(now, n/300)
			case 3:
				c.OnReceive(now, n)
			default:
				c.OnFECStats(now, n/10, n/100)
			}
			if s := c.SendWindow(DefaultMSS); s < 4 || s > DefaultMaxWindow {
				t.Fatalf("run %d: send window %d", run, s)
			}
			if w := c.ReceiveWindow(DefaultMSS); w < DefaultMinReceiveWindow || w > DefaultMaxWindow {
				t.Fatalf("run %d: receive window %d", run, w)
			}
			if p := c.PacingRate(); p <= 0 {
				t.Fatalf("run %d: pacing rate %d, state %+v pacing %v btlbw %v", run, p, c.State(), c.pacing, c.btlbw)
			}
			if lim := c.cfg.RateLimit; lim > 0 && c.WirePacingRate() > lim {
				t.Fatalf("run %d: wire pacing rate %d above the limit %d", run, c.WirePacingRate(), lim)
			}
			if d, p := c.FEC(); (d == 0) != (p == 0) || d > DefaultMaxDataShards || p > DefaultMaxParityShards {
				t.Fatalf("run %d: FEC %d+%d", run, d, p)
			}
		}
	}
}

// TestUnevenLossKeepsRate checks that a steady loss rate whose
// measurement comes unevenly (windows of 2 % and 9 % in turn, as confirmed
// losses arrive in bunches when holes fill) is a baseline, not a series of
// spikes: the baseline must follow the windows above it too.
func TestUnevenLossKeepsRate(t *testing.T) {
	c := New(Config{Seed: 13})
	c.PinFEC(0, 0) // every loss reaches the controller
	o := newOpenLoop(c, pps100, rtt40, 0, 14)
	o.loss = func(at time.Duration) float64 {
		if at/(150*time.Millisecond)%2 == 0 {
			return 0.09
		}
		return 0.02
	}
	o.run(30 * time.Second)
	st := c.State()
	if st.CongestionEvents != 0 {
		t.Errorf("%d congestion events at a loss rate alternating between 2 and 9 %% (baseline %.3f)", st.CongestionEvents, st.LossBaseline)
	}
	if st.LossBaseline < 0.03 {
		t.Errorf("loss baseline %.3f at an average loss of 5.5 %%, want at least 0.03", st.LossBaseline)
	}
}

// TestQueueBudgetCoversALostAck checks that the pacing queue's budget lasts
// two ACK holds where the retransmission timer's margin allows (a lost
// datagram of ACKs doubles the wait for the next), and one where it does
// not: 70 ms on a 200 ms path behind a peer that acknowledges every 30 ms,
// whose margin is 80 ms; 40 ms, the margin, on a 40 ms path.
func TestQueueBudgetCoversALostAck(t *testing.T) {
	for _, tc := range []struct {
		rtt  time.Duration
		want time.Duration
	}{{200 * time.Millisecond, 70 * time.Millisecond}, {rtt40, 40 * time.Millisecond}} {
		c := New(Config{Seed: 5, AckDelay: 30 * time.Millisecond})
		l := newLink(c, 10, tc.rtt, 0.05, 6).withPeerFlush(30*time.Millisecond, 0)
		l.run(10 * time.Second)
		if h := c.State().AckHold; h != 30*time.Millisecond {
			t.Fatalf("%v: AckHold %v behind a peer that acknowledges every 30 ms, want 30ms", tc.rtt, h)
		}
		want := float64(c.PacingRate()) * tc.want.Seconds()
		if got := c.QueueBudget(); math.Abs(float64(got)-want) > float64(DefaultMSS) {
			t.Errorf("%v: QueueBudget %d bytes, want the pacing rate (%d B/s) times %v (%.0f); margin %v",
				tc.rtt, got, c.PacingRate(), tc.want, want, c.TimeoutMargin())
		}
	}
}

// TestPacedSendWindowBoundsPacingQueue checks that KCP's send window lets
// into the pacing queue no more than the queue sends in the peer's ACK
// delay and queueTime, however much room the inflight limit leaves: a
// window that opened by hundreds of packets at once (a filled hole) made
// KCP time out packets that were still waiting in the queue.
func TestPacedSendWindowBoundsPacingQueue(t *testing.T) {
	c := New(Config{Seed: 5, AckDelay: 30 * time.Millisecond})
	l := newLink(c, 100, rtt40, 0.01, 6).withPeerFlush(30*time.Millisecond, 0)
	l.run(5 * time.Second)
	if h := c.State().AckHold; h != 30*time.Millisecond {
		t.Fatalf("AckHold %v behind a peer that acknowledges every 30 ms, want 30ms", h)
	}
	budget := c.QueueBudget()
	wantBudget := float64(c.PacingRate()) * (30*time.Millisecond + queueTime).Seconds()
	if math.Abs(float64(budget)-wantBudget) > float64(DefaultMSS) {
		t.Fatalf("QueueBudget %d bytes, want the pacing rate (%d B/s) times 40 ms (%.0f)", budget, c.PacingRate(), wantBudget)
	}
	if limit := c.InflightLimit(); budget >= limit {
		t.Fatalf("QueueBudget %d not below InflightLimit %d: the test shows nothing", budget, limit)
	}
	const span = 50
	budgetPkts := int((budget + DefaultMSS - 1) / DefaultMSS)
	cases := []struct {
		name             string
		inflight, queued int64
		want             int
	}{
		// Nothing out: the inflight limit would allow a whole window; the
		// queue allows its budget.
		{"empty", 0, 0, span + budgetPkts},
		// Half the budget queued: half of it is left.
		{"half queued", 0, budget / 2, span + int((budget-budget/2+DefaultMSS-1)/DefaultMSS)},
		// The budget queued: no new packet until some leave.
		{"queue full", 0, budget, span},
		// The inflight limit reached with an empty queue: no new packet.
		{"inflight full", c.InflightLimit(), 0, span},
	}
	for _, tc := range cases {
		if got := c.PacedSendWindow(DefaultMSS, span, tc.inflight, tc.queued); got != min(tc.want, c.SendWindow(DefaultMSS)) {
			t.Errorf("%s: PacedSendWindow = %d, want %d", tc.name, got, tc.want)
		}
	}
	c.PinWindow(100, 200)
	if got := c.PacedSendWindow(DefaultMSS, span, 0, budget); got != 100 {
		t.Errorf("pinned: PacedSendWindow = %d, want the pinned 100", got)
	}
}

// TestTimeoutMargin checks the margin KCP's timer gets over its RTT: the
// peer's ACK delay before the first RTT sample, then a quarter of the
// minimum RTT more.
func TestTimeoutMargin(t *testing.T) {
	c := New(Config{Seed: 1, AckDelay: 30 * time.Millisecond})
	if m := c.TimeoutMargin(); m != 30*time.Millisecond {
		t.Errorf("margin before any sample %v, want the ACK delay 30ms", m)
	}
	c.OnSend(0, DefaultMSS, DefaultMSS)
	c.OnAck(100*time.Millisecond, DefaultMSS, 100*time.Millisecond, true)
	if m := c.TimeoutMargin(); m != 130*time.Millisecond {
		t.Errorf("margin in Startup at a 100 ms minimum RTT %v, want 100 ms + 30 ms", m)
	}
	c = New(Config{Seed: 1, AckDelay: 30 * time.Millisecond})
	l := newLink(c, 100, rtt40, 0, 1)
	for step := 1; step <= 300 && c.State().Mode != ModeProbeBW; step++ {
		l.run(time.Duration(step) * 10 * time.Millisecond)
	}
	if st := c.State(); st.Mode != ModeProbeBW {
		t.Fatalf("mode %v after 3 s on a clean path, want probe-bw", st.Mode)
	}
	if m, want := c.TimeoutMargin(), c.State().MinRTT/4+30*time.Millisecond; m != want {
		t.Errorf("margin in ProbeBW %v, want a quarter of the minimum RTT and the ACK delay, %v", m, want)
	}
}

// TestAckHoldFollowsPeerFlushes drives a bulk flow behind a peer that
// acknowledges as kcp-go does: on its 30 ms flush timer, and at once when
// 55 ACKs wait. At 100 Mbit/s 55 packets come every 6 ms, so the peer holds
// an ACK for 6 ms, not 30: the windows must cover that hold, not the flush
// interval, or they keep most of the interval queued at the bottleneck (a
// message beside a bulk transfer waited that long). At 10 Mbit/s 55
// packets take 60 ms, and the timer's 30 ms is the hold.
func TestAckHoldFollowsPeerFlushes(t *testing.T) {
	const flush, batch = 30 * time.Millisecond, 55
	for _, tc := range []struct {
		mbps           float64
		holdLo, holdHi time.Duration
		maxQueue       time.Duration // the mean queueing delay at the bottleneck
	}{
		{100, 4 * time.Millisecond, 12 * time.Millisecond, 12 * time.Millisecond},
		{10, flush, flush, 40 * time.Millisecond},
	} {
		c := New(Config{Seed: 3, AckDelay: flush})
		l := newLink(c, tc.mbps, rtt40, 0, 4).withPeerFlush(flush, batch)
		l.measureFrom = 5 * time.Second
		l.run(15 * time.Second)
		st := c.State()
		if st.AckHold < tc.holdLo || st.AckHold > tc.holdHi {
			t.Errorf("%v Mbit/s: AckHold %v, want %v to %v", tc.mbps, st.AckHold, tc.holdLo, tc.holdHi)
		}
		rate := tc.mbps * 1e6 / 8
		if g := l.goodput(5, 15); g < 0.9*rate {
			t.Errorf("%v Mbit/s: goodput %.0f B/s, want at least 90 %% of the link's %.0f", tc.mbps, g, rate)
		}
		if q := l.queueDelay / time.Duration(max(l.queueSamples, 1)); q > tc.maxQueue {
			t.Errorf("%v Mbit/s: mean queueing delay %v at the bottleneck, want at most %v", tc.mbps, q, tc.maxQueue)
		}
		t.Logf("%v Mbit/s: AckHold %v, inflight limit %d, goodput %.1f Mbit/s, queue mean %v max %v",
			tc.mbps, st.AckHold, st.InflightLimit, l.goodput(5, 15)*8/1e6, l.queueDelay/time.Duration(max(l.queueSamples, 1)), l.maxQueue)
	}
}

// TestProbeEndsWithItsInflight checks that ProbeBW's probing phase ends
// once the probe's share more is in flight, when the peer holds its ACKs
// for half the RTT: a target that counted the ACK hold the gain's times
// over was out of the inflight limit's reach, and each probe lasted three
// phases (136 ms here), queueing three times its share.
func TestProbeEndsWithItsInflight(t *testing.T) {
	c := New(Config{Seed: 3, AckDelay: 30 * time.Millisecond})
	l := newLink(c, 10, rtt40, 0, 4).withPeerFlush(20*time.Millisecond, 0)
	longest, st := longestProbe(t, c, l)
	if longest > 2*st.MinRTT {
		t.Errorf("a probe lasted %v, want at most two minimum RTTs (%v)", longest, 2*st.MinRTT)
	}
}

// longestProbe runs l, driven by c, from 1 s to 10 s, and returns the
// longest of the probing phases (gain above 1) that began after 3 s, and the
// controller's state at the end. It fails the test if there was none.
func longestProbe(t *testing.T, c *Controller, l *link) (time.Duration, State) {
	t.Helper()
	var start, longest time.Duration
	probing, probes := false, 0
	for at := time.Second; at < 10*time.Second; at += time.Millisecond {
		l.run(at)
		st := c.State()
		now := st.Mode == ModeProbeBW && st.PacingGain > 1
		if now && !probing {
			start = at
		}
		if !now && probing && start > 3*time.Second {
			longest = max(longest, at-start)
			probes++
		}
		probing = now
	}
	st := c.State()
	t.Logf("%d probes, the longest %v; minimum RTT %v, ACK hold %v", probes, longest, st.MinRTT, st.AckHold)
	if probes == 0 {
		t.Fatalf("no probe from 3 s to 10 s: %+v", st)
	}
	return longest, st
}

// TestProbeEndsAfterItsPhase checks that a probe that sent its gain's share
// of data over a phase ends there when the sender, as the packet layer
// does, stops short of InflightLimit (withMargin), so that inflight never
// reaches the probe's target: such probes ran for three phases and queued
// three times what they should. The peers ACK every 2 ms, every 20 ms, or
// every 5 ms with two flushes in a row of every twenty lost, which makes
// the ACK hold the windows cover three times the usual time between ACKs.
func TestProbeEndsAfterItsPhase(t *testing.T) {
	for _, tc := range []struct {
		name              string
		flush             time.Duration
		lostEvery, lostIn int
	}{
		{"ACKs every 2 ms", 2 * time.Millisecond, 0, 0},
		{"ACKs every 20 ms", 20 * time.Millisecond, 0, 0},
		{"lost ACK datagrams", 5 * time.Millisecond, 20, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(Config{Seed: 3, AckDelay: 30 * time.Millisecond})
			l := newLink(c, 10, rtt40, 0, 4).withPeerFlush(tc.flush, 0).withLostFlushes(tc.lostEvery, tc.lostIn).withMargin()
			longest, st := longestProbe(t, c, l)
			// A phase is the minimum RTT; the probe ends with the first
			// ACK after it, once its pacing caught up.
			if longest > st.MinRTT*3/2 {
				t.Errorf("a probe lasted %v, want at most 1.5 minimum RTTs (%v)", longest, st.MinRTT*3/2)
			}
		})
	}
}

// TestCruiseDrainsStandingQueue checks that ProbeBW's cruising phases pace
// below the bandwidth while the round trips show a standing queue beyond
// queueTarget, and at it again once the queue is gone, with no congestion
// event either way (the queue is too small to count as one).
func TestCruiseDrainsStandingQueue(t *testing.T) {
	c := New(Config{Seed: 5})
	o := newOpenLoop(c, 10e6/8/DefaultMSS, rtt40, 0, 6)
	o.run(5 * time.Second)
	const queue = 8 * time.Millisecond
	o.rtt = func(at time.Duration) time.Duration {
		if at >= 5*time.Second && at < 7*time.Second {
			return rtt40 + queue
		}
		return rtt40
	}
	// cruising returns the range of the pacing gains of the cruising
	// phases seen from from to to.
	cruising := func(from, to time.Duration) (lo, hi float64) {
		lo, hi = 2, 0
		for at := from; at < to; at += time.Millisecond {
			o.run(at)
			st := c.State()
			if st.Mode != ModeProbeBW || st.PacingGain >= probeGain || st.PacingGain <= 0.75 {
				continue // not cruising
			}
			lo, hi = min(lo, st.PacingGain), max(hi, st.PacingGain)
		}
		return lo, hi
	}
	// 8 ms of queue is 3 ms beyond the target of 5: drained over two
	// minimum RTTs, a gain of 1 - 3/80.
	want := 1 - float64(queue-5*time.Millisecond)/float64(2*rtt40)
	if lo, hi := cruising(5500*time.Millisecond, 7*time.Second); math.Abs(lo-want) > 0.01 || math.Abs(hi-want) > 0.01 {
		t.Errorf("with a standing queue of %v, cruising gains %.3f to %.3f, want %.3f", queue, lo, hi, want)
	}
	if lo, hi := cruising(7500*time.Millisecond, 9*time.Second); lo != 1 || hi != 1 {
		t.Errorf("without a queue, cruising gains %.3f to %.3f, want 1", lo, hi)
	}
	if st := c.State(); st.CongestionEvents != 0 {
		t.Errorf("%d congestion events, want none", st.CongestionEvents)
	}
}

// TestFECChangeKeepsWireRate checks that the rate paced onto the wire
// (data and parity) does not jump when FEC turns on: the bandwidth
// estimate, counted in data bytes, is rescaled by the parity's share, and
// so are the rate samples of the packets sent before the change. Without
// it the wire rate rose by the parity's share (1.22 times here) for ten
// round trips.
func TestFECChangeKeepsWireRate(t *testing.T) {
	// A largest window of 64 packets is too small to cover the RTT and
	// a re-send, so the flow, which fills the link, still gets parity
	// (linkBound).
	c := New(Config{Seed: 9, MaxWindow: 64})
	l := newLink(c, 10, rtt40, 0.05, 10)
	// base is the wire pacing rate without the phase's gain.
	base := func(s State) float64 { return float64(s.WirePacingRate) / s.PacingGain }
	var prev State
	for at := time.Second; at < 15*time.Second; at += time.Millisecond {
		l.run(at)
		st := c.State()
		if prev.Mode != ModeProbeBW || prev.ParityShards != 0 || st.ParityShards == 0 {
			prev = st
			continue
		}
		highest := base(st)
		for end := at + 3*rtt40; at < end; at += time.Millisecond {
			l.run(at)
			highest = max(highest, base(c.State()))
		}
		t.Logf("FEC %d+%d at %v: wire pacing rate / gain %.0f B/s before, %.0f after, at most %.0f over three RTTs",
			st.DataShards, st.ParityShards, at, base(prev), base(st), highest)
		if r := base(st) / base(prev); r < 0.97 || r > 1.03 {
			t.Errorf("the wire pacing rate moved by %.2f times when FEC turned on, want none", r)
		}
		if r := highest / base(prev); r > 1.1 {
			t.Errorf("the wire pacing rate rose to %.2f times the rate before FEC within three RTTs", r)
		}
		return
	}
	t.Fatalf("FEC did not turn on in ProbeBW at 5%% loss: %+v", c.State())
}
