package packet

import (
	"encoding/binary"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// pipePC hands what a Conn sends to a receiving Conn, dropping every
// dropEvery-th datagram, without allocating.
type pipePC struct {
	nopPC
	rx        *Conn
	from      *net.UDPAddr
	buf, out  []byte
	n         int
	dropEvery int
}

func (p *pipePC) WriteTo(b []byte, _ net.Addr) (int, error) {
	p.n++
	if p.rx == nil || (p.dropEvery > 0 && p.n%p.dropEvery == 0) {
		return len(b), nil
	}
	n := copy(p.buf, b)
	p.rx.input(p.buf[:n], p.from.AddrPort(), p.out)
	for _, r := range p.rx.pend { // as ReadFrom delivers them
		p.rx.pool.put(r)
	}
	clear(p.rx.pendPeer)
	p.rx.pend, p.rx.pendPeer = p.rx.pend[:0], p.rx.pendPeer[:0]
	return len(b), nil
}

// TestSteadyStateAllocations checks that sealing and sending (FEC parity
// included) and receiving allocate nothing once the buffers exist, for a
// block cipher, AES-GCM and null. With loss, the only allocations are
// reedsolomon's own, inside ReconstructData (its index lists and, for an
// erasure pattern it has not cached yet, the matrix).
func TestSteadyStateAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, name := range []string{"aes", "aes-128-gcm", "null"} {
		b := block(t, name)
		from := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 2}
		rx := NewConn(nopPC{}, Config{Block: b, DataShards: 10, ParityShards: 3, Migrate: true})
		pipe := &pipePC{rx: rx, from: from, buf: make([]byte, bufSize), out: make([]byte, MaxDatagram)}
		tx := NewClientConn(pipe, &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1}, Config{Block: b, DataShards: 10, ParityShards: 3})
		pkt := kcpPacket(1, 1300)
		bound := rx.Bind(from, binary.LittleEndian.Uint32(pkt))
		// testing.AllocsPerRun rounds down: one run is ten FEC groups.
		groups := func() {
			for range 100 {
				if _, err := tx.WriteTo(pkt, tx.Peer().Addr()); err != nil {
					t.Fatal(err)
				}
			}
		}
		groups()
		if a := testing.AllocsPerRun(10, groups); a != 0 {
			t.Errorf("%s: %.0f allocations per 130 datagrams sent and received", name, a)
		}
		if st := bound.st.Snapshot(); st.DatagramsIn == 0 || st.FECParityIn == 0 || st.FECShapeChanges != 0 {
			t.Fatalf("%s: the receiver did not see the stream: %+v", name, st)
		}
		pipe.dropEvery = 7
		before := bound.st.FECGroupsRecovered.Load()
		a := testing.AllocsPerRun(10, groups)
		rebuilt := float64(bound.st.FECGroupsRecovered.Load()-before) / 11 // one warm-up run
		if rebuilt == 0 || a/rebuilt > 16 {
			t.Errorf("%s: %.0f allocations per 10 groups with %.1f groups rebuilt", name, a, rebuilt)
		}
		t.Logf("%s: 1/7 loss: %.1f allocations per rebuilt group, all inside reedsolomon.ReconstructData", name, a/rebuilt)
	}
}

// TestResendAgainAllocations checks that an adaptive peer keeps the
// segments KCP re-sent and sends one again (resendLost) without allocating
// once its buffers exist.
func TestResendAgainAllocations(t *testing.T) {
	p := allocPeer(t)
	a := p.ad.Load()
	var now time.Duration
	a.clock = func() time.Duration { return now }
	setMinRTT(p, 40*time.Millisecond)
	push := segment(nil, cmdPush, 0, 0, 0, 1000)
	ack := segment(nil, cmdAck, 0, 0, 0, 0)
	var sn uint32
	// sendAt has KCP send sn (a re-send if sent before) now.
	sendAt := func(sn uint32) {
		binary.LittleEndian.PutUint32(push[8:], uint32(now/time.Millisecond))
		binary.LittleEndian.PutUint32(push[12:], sn)
		if m, ok := p.adaptOut(push); ok {
			p.transmitted(m, true) // as if the datagram left at once
		}
	}
	ackOf := func(sn, ts, una uint32) {
		binary.LittleEndian.PutUint32(ack[8:], ts)
		binary.LittleEndian.PutUint32(ack[12:], sn)
		binary.LittleEndian.PutUint32(ack[16:], una)
		p.adaptIn(ack)
	}
	// One round: eight segments; KCP re-sends the first; one sent 20 ms
	// later is acknowledged, so the first is sent again; then una passes
	// all of them.
	round := func() {
		first := sn
		for range 8 {
			sendAt(sn)
			sn++
		}
		now += 10 * time.Millisecond
		sendAt(first)
		now += 20 * time.Millisecond
		sendAt(sn)
		ts := uint32(now / time.Millisecond)
		sn++
		now += 40 * time.Millisecond
		ackOf(sn-1, ts, first)
		ackOf(sn-1, ts, sn)
	}
	noAllocs(t, round, 100, &p.st.SegmentsResentAgain, "segments sent again")
}

// allocPeer returns an adaptive client peer whose datagrams go nowhere, for
// an allocation test; it skips the test under the race detector, which
// allocates.
func allocPeer(t *testing.T) *Peer {
	t.Helper()
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	c := NewClientConn(nopPC{}, &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1}, Config{})
	t.Cleanup(func() { _ = c.Close() })
	p := c.Peer()
	p.EnableAdaptive(AdaptiveConfig{MTU: 1350})
	return p
}

// noAllocs runs round warm times, then checks that it allocates nothing and
// that, over the 101 rounds AllocsPerRun makes, count grew by one a round
// or more (what is counts).
func noAllocs(t *testing.T, round func(), warm int, count *atomic.Uint64, what string) {
	t.Helper()
	for range warm {
		round()
	}
	before := count.Load()
	if a := testing.AllocsPerRun(100, round); a != 0 {
		t.Errorf("%.1f allocations per round", a)
	}
	if n := count.Load() - before; n < 100 {
		t.Fatalf("%d %s in 101 rounds, want one a round or more", n, what)
	}
}

// TestRepeatedAckAllocations checks that repeating ACKs (withRepeatedAcks)
// allocates nothing once its buffers exist.
func TestRepeatedAckAllocations(t *testing.T) {
	p := allocPeer(t)
	ack := segment(segment(nil, cmdAck, 0, 0, 0, 0), cmdAck, 0, 0, 0, 0)
	var una uint32
	// One round: a datagram of two ACKs above the hole at una, then una
	// moves on.
	round := func() {
		for i := range uint32(2) {
			seg := ack[i*kcpOverhead:]
			binary.LittleEndian.PutUint32(seg[12:], una+1+i)
			binary.LittleEndian.PutUint32(seg[16:], una)
		}
		if _, err := p.write(ack); err != nil {
			t.Fatal(err)
		}
		una += 2
	}
	noAllocs(t, round, 300, &p.st.AcksRepeated, "ACKs repeated")
}
