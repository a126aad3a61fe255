package adapt

import (
	"math"
	"testing"
	"time"
)

func TestResidualLoss(t *testing.T) {
	for _, tc := range []struct {
		p    float64
		d, m int
		want float64
	}{
		{0.05, 2, 1, 0.05 * (1 - 0.95*0.95)},
		{0.05, 3, 1, 0.05 * (1 - math.Pow(0.95, 3))},
		{0.1, 1, 1, 0.1 * 0.1},
		{0, 10, 3, 0},
		{1, 10, 3, 1},
		// 20+3 at 5 %: 5 % times P(at least 3 of 22 lost).
		{0.05, 20, 3, 0.05 * (1 - math.Pow(0.95, 22) - 22*0.05*math.Pow(0.95, 21) - 231*0.0025*math.Pow(0.95, 20))},
	} {
		if got := residualLoss(tc.p, tc.d, tc.m); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("residualLoss(%g, %d, %d) = %g, want %g", tc.p, tc.d, tc.m, got, tc.want)
		}
	}
	if p := invertResidual(residualLoss(0.07, 10, 3), 10, 3); math.Abs(p-0.07) > 1e-6 {
		t.Errorf("invertResidual gives %g, want 0.07", p)
	}
}

// TestChooseShape checks the shapes for a game-like flow and bulk.
func TestChooseShape(t *testing.T) {
	cfg := Config{}
	cfg.fill()
	f := fecState{cfg: &cfg}
	for _, tc := range []struct {
		p, pps       float64
		rtt          time.Duration
		minD, maxD   int
		minM, maxM   int
		wantOffShape bool
	}{
		{p: 0, pps: 50, rtt: rtt40, wantOffShape: true},
		{p: 0.005, pps: 9000, rtt: rtt40, wantOffShape: true},
		{p: 0.05, pps: 50, rtt: rtt40, minD: 2, maxD: 3, minM: 1, maxM: 2},
		{p: 0.05, pps: 9000, rtt: rtt40, minD: 15, maxD: 20, minM: 2, maxM: 4},
		{p: 0.1, pps: 9000, rtt: 100 * time.Millisecond, minD: 20, maxD: 20, minM: 4, maxM: 7},
		// Bulk on a path shorter than bulkFECMinRTT: re-sends cost less.
		{p: 0.1, pps: 9000, rtt: 20 * time.Millisecond, wantOffShape: true},
		{p: 0.05, pps: 900, rtt: 20 * time.Millisecond, wantOffShape: true},
	} {
		f.pktRate = tc.pps
		s := f.choose(tc.p, tc.rtt)
		if tc.wantOffShape {
			if s.parity != 0 {
				t.Errorf("p %g, %g pkt/s: shape %d+%d, want off", tc.p, tc.pps, s.data, s.parity)
			}
			continue
		}
		if s.data < tc.minD || s.data > tc.maxD || s.parity < tc.minM || s.parity > tc.maxM {
			t.Errorf("p %g, %g pkt/s, rtt %v: shape %d+%d, want %d..%d + %d..%d", tc.p, tc.pps, tc.rtt, s.data, s.parity, tc.minD, tc.maxD, tc.minM, tc.maxM)
		}
		if r := residualLoss(tc.p, s.data, s.parity); r > cfg.ResidualLoss {
			t.Errorf("p %g: shape %d+%d leaves %g residual loss, above the %g target", tc.p, s.data, s.parity, r, cfg.ResidualLoss)
		}
		// The group fills within a quarter of the RTT, unless at the
		// smallest size.
		if fill := time.Duration(float64(s.data) / tc.pps * float64(time.Second)); s.data > cfg.MinDataShards && fill > tc.rtt/4 {
			t.Errorf("p %g, %g pkt/s: a %d-packet group fills in %v, more than a quarter of %v", tc.p, tc.pps, s.data, fill, tc.rtt)
		}
	}
}

