package adapt

import (
	"testing"
	"time"
)

// TestSimSharing runs two flows over one clean 100 Mbit/s bottleneck, the
// second starting 5 s after the first, and checks that each gets 35 to
// 65 % of it once both run, with the link still full.
func TestSimSharing(t *testing.T) {
	for _, rtt := range []time.Duration{rtt40, 100 * time.Millisecond} {
		b := newBottleneck(100, rtt, 0, 21)
		a := b.sender(New(Config{Seed: 1}))
		runAll(5*time.Second, a)
		c := b.sender(New(Config{Seed: 2}))
		c.t, c.nextSend, c.lastAck = 5*time.Second, 5*time.Second, 5*time.Second
		runAll(45*time.Second, a, c)
		ga, gc := a.goodput(15, 44), c.goodput(15, 44)
		share := ga / (ga + gc)
		t.Logf("rtt %v: %.1f and %.1f Mbit/s (first flow's share %.2f); states %+v / %+v", rtt, ga*8/1e6, gc*8/1e6, share, a.c.State(), c.c.State())
		if share < 0.35 || share > 0.65 {
			t.Errorf("rtt %v: first flow's share %.2f, want 0.35..0.65", rtt, share)
		}
		if ga+gc < 0.9*mbit100 {
			t.Errorf("rtt %v: together %.1f Mbit/s, want at least 90", rtt, (ga+gc)*8/1e6)
		}
	}
}
