package packet

import (
	"net"
	"testing"
	"time"
)

// pacedPair returns a client Conn sending to a plain socket.
func pacedPair(t *testing.T) (*Conn, *net.UDPConn) {
	t.Helper()
	rx := listenUDP(t)
	t.Cleanup(func() { _ = rx.Close() })
	_ = rx.SetReadBuffer(8 << 20)
	c := NewClientConn(listenUDP(t), rx.LocalAddr().(*net.UDPAddr), Config{OwnSocket: true})
	t.Cleanup(func() { _ = c.Close() })
	return c, rx
}

// kcpPacket is a well-formed KCP PUSH segment of n data bytes.
func kcpPacket(sn uint32, n int) []byte {
	b := make([]byte, kcpOverhead+n)
	b[4] = cmdPush
	b[12] = byte(sn)
	b[13] = byte(sn >> 8)
	b[20] = byte(n)
	b[21] = byte(n >> 8)
	return b
}

// TestPacingRate checks that a paced peer does not send faster than its
// rate (a lower bound on the time taken, so a slow machine cannot fail it),
// that every datagram still leaves, and that clearing the rate sends the
// rest at once.
func TestPacingRate(t *testing.T) {
	c, rx := pacedPair(t)
	p := c.Peer()
	const (
		size  = 1000
		count = 100
		rate  = 200_000 // bytes per second: count*size takes 0.5 s
	)
	p.SetRate(rate)
	start := time.Now()
	for i := range count {
		if _, err := c.WriteTo(kcpPacket(uint32(i), size-kcpOverhead), p.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 2048)
	_ = rx.SetReadDeadline(time.Now().Add(testTimeout))
	for i := range count {
		if _, _, err := rx.ReadFrom(buf); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
	}
	elapsed := time.Since(start)
	if min := time.Duration(count*size-rate*pacingBurst.Seconds()-2*size) * time.Second / rate; elapsed < min {
		t.Fatalf("%d bytes left in %v at %d B/s; pacing allows no less than %v", count*size, elapsed, rate, min)
	}
	// The counter moves just after the send; wait for it.
	for deadline := time.Now().Add(testTimeout); p.Stats().DatagramsOut.Load() < count && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if st := p.Stats().Snapshot(); st.DatagramsOut != count || st.QueueDrops != 0 || st.SegmentsOut != count {
		t.Fatalf("counters %+v", st)
	}
	// A very low rate: the queue fills, the rest is dropped and counted;
	// clearing the rate sends what is queued at once.
	p.SetRate(1)
	extra := 10
	for i := range maxQueue + extra {
		if _, err := c.WriteTo(kcpPacket(uint32(count+i), 10), p.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	// The burst allowance may let the first one leave at once.
	if drops := p.Stats().QueueDrops.Load(); drops < uint64(extra-1) {
		t.Fatalf("queue drops %d, want at least %d", drops, extra-1)
	}
	p.SetRate(0)
	// The batching sender counts a datagram once the socket took it.
	want := uint64(count + maxQueue + extra)
	for deadline := time.Now().Add(testTimeout); p.Stats().DatagramsOut.Load()+p.Stats().QueueDrops.Load() < want && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if got := p.Stats().DatagramsOut.Load(); got+p.Stats().QueueDrops.Load() != uint64(count+maxQueue+extra) {
		t.Fatalf("after clearing the rate: %d sent + %d dropped, want %d", got, p.Stats().QueueDrops.Load(), count+maxQueue+extra)
	}
}

// TestPacerReleasesRing checks that a pacing queue gives its ring back once
// it is empty, so that an idle peer holds none, and that a ring taken again
// comes from the shared pools: a queue that fills and empties again
// allocates no new ring. (The race detector drops pooled items at random,
// so the reuse is checked without it only.)
func TestPacerReleasesRing(t *testing.T) {
	c, rx := pacedPair(t)
	p := c.Peer()
	ringOf := func() (*[]qent, int) {
		p.pace.mu.Lock()
		defer p.pace.mu.Unlock()
		return p.pace.ring, len(p.pace.q)
	}
	var first *[]qent
	sent := 0
	for round := range 3 {
		p.SetRate(1) // everything but the burst allowance queues
		for range 2 * minRing {
			if _, err := c.WriteTo(kcpPacket(uint32(sent), 10), p.Addr()); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		ring, n := ringOf()
		if ring == nil || n != 2*minRing {
			t.Fatalf("round %d: queue of %d datagrams has a ring of %d entries, want %d", round, 2*minRing, n, 2*minRing)
		}
		if round == 0 {
			first = ring
		} else if !raceEnabled && ring != first {
			t.Errorf("round %d: the queue allocated a new ring instead of taking the pooled one", round)
		}
		p.SetRate(0) // sends what is queued and empties the queue
		if ring, n := ringOf(); ring != nil || n != 0 {
			t.Fatalf("round %d: the empty queue still holds a ring of %d entries", round, n)
		}
	}
	buf := make([]byte, 2048)
	_ = rx.SetReadDeadline(time.Now().Add(testTimeout))
	for i := range sent {
		if _, _, err := rx.ReadFrom(buf); err != nil {
			t.Fatalf("datagram %d of %d: %v", i, sent, err)
		}
	}
	if d := p.Stats().QueueDrops.Load(); d != 0 {
		t.Fatalf("%d datagrams dropped", d)
	}
}

// TestDataSentCountsFirstSends checks that DataSent adds up the data of each
// KCP segment once, when it is first sent, and not its re-sends, and that
// Unacked counts what is above the peer's cumulative acknowledgement: what a
// closing session reads to know that KCP has sent and delivered everything.
func TestDataSentCountsFirstSends(t *testing.T) {
	c, _ := pacedPair(t)
	p := c.Peer()
	send := func(sn uint32, n int) {
		t.Helper()
		if _, err := c.WriteTo(kcpPacket(sn, n), p.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	send(0, 100)
	send(1, 200)
	send(0, 100) // a re-send
	send(2, 50)
	if got := p.Stats().DataSent(); got != 350 {
		t.Fatalf("DataSent %d after 350 bytes sent once and 100 again, want 350", got)
	}
	if got := p.Stats().Unacked(); got != 3 {
		t.Fatalf("Unacked %d with three segments out and none acknowledged, want 3", got)
	}
}