// TestShortPathFEC checks bulkFECMinRTT: on a 20 ms path a bulk flow sends
// no FEC at 5 or 10 % loss, while a thin flow still gets its copies.
func TestShortPathFEC(t *testing.T) {
	cfg := Config{}
	cfg.fill()
	bulk := fecState{cfg: &cfg, pktRate: 9000}
	thin := fecState{cfg: &cfg, pktRate: 50, thin: true}
	for _, p := range []float64{0.05, 0.1} {
		if s := bulk.choose(p, 20*time.Millisecond); s.parity != 0 {
			t.Errorf("bulk, loss %g, 20 ms: shape %d+%d, want none", p, s.data, s.parity)
		}
		if s := bulk.choose(p, bulkFECMinRTT); s.parity == 0 {
			t.Errorf("bulk, loss %g, %v: no FEC, want a shape", p, bulkFECMinRTT)
		}
		if s := thin.choose(p, 20*time.Millisecond); s.data != 1 || s.parity == 0 {
			t.Errorf("thin, loss %g, 20 ms: shape %d+%d, want copies (1+m)", p, s.data, s.parity)
		}
	}
}

// fecRun drives a controller with an open-loop flow of pps packets per
// second over a 40 ms path, its loss given per second by loss, the peer's
// FEC statistics included when incoming is set, and calls check each
// second.
func fecRun(c *Controller, pps float64, seconds int, incoming bool, loss func(s int) float64, check func(s int)) {
	o := newOpenLoop(c, pps, rtt40, 0, 11)
	o.incoming = incoming
	o.loss = func(t time.Duration) float64 { return loss(int(t / time.Second)) }
	for s := 1; s <= seconds; s++ {
		o.run(time.Duration(s) * time.Second)
		check(s)
	}
}

// shortWindows is a Config whose largest window, four packets, covers no
// re-sends at the rates of the open-loop tests, so that parity pays even
// for a flow that fills the link (fecState.linkBound). The tests that use
// it check how the shape follows the loss; with the default windows their
// flows, whose packets all leave with a backlog, would send no FEC at all
// (TestLinkBoundFlowSendsNoFEC).
func shortWindows(seed uint64) Config { return Config{Seed: seed, MaxWindow: 4} }

func TestFECOffOnCleanPath(t *testing.T) {
	for _, pps := range []float64{50, pps100} {
		c := New(Config{Seed: 1})
		fecRun(c, pps, 60, true, func(int) float64 { return 0 }, func(s int) {
			if d, p := c.FEC(); d != 0 || p != 0 {
				t.Fatalf("%g pkt/s clean: FEC %d+%d at %d s, want off", pps, d, p, s)
			}
		})
	}
}

func TestFECGameFlow(t *testing.T) {
	c := New(shortWindows(2))
	onAt, offAt := 0, 0
	fecRun(c, 50, 90, true, func(s int) float64 {
		if s < 40 {
			return 0.05
		}
		return 0
	}, func(s int) {
		d, p := c.FEC()
		if onAt == 0 && p > 0 {
			onAt = s
			if d < 2 || d > 3 || p > 2 {
				t.Errorf("FEC %d+%d at 5%% loss and 50 pkt/s, want a small group (2 or 3 data, 1 or 2 parity)", d, p)
			}
		}
		if onAt != 0 && offAt == 0 && p == 0 {
			offAt = s
		}
	})
	t.Logf("on at %d s, off at %d s, state %+v", onAt, offAt, c.State())
	if onAt == 0 || onAt > 15 {
		t.Errorf("FEC on after %d s of 5%% loss (0: never), want within 15 s", onAt)
	}
	// Off after the 10 s of clean evidence (the estimate first has to fall).
	if offAt == 0 || offAt < 50 || offAt > 80 {
		t.Errorf("FEC off at %d s after the loss stopped at 40 s (0: never), want between 50 and 80 s", offAt)
	}
	if st := c.State(); st.FECChanges > 3 {
		t.Errorf("%d FEC changes, want on, maybe one adjustment, off", st.FECChanges)
	}
}

