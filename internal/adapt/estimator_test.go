package adapt

import (
	"slices"
	"testing"
	"time"
)

// ackJitterRun feeds a controller a flow paced at exactly the bottleneck
// rate (one packet of DefaultMSS bytes every gap), with a one-way delay of
// 20 ms each way and per-packet ACKs, whose return path holds ACKs back by
// up to jitter and releases them in order (so that some arrive in bunches,
// as when the peer flushes its ACKs once per interval, or the reader falls
// behind and catches up). It returns the largest bandwidth estimate seen
// after the first second, and the path's rate in bytes per second.
func ackJitterRun(t *testing.T, gap, jitter time.Duration, seed uint64) (maxBw, rate float64) {
	t.Helper()
	c := New(Config{Seed: seed})
	r := rng(seed*0x9E3779B97F4A7C15 + 7)
	const owd = 20 * time.Millisecond
	n := int(10 * time.Second / gap)
	type ack struct{ sent, at time.Duration }
	acks := make([]ack, 0, n)
	var last, hold time.Duration
	for i := range n {
		sent := time.Duration(i) * gap
		if i%8 == 0 { // the return path's delay changes every few packets
			hold = time.Duration(r.float() * float64(jitter))
		}
		at := max(sent+2*owd+hold, last)
		last = at
		acks = append(acks, ack{sent, at})
	}
	inflight, next := 0, 0
	for i := range n {
		sent := acks[i].sent
		for next < i && acks[next].at <= sent {
			a := acks[next]
			inflight -= DefaultMSS
			c.OnAck(a.at, DefaultMSS, a.at-a.sent, false)
			if a.at > time.Second {
				maxBw = max(maxBw, float64(c.State().Bandwidth))
			}
			next++
		}
		inflight += DefaultMSS
		c.OnSend(sent, DefaultMSS, inflight)
	}
	return maxBw, float64(DefaultMSS) / gap.Seconds()
}

// TestAckBunchingDoesNotInflateBandwidth checks the delivery rate estimate
// on synthetic ACK sequences whose ACKs bunch up on the way back: the flow
// never delivers more than the bottleneck's rate, so the estimate (a
// maximum of samples) must not exceed it by more than a few percent. Taken
// over the ACK interval alone, a sample counts a bunch of ACKs as delivered
// in an instant and reads up to (RTT + jitter) / RTT times the rate.
func TestAckBunchingDoesNotInflateBandwidth(t *testing.T) {
	for _, tc := range []struct {
		gap, jitter time.Duration
	}{
		{108 * time.Microsecond, 30 * time.Millisecond},  // 100 Mbit/s, a 30 ms flush interval
		{1080 * time.Microsecond, 30 * time.Millisecond}, // 10 Mbit/s
		{108 * time.Microsecond, 10 * time.Millisecond},
	} {
		for seed := uint64(1); seed <= 3; seed++ {
			maxBw, rate := ackJitterRun(t, tc.gap, tc.jitter, seed)
			if maxBw > 1.05*rate || maxBw < 0.9*rate {
				t.Errorf("gap %v, jitter %v, seed %d: largest bandwidth estimate %.0f B/s, %.2f times the path's %.0f; want within [0.9, 1.05]",
					tc.gap, tc.jitter, seed, maxBw, maxBw/rate, rate)
			}
		}
	}
}

// TestRateSampleACKsAtOneInstant acknowledges each round's burst with
// ACKs taken at one instant (a datagram's worth, or a batch read at once),
// the next burst leaving 1 ms later: every rate sample must be what was
// delivered over the time since the previous burst's ACKs. Freezing a
// delivered checkpoint at the first ACK of an instant missed the others,
// and the samples of the next round counted them again: the estimate came
// out 1.48 times the rate.
func TestRateSampleACKsAtOneInstant(t *testing.T) {
	const rtt, gap = 120 * time.Millisecond, time.Millisecond
	c := New(Config{Seed: 1})
	mss := int64(c.cfg.MSS)
	now := time.Duration(0)
	for round, n := 1, int64(32); round <= 6; round, n = round+1, 2*n {
		for i := range n {
			c.OnSend(now, int(mss), int((i+1)*mss))
		}
		at := now + rtt
		for range n {
			c.OnAck(at, int(mss), rtt, false)
		}
		want := float64(n*mss) / (rtt + gap).Seconds() // since the previous ACKs
		if round == 1 {
			want = float64(n*mss) / rtt.Seconds()
		}
		if bw := float64(c.State().Bandwidth); bw > 1.02*want || bw < 0.9*want {
			t.Errorf("round %d: bandwidth %.0f B/s, want about %.0f (%d packets per %v)", round, bw, want, n, rtt+gap)
		}
		now = at + gap
	}
}

// TestCheckpointRingGrows checks that the ring of delivered checkpoints
// starts small, grows as checkpoints accumulate, keeps them oldest first
// across each growth, and stops at cpRing, from where the oldest makes
// room; and that a rate sample that reaches back to a checkpoint from
// before a growth measures from it.
func TestCheckpointRingGrows(t *testing.T) {
	const rtt = 40 * time.Millisecond
	c := New(Config{Seed: 1})
	mss := c.cfg.MSS
	// One packet per millisecond, each acknowledged one RTT later: after
	// the first RTT, a new checkpoint every two ACKs (cpGap, minRTT/32, is
	// 1.25 ms).
	step := time.Millisecond
	var sizes []int
	for i := range 2000 {
		now := time.Duration(i) * step
		c.OnSend(now, mss, mss)
		if now >= rtt {
			c.OnAck(now, mss, rtt, false)
		}
		if n := len(c.cps); len(sizes) == 0 || sizes[len(sizes)-1] != n {
			sizes = append(sizes, n)
		}
		for j := 1; j < c.cpLen; j++ {
			if c.cp(j).at <= c.cp(j-1).at || c.cp(j).delivered < c.cp(j-1).delivered {
				t.Fatalf("after %d packets: checkpoint %d (%v, %d) not after %d (%v, %d)", i+1,
					j, c.cp(j).at, c.cp(j).delivered, j-1, c.cp(j-1).at, c.cp(j-1).delivered)
			}
		}
	}
	want := []int{cpFirst}
	for n := 2 * cpFirst; n <= cpRing; n *= 2 {
		want = append(want, n)
	}
	if !slices.Equal(sizes, want) {
		t.Fatalf("ring sizes %v, want %v", sizes, want)
	}
	if c.cpLen != cpRing {
		t.Fatalf("%d checkpoints kept, want %d", c.cpLen, cpRing)
	}
	// Every sample is one packet per millisecond.
	if bw, want := float64(c.State().Bandwidth), float64(mss)/step.Seconds(); bw > 1.02*want || bw < 0.98*want {
		t.Fatalf("bandwidth %.0f B/s, want %.0f", bw, want)
	}
}
