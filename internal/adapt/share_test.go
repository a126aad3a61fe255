package adapt

import (
	"testing"
	"time"
)

// TestSimSharing runs two flows over one clean 100 Mbit/s bottleneck, the
// second starting 5 s after the first, for several pairs of probing seeds,
// and checks that the link stays full and that the flows share it: the
// first flow's share averages 40 to 60 % over the seed pairs and no pair
// leaves either flow under 30 %. (Which flow leads depends on how the two
// gain cycles meet; one pair of the five reaches 65 % at 100 ms.)
func TestSimSharing(t *testing.T) {
	seeds := [][2]uint64{{1, 2}, {3, 4}, {5, 6}, {7, 8}, {11, 12}}
	for _, rtt := range []time.Duration{rtt40, 100 * time.Millisecond} {
		sum := 0.0
		for _, sd := range seeds {
			b := newBottleneck(100, rtt, 0, 21)
			a := b.sender(New(Config{Seed: sd[0]}))
			runAll(5*time.Second, a)
			c := b.sender(New(Config{Seed: sd[1]}))
			c.t, c.nextSend, c.lastAck = 5*time.Second, 5*time.Second, 5*time.Second
			runAll(45*time.Second, a, c)
			ga, gc := a.goodput(15, 44), c.goodput(15, 44)
			share := ga / (ga + gc)
			sum += share
			t.Logf("rtt %v, seeds %v: %.1f and %.1f Mbit/s (first flow's share %.2f)", rtt, sd, ga*8/1e6, gc*8/1e6, share)
			if share < 0.3 || share > 0.7 {
				t.Errorf("rtt %v, seeds %v: first flow's share %.2f, want 0.3..0.7; states %+v / %+v", rtt, sd, share, a.c.State(), c.c.State())
			}
			if ga+gc < 0.9*mbit100 {
				t.Errorf("rtt %v, seeds %v: together %.1f Mbit/s, want at least 90", rtt, sd, (ga+gc)*8/1e6)
			}
		}
		if mean := sum / float64(len(seeds)); mean < 0.4 || mean > 0.6 {
			t.Errorf("rtt %v: first flow's mean share %.2f over %d seed pairs, want 0.4..0.6", rtt, mean, len(seeds))
		}
	}
}
