package kcptun

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/seed-fc8f924e/kcptun/kcptuntest"
)

// sinkBehindRelay starts a Listener that reads every accepted stream to its
// end, behind a link emulator; got receives each stream's byte count.
func sinkBehindRelay(t *testing.T, link kcptuntest.Config, opts ...Option) (*Listener, *kcptuntest.Relay, chan int64) {
	t.Helper()
	ln, err := Listen("127.0.0.1:0", opts...)
	if err != nil {
		t.Fatal(err)
	}
	relay, err := kcptuntest.NewRelay(ln.Addr().String(), link)
	if err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	got := make(chan int64, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n, _ := io.Copy(io.Discard, c)
			_ = c.Close()
			got <- n
		}
	}()
	t.Cleanup(func() {
		_ = relay.Close()
		_ = ln.Close()
		<-done
	})
	return ln, relay, got
}

// sessionOf returns the stats of the session under a Dial stream.
func sessionOf(t *testing.T, c net.Conn) SessionStats {
	t.Helper()
	st, ok := c.(*Stream)
	if !ok {
		t.Fatalf("%T is not a *Stream", c)
	}
	return st.sess.stats()
}

// TestAdaptiveLossyGoodput sends with no options over a 10 Mbit/s link with
// 5 % loss each way and 40 ms RTT, and checks that the controller fills the
// link: goodput after the first MiB at least minShare of C(1-p). With the
// binaries' fixed settings (WithAdaptive(false)) the same transfer is
// capped by the 128-packet window and 10+3 FEC; the figure is logged.
func TestAdaptiveLossyGoodput(t *testing.T) {
	const (
		capacity = 10_000_000 // bits per second
		loss     = 0.05
		total    = 5 << 20
		warm     = 1 << 20
		// minShare is what must be reached under -race on a busy 2-core
		// machine; the target is 0.8. Measured here under -race
		// (see the log): 0.79-0.84 on an idle machine, 0.73-0.76 with
		// three busy loops besides, since the pacing queue is bounded and
		// KCP's timeout covers a probe's queue (0.62-0.81 and 0.43-0.53
		// before; 0.29-0.48 before the send window followed the inflight
		// limit).
		minShare = 0.5
	)
	link := kcptuntest.Link{Loss: loss, Delay: 20 * time.Millisecond, Bandwidth: capacity}
	_, relay, _ := sinkBehindRelay(t, kcptuntest.Config{Up: link, Down: link, Seed: 7})
	c, err := Dial(relay.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := randomBytes(t, total)
	_ = c.SetWriteDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.Write(payload[:warm]); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := c.Write(payload[warm:]); err != nil {
		t.Fatal(err)
	}
	// Written means in KCP's send window; wait until it is acknowledged.
	deadline := time.Now().Add(60 * time.Second)
	for sessionOf(t, c).Unacked > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	st := sessionOf(t, c)
	if st.Unacked > 0 {
		t.Fatalf("%d segments still unacknowledged after 60 s", st.Unacked)
	}
	goodput := float64(total-warm) * 8 / elapsed.Seconds()
	share := goodput / (capacity * (1 - loss))
	t.Logf("goodput %.2f Mbit/s = %.0f %% of C(1-p) in %v; controller %+v", goodput/1e6, share*100, elapsed, st.Control)
	if !st.Adaptive {
		t.Fatal("the session has no controller with no options")
	}
	if share < minShare {
		t.Errorf("goodput %.2f Mbit/s is %.0f %% of C(1-p), want at least %.0f %%", goodput/1e6, share*100, minShare*100)
	}
}

// TestAdaptiveFECFollowsLoss checks that a no-option session sends without
// FEC on a clean link and turns FEC on once the link starts losing. The
// path's RTT, 40 ms, is one on which a bulk flow uses FEC (on paths under
// 30 ms re-sends cost it less than parity).
func TestAdaptiveFECFollowsLoss(t *testing.T) {
	clean := kcptuntest.Link{Delay: 20 * time.Millisecond}
	_, relay, _ := sinkBehindRelay(t, kcptuntest.Config{Up: clean, Down: clean, Seed: 3})
	c, err := Dial(relay.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	chunk := randomBytes(t, 32<<10)
	// send writes for d, paced so that the link is never the limit.
	send := func(d time.Duration, until func() bool) {
		t.Helper()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for end := time.Now().Add(d); time.Now().Before(end); {
			_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(chunk[:8<<10]); err != nil {
				t.Fatal(err)
			}
			if until != nil && until() {
				return
			}
			<-tick.C
		}
	}
	// A session starts with the thin-flow precaution (FEC for its first
	// packets, until the flow shows it is not thin or the path clean);
	// this flow is not thin, so after a second no more groups leave.
	send(time.Second, nil)
	before := sessionOf(t, c).FECGroupsSent
	send(time.Second, nil)
	st := sessionOf(t, c)
	if !st.Adaptive || st.Control.DataShards != 0 || st.FECGroupsSent != before {
		t.Fatalf("clean link: FEC %d+%d, %d groups sent in the second second, want none (%+v)", st.Control.DataShards, st.Control.ParityShards, st.FECGroupsSent-before, st.Control)
	}
	lossy := kcptuntest.Link{Delay: 20 * time.Millisecond, Loss: 0.10}
	relay.SetLinks(lossy, lossy)
	send(40*time.Second, func() bool { return sessionOf(t, c).Control.DataShards > 0 })
	st = sessionOf(t, c)
	if st.Control.DataShards == 0 || st.Control.ParityShards == 0 {
		t.Fatalf("10 %% loss for 40 s: FEC still off (%+v)", st.Control)
	}
	t.Logf("FEC %d+%d at loss estimate %.3f", st.Control.DataShards, st.Control.ParityShards, st.Control.Loss)
}

// TestAdaptiveOffIsFixed checks that WithAdaptive(false) keeps the
// binaries' behaviour: no controller, no pacing, FEC 10+3 groups sent.
func TestAdaptiveOffIsFixed(t *testing.T) {
	ln := listenEcho(t, WithAdaptive(false))
	c, err := Dial(ln.Addr().String(), WithAdaptive(false))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoRoundTrip(t, c, randomBytes(t, 256<<10))
	st := sessionOf(t, c)
	if st.Adaptive || st.PacingRate != 0 || st.FECGroupsSent == 0 {
		t.Fatalf("WithAdaptive(false): adaptive %v, pacing %d, FEC groups %d; want fixed 10+3 unpaced", st.Adaptive, st.PacingRate, st.FECGroupsSent)
	}
	if got := st.FECParitySent; got != 3*st.FECGroupsSent {
		t.Errorf("%d parity shards for %d groups, want 3 each", got, st.FECGroupsSent)
	}
}

// TestAdaptivePins checks that WithWindow and WithFEC pin their parts.
func TestAdaptivePins(t *testing.T) {
	ln := listenEcho(t)
	c, err := Dial(ln.Addr().String(), WithWindow(200, 300), WithFEC(4, 2))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoRoundTrip(t, c, randomBytes(t, 256<<10))
	st := sessionOf(t, c).Control
	if !st.WindowPinned || st.SendWindow != 200 || st.ReceiveWindow != 300 || !st.FECPinned || st.DataShards != 4 || st.ParityShards != 2 {
		t.Fatalf("pinned state %+v, want windows 200/300 and FEC 4+2", st)
	}
	// The ACK hold the windows cover reaches the stats: measured on this
	// clean path, at most the peer's assumed flush interval.
	if maxHold := time.Duration(modeProfiles[ModeFast].Interval) * time.Millisecond; st.AckHold <= 0 || st.AckHold > maxHold {
		t.Fatalf("AckHold %v, want more than 0 and at most %v", st.AckHold, maxHold)
	}
}
