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
	c := New(Config{Seed: 2})
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
		c := New(Config{Seed: 6})
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
	c := New(Config{Seed: 3})
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
			c := New(Config{Seed: 4})
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