// TestFECWithoutPeerStats checks the FEC choice when the peer sends no
// FEC-framed packets to measure: our own losses turn it on, the losses it
// leaves keep it on (at bulk rates, where there are enough of them), and
// it turns off, then on again when needed, at low rates.
func TestFECWithoutPeerStats(t *testing.T) {
	for _, tc := range []struct {
		pps    float64
		minOn  float64 // share of the lossy time with FEC on
		maxChg uint64
	}{{50, 0.8, 9}, {3000, 0.95, 5}} { // one change ends the start-up precaution
		c := New(shortWindows(6))
		on, offAt := 0, 0
		fecRun(c, tc.pps, 270, false, func(s int) float64 {
			if s < 180 {
				return 0.05
			}
			return 0
		}, func(s int) {
			_, p := c.FEC()
			if s < 180 && p > 0 {
				on++
			}
			if s >= 180 && p == 0 && offAt == 0 {
				offAt = s
			}
		})
		st := c.State()
		t.Logf("%g pkt/s: FEC on %d of 180 lossy seconds, off at %d s, state %+v", tc.pps, on, offAt, st)
		if float64(on) < tc.minOn*180 {
			t.Errorf("%g pkt/s: FEC on %d of 180 s at 5%% loss, want at least %.0f%%", tc.pps, on, tc.minOn*100)
		}
		if st.FECChanges > tc.maxChg {
			t.Errorf("%g pkt/s: %d FEC changes, want at most %d", tc.pps, st.FECChanges, tc.maxChg)
		}
		if offAt == 0 {
			t.Errorf("%g pkt/s: FEC still on 90 s after the loss stopped", tc.pps)
		}
	}
}

func TestFECBulkFlow(t *testing.T) {
	c := New(shortWindows(3))
	fecRun(c, pps100, 20, true, func(int) float64 { return 0.05 }, func(int) {})
	d, p := c.FEC()
	t.Logf("bulk at 5%%: %+v", c.State())
	if d < 10 || p < 1 {
		t.Fatalf("FEC %d+%d for bulk at 5%% loss, want at least 10 data shards", d, p)
	}
	if r := residualLoss(0.05, d, p); r > DefaultResidualLoss {
		t.Errorf("FEC %d+%d leaves %g residual loss at 5%%", d, p, r)
	}
	if o := float64(p) / float64(d+p); o > 0.2 {
		t.Errorf("FEC %d+%d spends %.0f%% on parity at 5%% loss", d, p, o*100)
	}
}

// TestFECNoFlap feeds noisy loss (random at 5 %, and alternating between
// 0 and 10 % every second) and checks that the shape settles.
func TestFECNoFlap(t *testing.T) {
	for name, loss := range map[string]func(int) float64{
		"random-5%":    func(int) float64 { return 0.05 },
		"alternating":  func(s int) float64 { return 0.1 * float64(s%2) },
		"random-1.5%":  func(int) float64 { return 0.015 },
		"bursts-of-3s": func(s int) float64 { return 0.15 * float64(s/3%2) },
	} {
		for _, pps := range []float64{50, 2000} {
			c := New(shortWindows(4))
			fecRun(c, pps, 180, true, loss, func(int) {})
			st := c.State()
			t.Logf("%s at %g pkt/s: %d changes, FEC %d+%d, loss %.3f", name, pps, st.FECChanges, st.DataShards, st.ParityShards, st.Loss)
			if st.FECChanges > 3 {
				t.Errorf("%s at %g pkt/s: %d FEC changes in 180 s, want at most 3 (state %+v)", name, pps, st.FECChanges, st)
			}
		}
	}
}

func TestFECPinned(t *testing.T) {
	c := New(Config{Seed: 5})
	c.PinFEC(10, 3)
	fecRun(c, 50, 10, true, func(int) float64 { return 0 }, func(int) {})
	if d, p := c.FEC(); d != 10 || p != 3 || !c.State().FECPinned {
		t.Fatalf("pinned FEC is %d+%d, want 10+3", d, p)
	}
	c.UnpinFEC()
	fecRun(c, 50, 30, true, func(int) float64 { return 0 }, func(int) {})
	if d, p := c.FEC(); d != 0 || p != 0 {
		t.Errorf("FEC %d+%d 30 s after unpinning on a clean path, want off", d, p)
	}
	c.PinFEC(0, 0)
	fecRun(c, 50, 30, true, func(int) float64 { return 0.1 }, func(int) {})
	if d, p := c.FEC(); d != 0 || p != 0 {
		t.Errorf("FEC %d+%d while pinned off", d, p)
	}
}

// gameFlow drives a controller with a game's traffic: one small packet
// every interval, sent with nothing queued behind it, acknowledged an RTT
// later (app-limited RTT samples) unless lost; a packet is lost with
// probability loss(t) and, under a shape of d data and m parity shards,
// recovered when no more than m of its group's d+m packets were lost. When
// peerFEC is set the peer sends the same traffic FEC-framed, and the
// controller learns its raw loss (OnFECStats) as the packet layer's
// decoder reports it. With bulk set the flow sends pps100 full packets
// with a backlog instead.
type gameFlow struct {
	c        *Controller
	interval time.Duration
	rtt      time.Duration
	loss     func(t time.Duration) float64
	peerFEC  bool
	bulk     bool
	idle     func(t time.Duration) bool // no packet is sent while true
	r        rng

	t                time.Duration
	acks             []gameAck
	inSeen, inMissed int
	unrecovered      int // packets lost and not recovered by FEC
	sent             int
}

