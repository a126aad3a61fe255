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

// TestSimSharingBehindFlushingPeers is TestSimSharing with peers that hold
// their ACKs as kcp-go does (a 30 ms flush timer, and a flush as soon as 55
// ACKs wait) and controllers told so (AckDelay), as in the SDK's default
// mode: each flow must get 35 to 65 % of the link. While the windows
// covered the whole flush interval instead of the hold measured
// (Controller.ackHold), they kept a standing queue of most of it at the
// bottleneck, and the flows split the link anywhere from 13/87 to 78/22.
func TestSimSharingBehindFlushingPeers(t *testing.T) {
	const flush, batch = 30 * time.Millisecond, 55
	seeds := [][2]uint64{{1, 2}, {3, 4}, {5, 6}, {7, 8}, {11, 12}}
	for _, rtt := range []time.Duration{rtt40, 100 * time.Millisecond} {
		for _, sd := range seeds {
			b := newBottleneck(100, rtt, 0, 21)
			a := b.sender(New(Config{Seed: sd[0], AckDelay: flush})).withPeerFlush(flush, batch)
			runAll(5*time.Second, a)
			c := b.sender(New(Config{Seed: sd[1], AckDelay: flush})).withPeerFlush(flush, batch)
			c.t, c.nextSend, c.lastAck = 5*time.Second, 5*time.Second, 5*time.Second
			runAll(45*time.Second, a, c)
			ga, gc := a.goodput(15, 44), c.goodput(15, 44)
			share := ga / (ga + gc)
			t.Logf("rtt %v, seeds %v: %.1f and %.1f Mbit/s (first flow's share %.2f)", rtt, sd, ga*8/1e6, gc*8/1e6, share)
			if share < 0.35 || share > 0.65 {
				t.Errorf("rtt %v, seeds %v: first flow's share %.2f, want 0.35..0.65; states %+v / %+v", rtt, sd, share, a.c.State(), c.c.State())
			}
			if ga+gc < 0.9*mbit100 {
				t.Errorf("rtt %v, seeds %v: together %.1f Mbit/s, want at least 90", rtt, sd, (ga+gc)*8/1e6)
			}
		}
	}
}
