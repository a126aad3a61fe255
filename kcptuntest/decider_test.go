package kcptuntest

import (
	"math"
	"testing"
	"time"
)

func lossSequence(seed int64, l Link, n int) []bool {
	d := newDecider(seed, 0, l)
	out := make([]bool, n)
	for i := range out {
		out[i] = d.lose()
		d.duplicate()
		d.delay()
		d.reorder()
	}
	return out
}

func TestDeciderDeterministic(t *testing.T) {
	const n = 100000
	a := lossSequence(1, Link{Loss: 0.1}, n)
	b := lossSequence(1, Link{Loss: 0.1}, n)
	c := lossSequence(2, Link{Loss: 0.1}, n)
	// The other impairments draw from streams of their own.
	other := lossSequence(1, Link{Loss: 0.1, Duplicate: 0.5, Jitter: time.Millisecond, Reorder: 0.3}, n)
	lower := lossSequence(1, Link{Loss: 0.05}, n)
	same, lost := 0, 0
	for i := range a {
		if a[i] != b[i] || a[i] != other[i] {
			t.Fatalf("decision %d differs for the same seed", i)
		}
		if lower[i] && !a[i] {
			t.Fatalf("decision %d: lost at 5 %% but not at 10 %%", i)
		}
		if a[i] == c[i] {
			same++
		}
		if a[i] {
			lost++
		}
	}
	if same == n {
		t.Errorf("seeds 1 and 2 gave the same decisions")
	}
	if got := float64(lost) / n; math.Abs(got-0.1) > 0.005 {
		t.Errorf("lost %.4f, want 0.1 ± 0.005", got)
	}
	// The directions are independent.
	up, down := newDecider(1, 0, Link{Loss: 0.5}), newDecider(1, 1, Link{Loss: 0.5})
	differ := false
	for range 64 {
		if up.lose() != down.lose() {
			differ = true
		}
	}
	if !differ {
		t.Errorf("both directions made the same 64 decisions")
	}
}

// meanBurst returns the loss rate and the mean length of runs of losses.
func meanBurst(seq []bool) (rate, burst float64) {
	lost, bursts := 0, 0
	for i, l := range seq {
		if l {
			lost++
			if i == 0 || !seq[i-1] {
				bursts++
			}
		}
	}
	return float64(lost) / float64(len(seq)), float64(lost) / float64(bursts)
}

func TestGilbertElliott(t *testing.T) {
	const n = 400000
	for _, ge := range []GilbertElliott{
		{PGoodToBad: 0.01, PBadToGood: 0.25, LossGood: 0, LossBad: 1},
		{PGoodToBad: 0.05, PBadToGood: 0.3, LossGood: 0.01, LossBad: 0.7},
	} {
		want := ge.StationaryLoss()
		rate, burst := meanBurst(lossSequence(4, Link{Burst: &ge}, n))
		if math.Abs(rate-want) > 0.1*want {
			t.Errorf("%+v: lost %.4f, want %.4f ± 10 %%", ge, rate, want)
		}
		if burst <= 1.5 {
			t.Errorf("%+v: mean burst %.2f, want well over 1", ge, burst)
		}
		// Independent loss at the same rate has bursts of about 1/(1-rate).
		_, flat := meanBurst(lossSequence(4, Link{Loss: want}, n))
		if burst < 1.5*flat {
			t.Errorf("%+v: mean burst %.2f, not much over %.2f for independent loss", ge, burst, flat)
		}
	}
	if got := (GilbertElliott{PGoodToBad: 0.01, PBadToGood: 0.25, LossBad: 1}).StationaryLoss(); math.Abs(got-0.01/0.26) > 1e-12 {
		t.Errorf("StationaryLoss = %v", got)
	}
	if got := (GilbertElliott{LossGood: 0.2, LossBad: 1}).StationaryLoss(); got != 0.2 {
		t.Errorf("StationaryLoss of a chain that stays good = %v, want 0.2", got)
	}
}

func TestJitterRange(t *testing.T) {
	d := newDecider(3, 0, Link{Delay: 10 * time.Millisecond, Jitter: 4 * time.Millisecond})
	lo, hi := int64(math.MaxInt64), int64(0)
	for range 10000 {
		v := d.delay()
		lo, hi = min(lo, v), max(hi, v)
	}
	if lo < int64(6*time.Millisecond) || hi > int64(14*time.Millisecond) {
		t.Errorf("delays span [%v, %v], want within [6ms, 14ms]", time.Duration(lo), time.Duration(hi))
	}
	if hi-lo < int64(7*time.Millisecond) {
		t.Errorf("delays span [%v, %v], want most of [6ms, 14ms]", time.Duration(lo), time.Duration(hi))
	}
	d = newDecider(3, 0, Link{Delay: time.Millisecond, Jitter: 5 * time.Millisecond})
	for range 10000 {
		if v := d.delay(); v < 0 {
			t.Fatalf("negative delay %v", v)
		}
	}
}

func TestQueueLimit(t *testing.T) {
	for _, tc := range []struct {
		l    Link
		want int
	}{
		{Link{Bandwidth: 1e6}, DefaultQueueBytes},
		{Link{Bandwidth: 1e9, Delay: 10 * time.Millisecond}, 1250000},
		{Link{Bandwidth: 1e6, QueueBytes: 1000}, 1000},
		{Link{Bandwidth: 1e12, Delay: time.Hour}, MaxInFlightBytes},
		{Link{Bandwidth: 1e6, QueueBytes: math.MaxInt}, MaxInFlightBytes},
	} {
		if got := tc.l.queueLimit(); got != tc.want {
			t.Errorf("%+v: queue limit %d, want %d", tc.l, got, tc.want)
		}
	}
}