type gameAck struct {
	at, sent time.Duration
	lost     bool
}

func newGameFlow(c *Controller, loss float64, peerFEC bool, seed uint64) *gameFlow {
	return &gameFlow{c: c, interval: 20 * time.Millisecond, rtt: rtt40, peerFEC: peerFEC, r: rng(seed | 1),
		loss: func(time.Duration) float64 { return loss }}
}

// lose reports whether a packet sent now is lost after recovery by shape
// d+m.
func (g *gameFlow) lose(now time.Duration, d, m int) bool {
	p := g.loss(now)
	if g.r.float() >= p {
		return false
	}
	if d == 0 {
		return true
	}
	lost := 1
	for range d + m - 1 {
		if g.r.float() < p {
			lost++
		}
	}
	return lost > m
}

// run feeds events until end.
func (g *gameFlow) run(end time.Duration) {
	for g.t < end {
		now := g.t
		for len(g.acks) > 0 && g.acks[0].at <= now {
			a := g.acks[0]
			g.acks = g.acks[1:]
			if a.lost {
				g.c.OnLoss(a.at, 1)
			} else {
				g.c.OnAck(a.at, 100, a.at-a.sent, !g.bulk)
			}
		}
		gap, size := g.interval, 100
		if g.bulk {
			gap, size = time.Duration(float64(time.Second)/pps100), DefaultMSS
		}
		g.t += gap
		if g.idle != nil && g.idle(now) {
			continue
		}
		d, m := g.c.FEC()
		lost := g.lose(now, d, m)
		if lost {
			g.unrecovered++
		}
		g.sent++
		g.c.OnSend(now, size, size)
		// A lost packet shows when the next ones are acknowledged.
		at := now + g.rtt
		if lost {
			at += 2 * g.interval
		}
		g.acks = append(g.acks, gameAck{at: at, sent: now, lost: lost})
		if g.peerFEC {
			if g.r.float() < g.loss(now) {
				g.inMissed++
			} else {
				g.inSeen++
			}
			if g.inSeen+g.inMissed >= 5 {
				g.c.OnFECStats(now, g.inSeen, g.inMissed)
				g.inSeen, g.inMissed = 0, 0
			}
		}
	}
}

// TestChooseThinShape checks the shapes for a thin flow: one data shard and
// the fewest parity shards that bring the residual loss under
// ThinResidualLoss, and none at a loss already below it.
func TestChooseThinShape(t *testing.T) {
	cfg := Config{}
	cfg.fill()
	f := fecState{cfg: &cfg, thin: true, pktRate: 50}
	for _, tc := range []struct {
		p     float64
		wantM int
	}{{0.00005, 0}, {0.002, 1}, {0.01, 2}, {0.03, 2}, {0.05, 3}, {0.12, 4}, {0.2, 5}} {
		s := f.choose(tc.p, rtt40)
		if s.parity != tc.wantM || (s.parity > 0 && s.data != 1) {
			t.Errorf("thin, p %g: shape %d+%d, want 1+%d", tc.p, s.data, s.parity, tc.wantM)
		}
		if s.parity > 0 && residualLoss(tc.p, 1, s.parity) > cfg.ThinResidualLoss {
			t.Errorf("thin, p %g: 1+%d leaves %g", tc.p, s.parity, residualLoss(tc.p, 1, s.parity))
		}
	}
	// The precaution: DefaultThinPriorLoss asks for 1+3.
	if s := f.choose(DefaultThinPriorLoss, rtt40); s.data != 1 || s.parity != 3 {
		t.Errorf("prior shape %d+%d, want 1+3", s.data, s.parity)
	}
}

// TestThinFlowProtectedFromStart checks that a game's flow at 5 % loss has
// FEC from its first packet, one data shard per group, and loses almost
// nothing, while the peer's FEC statistics confirm the loss.
func TestThinFlowProtectedFromStart(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		c := New(Config{Seed: seed})
		if d, p := c.FEC(); d != 1 || p != 3 {
			t.Fatalf("new controller: FEC %d+%d, want the thin precaution 1+3", d, p)
		}
		g := newGameFlow(c, 0.05, true, seed)
		for s := 1; s <= 60; s++ {
			g.run(time.Duration(s) * time.Second)
			d, p := c.FEC()
			if d != 1 || p < 3 {
				t.Fatalf("seed %d, %d s at 5 %% loss: FEC %d+%d, want 1+3 or more", seed, s, d, p)
			}
		}
		st := c.State()
		t.Logf("seed %d: %d of %d packets unrecovered; %+v", seed, g.unrecovered, g.sent, st)
		if g.unrecovered > 2 {
			t.Errorf("seed %d: %d packets of %d lost after FEC", seed, g.unrecovered, g.sent)
		}
		if st.FECChanges > 2 {
			t.Errorf("seed %d: %d FEC changes in 60 s at a steady 5 %% loss", seed, st.FECChanges)
		}
	}
}

// TestThinFlowCleanPath checks that a game's FEC turns off on a clean path,
// measured through the peer's FEC statistics, or, when the peer sends no
// FEC to measure, when the precaution expires; and that it comes back when
// loss starts.
func TestThinFlowCleanPath(t *testing.T) {
	for _, peerFEC := range []bool{true, false} {
		c := New(Config{Seed: 7})
		loss := 0.0
		g := newGameFlow(c, 0, peerFEC, 7)
		g.loss = func(time.Duration) float64 { return loss }
		offAt := 0
		for s := 1; s <= 30 && offAt == 0; s++ {
			g.run(time.Duration(s) * time.Second)
			if _, p := c.FEC(); p == 0 {
				offAt = s
			}
		}
		if offAt == 0 || offAt > 15 {
			t.Fatalf("peer FEC %v: a clean thin flow's FEC off at %d s (0: not in 30 s), want within 15 s", peerFEC, offAt)
		}
		loss = 0.05
		onAt := 0
		for s := 31; s <= 60 && onAt == 0; s++ {
			g.run(time.Duration(s) * time.Second)
			if d, p := c.FEC(); p > 0 {
				onAt = s
				if d != 1 {
					t.Errorf("peer FEC %v: FEC %d+%d for a thin flow, want one data shard", peerFEC, d, p)
				}
			}
		}
		t.Logf("peer FEC %v: off at %d s, on again at %d s; %+v", peerFEC, offAt, onAt, c.State())
		if onAt == 0 || onAt > 36 {
			t.Errorf("peer FEC %v: FEC on at %d s after loss started at 30 s (0: never), want within 6 s", peerFEC, onAt)
		}
	}
}

// TestBulkDropsThePrecaution checks that a bulk flow leaves the thin
// precaution within its first packets, and one that was thin (a game on a
// lossy path) regroups at once when it turns into bulk.
func TestBulkDropsThePrecaution(t *testing.T) {
	c := New(Config{Seed: 8})
	g := newGameFlow(c, 0, false, 8)
	g.bulk = true
	g.run(20 * time.Millisecond)
	if d, p := c.FEC(); d != 0 || p != 0 || c.State().FECChanges != 1 {
		t.Fatalf("bulk after 20 ms: FEC %d+%d (%d changes), want off after one change", d, p, c.State().FECChanges)
	}

	c = New(Config{Seed: 9})
	g = newGameFlow(c, 0.05, true, 9)
	g.run(10 * time.Second)
	if d, p := c.FEC(); d != 1 || p < 3 {
		t.Fatalf("game at 5 %%: FEC %d+%d, want 1+3", d, p)
	}
	g.bulk = true
	g.run(10*time.Second + 20*time.Millisecond)
	d, p := c.FEC()
	if d < DefaultMinDataShards || p == 0 {
		t.Fatalf("20 ms after the game turned into bulk: FEC %d+%d, want a bulk group", d, p)
	}
	if r := residualLoss(0.05, d, p); r > DefaultResidualLoss || float64(p)/float64(d) > 0.5 {
		t.Errorf("bulk at 5 %%: FEC %d+%d", d, p)
	}
}

// TestThinFlowIdle checks that a tick in which a session only received
// (it sent no data: the receiving end of a bulk transfer) ends the
// precaution, and that its next app-limited RTT sample (a message of its
// own) starts it again.
func TestThinFlowIdle(t *testing.T) {
	c := New(Config{Seed: 10})
	g := newGameFlow(c, 0, false, 10)
	g.run(time.Second)
	if _, p := c.FEC(); p == 0 {
		t.Fatal("FEC off while the game is active and its path unmeasured")
	}
	for now := time.Second + 50*time.Millisecond; now < 2*time.Second; now += time.Millisecond {
		c.OnReceive(now, DefaultMSS)
	}
	if _, p := c.FEC(); p != 0 {
		t.Fatal("FEC on after a second of receiving only")
	}
	g.t = 2 * time.Second
	g.run(2*time.Second + 100*time.Millisecond)
	if d, p := c.FEC(); d != 1 || p != 3 {
		t.Fatalf("FEC %d+%d after the game resumed, want the precaution 1+3", d, p)
	}
}

// TestBulkLullKeepsShape checks that a bulk flow's lull (app-limited and
// slow for less than thinTicks ticks) keeps its bulk shape, while a flow
// that turns into a game for good gets groups of one data shard.
func TestBulkLullKeepsShape(t *testing.T) {
	c := New(shortWindows(11))
	g := newGameFlow(c, 0.05, false, 11)
	g.bulk = true
	g.run(15 * time.Second)
	d, p := c.FEC()
	if d < DefaultMinDataShards || p == 0 {
		t.Fatalf("bulk at 5 %% for 15 s: FEC %d+%d, want a bulk group", d, p)
	}
	g.bulk = false
	g.run(15*time.Second + 600*time.Millisecond)
	if d2, p2 := c.FEC(); d2 != d || p2 != p {
		t.Fatalf("a 0.6 s lull changed the bulk shape %d+%d to %d+%d", d, p, d2, p2)
	}
	// The packet rate is a one-second average: it takes a few seconds
	// to fall below a thin flow's.
	g.run(22 * time.Second)
	if d, p := c.FEC(); d != 1 || p < 2 {
		t.Fatalf("7 s after bulk turned into a game at 5 %% loss: FEC %d+%d, want one data shard", d, p)
	}
}

// TestLinkBoundFlowSendsNoFEC checks linkBound: a bulk flow whose packets
// leave with a backlog (it fills the link) sends no parity at 5 % loss,
// the same flow sending at its own rate gets a bulk group, and a flow that
// starts filling the link drops its parity after the evidence held.
func TestLinkBoundFlowSendsNoFEC(t *testing.T) {
	// flow is a bulk-rate flow at 5 % loss each way.
	flow := func(seed uint64, appLimited bool) (*Controller, *openLoop) {
		c := New(Config{Seed: seed})
		o := newOpenLoop(c, 2000, rtt40, 0.05, seed)
		o.incoming, o.appLimited = true, appLimited
		return c, o
	}
	c, o := flow(12, false)
	o.run(60 * time.Second)
	if st := c.State(); st.ParityShards != 0 || st.FECChanges > 1 {
		t.Errorf("filling the link at 5 %% loss: FEC %d+%d after %d changes, want off (the precaution's end only); state %+v",
			st.DataShards, st.ParityShards, st.FECChanges, st)
	}
	if st := c.State(); st.Loss < 0.03 {
		t.Errorf("loss estimate %.3f at 5 %% loss: the flow was not measured", st.Loss)
	}

	c, o = flow(12, true)
	o.run(60 * time.Second)
	if d, p := c.FEC(); d < 10 || p == 0 {
		t.Errorf("at its own rate at 5 %% loss: FEC %d+%d, want a bulk group", d, p)
	}

	// A flow at its own rate for 30 s, then filling the link.
	c, o = flow(13, true)
	o.run(30 * time.Second)
	if _, p := c.FEC(); p == 0 {
		t.Fatalf("at its own rate for 30 s at 5 %% loss: FEC off; state %+v", c.State())
	}
	o.appLimited = false
	offAt := 0
	for s := 31; s <= 60 && offAt == 0; s++ {
		o.run(time.Duration(s) * time.Second)
		if _, p := c.FEC(); p == 0 {
			offAt = s
		}
	}
	t.Logf("filling from 30 s: FEC off at %d s", offAt)
	if offAt == 0 || offAt > 30+int((offHold+time.Second)/time.Second) {
		t.Errorf("filling the link from 30 s: FEC off at %d s (0: not by 60 s), want within %v", offAt, offHold+time.Second)
	}
}
