package packet

import (
	"encoding/binary"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed-fc8f924e/kcptun/internal/testwait"
)

// adaptPeer returns a client peer with an adaptive controller whose window
// changes go to the returned function's results, over a socket that sends to
// a UDP socket nobody reads. The test drives the controller's glue directly
// (adaptOut, transmitted, adaptIn) with synthetic KCP segments, so that
// nothing depends on timing.
func adaptPeer(t *testing.T) (*Peer, func() (snd int, calls int)) {
	t.Helper()
	return adaptPeerWith(t, AdaptiveConfig{MTU: 1350})
}

// adaptPeerWith is adaptPeer with the configuration cfg (SetWindows is the
// helper's).
func adaptPeerWith(t *testing.T, cfg AdaptiveConfig) (*Peer, func() (snd int, calls int)) {
	t.Helper()
	sink := listenUDP(t)
	t.Cleanup(func() { _ = sink.Close() })
	return adaptPeerTo(t, sink, cfg)
}

// adaptPeerTo is adaptPeerWith sending to sink, with no cipher: what the
// peer sends arrives there as bare KCP packets.
func adaptPeerTo(t *testing.T, sink *net.UDPConn, cfg AdaptiveConfig) (*Peer, func() (snd int, calls int)) {
	t.Helper()
	pc := listenUDP(t)
	c := NewClientConn(pc, sink.LocalAddr().(*net.UDPAddr), Config{OwnSocket: true})
	t.Cleanup(func() { _ = c.Close() })
	var mu sync.Mutex
	snd, calls := 0, 0
	p := c.Peer()
	cfg.SetWindows = func(s, _ int) {
		mu.Lock()
		snd, calls = s, calls+1
		mu.Unlock()
	}
	p.EnableAdaptive(cfg)
	return p, func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return snd, calls
	}
}

// segment appends a KCP segment of cmd with sn, ts, una and n data bytes.
func segment(b []byte, cmd byte, sn, ts, una uint32, n int) []byte {
	var h [kcpOverhead]byte
	binary.LittleEndian.PutUint32(h[0:], 1) // conv
	h[4] = cmd
	binary.LittleEndian.PutUint16(h[6:], 128) // wnd
	binary.LittleEndian.PutUint32(h[8:], ts)
	binary.LittleEndian.PutUint32(h[12:], sn)
	binary.LittleEndian.PutUint32(h[16:], una)
	binary.LittleEndian.PutUint32(h[20:], uint32(n))
	b = append(b, h[:]...)
	return append(b, make([]byte, n)...)
}

// testData is the data bytes of a test segment: larger than the MTU, so
// that the controller's initial inflight limit (InitialWindow full packets)
// is used up by fewer segments than its initial window.
const testData = 1976

// send has the peer send PUSH sn with timestamp ts and testData bytes, and
// the datagram leave at once.
func send(p *Peer, sn, ts uint32) {
	m, ok := p.adaptOut(segment(nil, cmdPush, sn, ts, 0, testData))
	if ok && m.data > 0 {
		p.transmitted(m, true)
	}
}

// TestAdaptiveWindowFollowsInflight checks that KCP's send window is the
// span of packets out plus what the controller's inflight limit still
// allows (at most what the pacing queue's budget holds): with nothing
// acknowledged and the limit used up, KCP may send nothing new; each ACK
// opens room for what it acknowledged.
func TestAdaptiveWindowFollowsInflight(t *testing.T) {
	p, wnd := adaptPeer(t)
	a := p.ad.Load()
	limit := a.ctl.InflightLimit()
	const size = kcpOverhead + testData
	n := uint32((limit + size - 1) / size) // up to the limit
	if cover := a.ctl.SendWindow(1350); int(n) >= cover {
		t.Fatalf("%d packets use up the limit, too close to the largest window %d for the test", n, cover)
	}
	for sn := range n {
		send(p, sn, 1000+sn)
	}
	// An ACK-only datagram that acknowledges nothing new (una 0) makes the
	// glue apply the window.
	p.adaptIn(segment(nil, cmdAck, n+100, 0, 0, 0))
	if snd, _ := wnd(); snd != int(n) {
		t.Fatalf("window %d with %d packets out and the limit of %d bytes used up, want %d", snd, n, limit, n)
	}
	// una 10 acknowledges ten packets (with timestamps that match no
	// transmission, so that no RTT sample changes the limit).
	p.adaptIn(segment(nil, cmdAck, n+100, 0, 10, 0))
	snd, _ := wnd()
	// The room is what the limit allows, at most the pacing queue's budget.
	room := int((min(a.ctl.InflightLimit()-(int64(n)-10)*size, a.ctl.QueueBudget()) + 1349) / 1350)
	if want := int(n) - 10 + room; snd != want || room <= 0 {
		t.Errorf("window %d after una moved by 10, want span %d + room %d", snd, int(n)-10, room)
	}
	if a.queued != 0 || a.inflight != (int64(n)-10)*size {
		t.Errorf("queued %d, inflight %d; want 0 and %d", a.queued, a.inflight, (int64(n)-10)*size)
	}
}

// TestAdaptiveReceiveWindowCoversSpan checks that the receive window
// follows the span of the peer's data at this end: from the una our own
// packets carry to the highest sn that arrived.
func TestAdaptiveReceiveWindowCoversSpan(t *testing.T) {
	p, _ := adaptPeer(t)
	a := p.ad.Load()
	// Our packets acknowledge everything below sn 0.
	if m, _ := p.adaptOut(segment(nil, cmdAck, 0, 0, 0, 0)); m.data != 0 {
		t.Fatal("an ACK-only datagram was taken for data")
	}
	for _, sn := range []uint32{0, 1, 2, 1499} {
		p.adaptIn(segment(nil, cmdPush, sn, 100+sn, 0, 100))
	}
	a.mu.Lock()
	rcv := a.rcvWnd
	a.mu.Unlock()
	if rcv < 3000 {
		t.Errorf("receive window %d packets with sns 0..1499 outstanding, want at least twice the span, 3000", rcv)
	}
}

// TestAdaptiveReceiveWindowKeepsEdge checks that the receive window never
// shrinks below what our packets told the peer it may send (una plus the
// advertised window): KCP would drop those segments without an ACK, on
// every re-send.
func TestAdaptiveReceiveWindowKeepsEdge(t *testing.T) {
	p, _ := adaptPeer(t)
	a := p.ad.Load()
	advertise := func(una uint32, wnd uint16) {
		seg := segment(nil, cmdAck, 0, 0, una, 0)
		binary.LittleEndian.PutUint16(seg[6:], wnd)
		p.adaptOut(seg)
	}
	rcvWnd := func() int {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.rcvWnd
	}
	advertise(0, 3000)
	p.adaptIn(segment(nil, cmdPush, 0, 100, 0, 100))
	if w := rcvWnd(); w < 3000 {
		t.Fatalf("receive window %d after advertising 3000 from sn 0, want at least 3000", w)
	}
	// KCP moved on by 1000 and advertises less: the edge stays at 3000.
	advertise(1000, 100)
	p.adaptIn(segment(nil, cmdPush, 1000, 200, 0, 100))
	if w := rcvWnd(); w < 2000 {
		t.Errorf("receive window %d at una 1000 with sns up to 3000 promised, want at least 2000", w)
	}
}

// TestAdaptiveLossCounting checks which re-sends count as losses: one whose
// ACK echoes a re-send's timestamp; one a cumulative ACK (una) covers, one
// per advance of una (the others it covers are mostly packets whose ACK was
// lost); not one whose ACK echoes the first transmission (spurious).
func TestAdaptiveLossCounting(t *testing.T) {
	p, _ := adaptPeer(t)
	a := p.ad.Load()
	for sn := range uint32(20) {
		send(p, sn, 100+sn)
	}
	lost := func() int64 { return a.ctl.State().LostPackets }
	// sn 3 re-sent twice, acknowledged with the first re-send's timestamp.
	send(p, 3, 200)
	send(p, 3, 300)
	p.adaptIn(segment(nil, cmdAck, 3, 200, 0, 0))
	if got := lost(); got != 1 {
		t.Fatalf("ACK of a re-send: %d losses, want 1", got)
	}
	// sn 5 re-sent, acknowledged with its first timestamp: spurious.
	send(p, 5, 400)
	p.adaptIn(segment(nil, cmdAck, 5, 105, 0, 0))
	if got := lost(); got != 1 {
		t.Fatalf("ACK of the first transmission of a re-sent packet: %d losses, want still 1", got)
	}
	// sn 7, 8 and 9 re-sent, then una passes all of them at once: one hole.
	send(p, 7, 500)
	send(p, 8, 501)
	send(p, 9, 502)
	p.adaptIn(segment(nil, cmdAck, 19, 119, 12, 0))
	if got := lost(); got != 2 {
		t.Fatalf("una over three re-sent packets: %d losses, want 2", got)
	}
	// sn 12 re-sent but still queued (not left) when una passes it: its
	// first transmission arrived.
	if m, ok := p.adaptOut(segment(nil, cmdPush, 12, 600, 0, testData)); !ok || !m.resend {
		t.Fatalf("re-send of 12 not seen as one (%+v, %v)", m, ok)
	}
	p.adaptIn(segment(nil, cmdAck, 19, 119, 13, 0))
	if got := lost(); got != 2 {
		t.Fatalf("una over a queued re-send: %d losses, want still 2", got)
	}
	if a.queued != 0 {
		t.Errorf("queued %d bytes after una passed the queued re-send, want 0", a.queued)
	}
}

// TestAdaptiveScatteredDatagram checks that a datagram whose PUSH segments
// are not consecutive (re-sends of two holes and new data, as one KCP
// flush packs them) records every one of them as sent, so that nothing
// stays counted as queued.
func TestAdaptiveScatteredDatagram(t *testing.T) {
	p, _ := adaptPeer(t)
	a := p.ad.Load()
	for sn := range uint32(10) {
		send(p, sn, 100+sn)
	}
	var d []byte
	d = segment(d, cmdPush, 2, 200, 0, testData)
	d = segment(d, cmdPush, 6, 200, 0, testData)
	d = segment(d, cmdPush, 10, 200, 0, testData)
	d = segment(d, cmdPush, 11, 200, 0, testData)
	m, ok := p.adaptOut(d)
	if !ok || !m.resend || m.npush != 4 {
		t.Fatalf("adaptOut = %+v, %v; want a re-send of 4 segments", m, ok)
	}
	p.transmitted(m, true)
	const size = kcpOverhead + testData
	if a.queued != 0 || a.inflight != 12*size {
		t.Errorf("queued %d, inflight %d after the datagram left; want 0 and %d", a.queued, a.inflight, 12*size)
	}
}

// TestAdaptiveAcksEvery checks that KCP is told to acknowledge the peer's
// data at once (SetAckNow(true)) when it arrives an eighth of the minimum
// RTT, at least ackEvery, or more after the last ACK left this end, and to
// go back to its batch and flush timer as soon as an ACK left: so that the
// peer's data waits about that long at most for an ACK, and a fast flow
// keeps KCP's batched ACKs. Before an RTT was measured, when half a batch
// of ACKs waits within the gap, and on a path whose RTT is twice the peer's
// flush interval or more for a while after it lost some of the peer's data,
// KCP keeps its own timing.
func TestAdaptiveAcksEvery(t *testing.T) {
	for _, tc := range []struct {
		minRTT, gap time.Duration
	}{
		{20 * time.Millisecond, ackEvery},
		{58 * time.Millisecond, 58 * time.Millisecond / 8},
	} {
		p, now, calls := ackNowPeer(t)
		push := func(sn uint32) { p.adaptIn(segment(nil, cmdPush, sn, 100+sn, 0, 100)) }
		ackOut := func() { p.adaptOut(segment(nil, cmdAck, 0, 0, 0, 0)) }
		check := func(what string, want ...bool) {
			t.Helper()
			if !slices.Equal(*calls, want) {
				t.Fatalf("min RTT %v, %s: SetAckNow calls %v, want %v", tc.minRTT, what, *calls, want)
			}
		}

		*now = time.Second
		push(0)
		check("no RTT measured")
		setMinRTT(p, tc.minRTT)
		push(1) // nothing acknowledged yet: at once
		check("first data", true)
		ackOut() // KCP acknowledged it
		*now += time.Millisecond
		push(2) // 1 ms after that ACK: back to batching
		*now += tc.gap - 2*time.Millisecond
		push(3) // still within the gap: no call
		check("data within the gap", true, false)
		*now += time.Millisecond // the gap after the ACK
		push(4)
		push(5) // no ACK left in between: still at once
		check("data the gap after the last ACK", true, false, true)
		// An ACK from KCP's own timer or batch counts the same.
		ackOut()
		*now += tc.gap / 2
		push(6)
		check("data after an ACK", true, false, true, false)
		// ACKs and window probes from the peer (no data) change nothing.
		*now += time.Second
		p.adaptIn(segment(nil, cmdAck, 0, 0, 0, 0))
		p.adaptIn(segment(nil, cmdWask, 0, 0, 0, 0))
		check("datagrams without data", true, false, true, false)
	}

	// Data that comes at half a batch of ACKs or more per gap is left to
	// KCP's batch.
	p, now, calls := ackNowPeer(t)
	setMinRTT(p, 20*time.Millisecond)
	*now = time.Second
	p.adaptOut(segment(nil, cmdAck, 0, 0, 0, 0))
	for sn := range uint32(1350 / kcpOverhead / 2) {
		p.adaptIn(segment(nil, cmdPush, sn, 100+sn, 0, 100))
	}
	*now += ackEvery
	p.adaptIn(segment(nil, cmdPush, 100, 200, 0, 100))
	if len(*calls) != 0 {
		t.Errorf("half a batch within the gap: SetAckNow calls %v, want none", *calls)
	}

	// A path of twice the flush interval or more: the same while the
	// peer's data comes in order, KCP's own timing for lossQuiet after
	// some was lost.
	p, now, calls = ackNowPeer(t)
	setMinRTT(p, 2*testFlush)
	push := func(sn uint32) { p.adaptIn(segment(nil, cmdPush, sn, 100+sn, 0, 100)) }
	*now = time.Second
	push(0)
	p.adaptOut(segment(nil, cmdAck, 0, 0, 1, 0))
	*now += time.Second
	push(2) // sn 1 is missing
	*now += lossQuiet - time.Millisecond
	push(3)
	if want := []bool{true, false}; !slices.Equal(*calls, want) {
		t.Fatalf("min RTT %v, in order then a loss: SetAckNow calls %v, want %v", 2*testFlush, *calls, want)
	}
	*now += time.Millisecond
	push(4)
	if want := []bool{true, false, true}; !slices.Equal(*calls, want) {
		t.Errorf("min RTT %v, %v after the loss: SetAckNow calls %v, want %v", 2*testFlush, lossQuiet, *calls, want)
	}
}

// testFlush is the peer's flush interval the ACK tests assume.
const testFlush = 30 * time.Millisecond

// ackNowPeer returns an adaptive peer whose controller's clock is the
// returned duration, and the SetAckNow calls it makes.
func ackNowPeer(t *testing.T) (p *Peer, now *time.Duration, calls *[]bool) {
	t.Helper()
	calls = new([]bool)
	p, _ = adaptPeerWith(t, AdaptiveConfig{MTU: 1350, AckDelay: testFlush, SetAckNow: func(on bool) { *calls = append(*calls, on) }})
	now = new(time.Duration)
	p.ad.Load().clock = func() time.Duration { return *now }
	return p, now, calls
}

// setMinRTT sets the minimum RTT the peer's glue has measured, and the
// path's RTT (pathRTT) to the same.
func setMinRTT(p *Peer, d time.Duration) {
	a := p.ad.Load()
	a.mu.Lock()
	a.minRTT, a.pathRTT = d, d
	a.mu.Unlock()
}

// TestAdaptivePathRTTLessPeerQueue checks that the RTT the ACK timing is
// chosen for (pathRTT) leaves out the queue that the peer's datagram with
// the ACK crossed, as the one-way delay of its data shows: an upload's
// receiving end that measured its RTT only while the transfer's start-up
// filled the bottleneck's queue took a clean 40 ms path for 63-70 ms.
func TestAdaptivePathRTTLessPeerQueue(t *testing.T) {
	p, now, _ := ackNowPeer(t)
	a := p.ad.Load()
	*now = time.Second // 1000 on our millisecond clock
	// The peer's clock reads 7000 then: its data crosses no queue.
	p.adaptIn(segment(nil, cmdPush, 0, 7000, 0, 100))
	send(p, 0, 42)
	// 68 ms later the ACK comes in a datagram whose data the peer stamped
	// at 7042: it waited 26 ms more than the peer's first datagram.
	*now += 68 * time.Millisecond
	var d []byte
	d = segment(d, cmdAck, 0, 42, 0, 0)
	d = segment(d, cmdPush, 1, 7042, 0, 100)
	p.adaptIn(d)
	a.mu.Lock()
	minRTT, pathRTT, gap := a.minRTT, a.pathRTT, a.ackGap(*now)
	a.mu.Unlock()
	if minRTT != 68*time.Millisecond || pathRTT != 42*time.Millisecond {
		t.Errorf("minimum RTT %v and path RTT %v, want 68ms and 42ms", minRTT, pathRTT)
	}
	if want := 42 * time.Millisecond / 8; gap != want {
		t.Errorf("ACK gap %v, want %v (an eighth of the path's RTT)", gap, want)
	}
	// An ACK in a datagram without data is taken as it is, unless data
	// came just before it (see below).
	send(p, 1, 43)
	*now += 40 * time.Millisecond
	p.adaptIn(segment(nil, cmdAck, 1, 43, 0, 0))
	a.mu.Lock()
	pathRTT = a.pathRTT
	a.mu.Unlock()
	if pathRTT != 40*time.Millisecond {
		t.Errorf("path RTT %v after a 40 ms sample with no data beside it, want 40ms", pathRTT)
	}

	// A datagram of ACKs alone (they skip the peer's pacing queue) within
	// crossedFresh of the peer's data crossed the queue that data did.
	p, now, _ = ackNowPeer(t)
	a = p.ad.Load()
	*now = time.Second
	p.adaptIn(segment(nil, cmdPush, 0, 7000, 0, 100))
	send(p, 0, 42)
	*now += 60 * time.Millisecond
	p.adaptIn(segment(nil, cmdPush, 1, 7040, 0, 100)) // 20 ms of queue
	*now += crossedFresh / 2
	p.adaptIn(segment(nil, cmdAck, 0, 42, 0, 0))
	a.mu.Lock()
	minRTT, pathRTT = a.minRTT, a.pathRTT
	a.mu.Unlock()
	if want := 60*time.Millisecond + crossedFresh/2; minRTT != want || pathRTT != want-20*time.Millisecond {
		t.Errorf("ACKs alone %v after data that crossed 20 ms: minimum RTT %v and path RTT %v, want %v and %v",
			crossedFresh/2, minRTT, pathRTT, want, want-20*time.Millisecond)
	}
}

// TestAdaptiveAckNowInteropKCP checks the glue against a real kcp-go
// session: with SetAckNow wired to its SetACKNoDelay, data from the peer
// that arrives the gap after the last ACK is acknowledged at once, where
// kcp-go alone waits for its next flush (here its timer, set to 5 s).
func TestAdaptiveAckNowInteropKCP(t *testing.T) {
	e := makePair(t, side{cipher: "aes"}, side{ours: true, cipher: "aes"})
	e.srv.SetNoDelay(1, 5000, 2, 1)
	e.srvPeer.EnableAdaptive(AdaptiveConfig{MTU: 1350, AckDelay: 30 * time.Millisecond, SetAckNow: e.srv.SetACKNoDelay})
	a := e.srvPeer.ad.Load()
	st := e.srvPeer.Stats()
	buf := make([]byte, 1)
	// deliver writes one byte from the client, reads it at the server and
	// waits until the server has sent as many datagrams as given.
	deliver := func(datagrams uint64, within time.Duration) {
		t.Helper()
		if _, err := e.cli.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		_ = e.srv.SetReadDeadline(time.Now().Add(testTimeout))
		if _, err := io.ReadFull(e.srv, buf); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(within)
		for st.DatagramsOut.Load() < datagrams {
			if time.Now().After(deadline) {
				t.Fatalf("the server sent %d datagrams within %v, want %d", st.DatagramsOut.Load(), within, datagrams)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// With no RTT measured, kcp-go's timer acknowledges the first byte:
	// the flush already scheduled at the old interval, or the first at
	// the new one. The next is then 5 s away.
	deliver(st.DatagramsOut.Load()+1, testTimeout)
	// Now with a short path's RTT and the last ACK long ago: at once.
	a.mu.Lock()
	a.minRTT, a.pathRTT = 20*time.Millisecond, 20*time.Millisecond
	later := a.now() + time.Second
	a.clock = func() time.Duration { return later }
	a.mu.Unlock()
	deliver(st.DatagramsOut.Load()+1, 2*time.Second)
}

// TestAdaptiveResendsLostResend checks that a segment KCP re-sent is sent
// again, as KCP last sent it but with this end's latest una and window, once
// the peer acknowledged a transmission that left a quarter of the minimum
// RTT or more after that re-send; not for an ACK of an earlier or a closer
// transmission, not after the segment was acknowledged, and at most
// againTimes times.
func TestAdaptiveResendsLostResend(t *testing.T) {
	sink := listenUDP(t)
	t.Cleanup(func() { _ = sink.Close() })
	p, _ := adaptPeerTo(t, sink, AdaptiveConfig{MTU: 1350})
	a := p.ad.Load()
	var now time.Duration
	a.clock = func() time.Duration { return now }
	setMinRTT(p, 40*time.Millisecond) // a quarter: 10 ms
	again := func() uint64 { return p.Stats().SegmentsResentAgain.Load() }
	// pushAt has the peer send sn at the given time (ms) with una 2 and
	// window 99, and the peer acknowledge it.
	pushAt := func(ms int, sn uint32) {
		t.Helper()
		now = time.Duration(ms) * time.Millisecond
		seg := segment(nil, cmdPush, sn, uint32(ms), 2, testData)
		binary.LittleEndian.PutUint16(seg[6:], 99)
		m, ok := p.adaptOut(seg)
		if !ok {
			t.Fatal("adaptOut: no controller")
		}
		p.transmitted(m, true)
	}
	ackAt := func(ms int, sn, ts uint32) {
		now = time.Duration(ms) * time.Millisecond
		p.adaptIn(segment(nil, cmdAck, sn, ts, 0, 0))
	}
	for sn := range uint32(10) {
		pushAt(0, sn)
	}
	pushAt(50, 3) // KCP's re-send of 3
	ackAt(60, 9, 0)
	if n := again(); n != 0 {
		t.Fatalf("an ACK of a transmission before the re-send: %d sent again, want 0", n)
	}
	pushAt(55, 10)
	ackAt(95, 10, 55)
	if n := again(); n != 0 {
		t.Fatalf("an ACK of a transmission 5 ms after the re-send: %d sent again, want 0", n)
	}
	pushAt(70, 11)
	ackAt(110, 11, 70)
	if n := again(); n != 1 {
		t.Fatalf("an ACK of a transmission 20 ms after the re-send: %d sent again, want 1", n)
	}
	// What left: the segment as KCP re-sent it, with the latest una and
	// window of this end.
	_ = sink.SetReadDeadline(time.Now().Add(testTimeout))
	buf := make([]byte, 2048)
	n, _, err := sink.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	want := segment(nil, cmdPush, 3, 50, 2, testData)
	binary.LittleEndian.PutUint16(want[6:], 99)
	got := buf[:n]
	if len(got) != len(want) || got[4] != cmdPush || binary.LittleEndian.Uint32(got[12:]) != 3 ||
		binary.LittleEndian.Uint32(got[16:]) != 2 || binary.LittleEndian.Uint16(got[6:]) != 99 ||
		string(got[kcpOverhead:]) != string(want[kcpOverhead:]) {
		t.Fatalf("sent again: %x..., want %x...", got[:kcpOverhead], want[:kcpOverhead])
	}
	// It left at 110 ms: an ACK of sn 12, which left at 115, is too close.
	pushAt(115, 12)
	ackAt(150, 12, 115)
	if n := again(); n != 1 {
		t.Fatalf("an ACK of a transmission 5 ms after the second send: %d sent again, want 1", n)
	}
	for i := range 5 {
		ms := 200 + 100*i
		pushAt(ms, uint32(13+i))
		ackAt(ms+40, uint32(13+i), uint32(ms))
	}
	if n := again(); n != againTimes {
		t.Fatalf("five more ACKs of later transmissions: %d sent again, want at most %d", n, againTimes)
	}
	// Acknowledged: no more, and its record is dropped.
	pushAt(800, 3)
	ackAt(840, 3, 800)
	pushAt(900, 20)
	ackAt(940, 20, 900)
	if n := again(); n != againTimes {
		t.Fatalf("after the ACK of the segment: %d sent again, want still %d", n, againTimes)
	}
	a.mu.Lock()
	kept := len(a.again)
	a.mu.Unlock()
	if kept != 0 {
		t.Errorf("%d re-sent segments kept after their ACKs, want 0", kept)
	}
}

// TestAdaptiveResendInteropKCP checks resendLost against real kcp-go
// sessions: a segment whose first transmission and KCP's re-send are both
// lost arrives as soon as the peer acknowledged data sent after that
// re-send, where kcp-go alone waits for its retransmission timer (here 5 s
// or more).
func TestAdaptiveResendInteropKCP(t *testing.T) {
	const target = 5 // the sn lost twice: the data below starts at sn 2
	var lost atomic.Int32
	twice := make(chan struct{})
	lose := func(b []byte) bool { // no cipher: b is a bare KCP packet
		for len(b) >= kcpOverhead {
			n := binary.LittleEndian.Uint32(b[20:])
			if uint64(n) > uint64(len(b)-kcpOverhead) {
				return false
			}
			if b[4] == cmdPush && binary.LittleEndian.Uint32(b[12:]) == target {
				switch lost.Add(1) {
				case 1:
					return true
				case 2:
					close(twice)
					return true
				}
			}
			b = b[kcpOverhead+int(n):]
		}
		return false
	}
	e := makePair(t, side{ours: true, cipher: "null", lose: lose}, side{cipher: "null"})
	// FEC pinned off: no copies of a thin flow's datagrams.
	e.cliPeer.EnableAdaptive(AdaptiveConfig{MTU: 1350, AckDelay: 10 * time.Millisecond, FECPinned: true})
	a := e.cliPeer.ad.Load()
	slowTimer(t, e)
	mss := 1350 - kcpOverhead
	data := pattern(21*mss, 7)
	if _, err := e.cli.Write(data[:20*mss]); err != nil {
		t.Fatal(err)
	}
	select {
	case <-twice:
	case <-time.After(testTimeout):
		t.Fatal("KCP did not re-send the lost segment")
	}
	// Once the re-send is recorded as sent (or, when data the pacing queue
	// held back left after it, already acknowledged), this end's clock
	// stands still a second later: the data written next leaves a second
	// after the re-send.
	testwait.For(t, testTimeout, "the re-send to be recorded", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		if int32(target-a.base) < 0 {
			return true
		}
		r := a.rec(target)
		return r != nil && r.st&recResent != 0 && r.st&recSent != 0
	})
	a.mu.Lock()
	later := a.now() + time.Second
	a.clock = func() time.Duration { return later }
	a.mu.Unlock()
	if _, err := e.cli.Write(data[20*mss:]); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	_ = e.srv.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(e.srv, got); err != nil {
		t.Fatalf("%v (segments sent again: %d)", err, e.cliPeer.Stats().SegmentsResentAgain.Load())
	}
	if string(got) != string(data) {
		t.Fatal("the data arrived changed")
	}
	// sendAgain counts a re-send once its write returned, which can be
	// after the peer read the data it carried.
	testwait.For(t, testTimeout, "the re-send to be counted", func() bool {
		return e.cliPeer.Stats().SegmentsResentAgain.Load() > 0
	})
}

// TestAdaptivePresumesLost checks that first transmissions still
// unacknowledged a quarter of the minimum RTT before the newest one an ACK
// echoed leave inflight at once (presumeLost), only once: not again when
// their late ACK comes, nor when KCP re-sends them; and that one sent
// within that quarter stays.
func TestAdaptivePresumesLost(t *testing.T) {
	p, _ := adaptPeer(t)
	a := p.ad.Load()
	var now time.Duration
	a.clock = func() time.Duration { return now }
	setMinRTT(p, 40*time.Millisecond) // a quarter: 10 ms
	const size = kcpOverhead + testData
	inflight := func() int64 {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.inflight
	}
	at := func(ms int) { now = time.Duration(ms) * time.Millisecond }
	for sn := range uint32(10) {
		send(p, sn, sn) // at 0 ms
	}
	at(15)
	send(p, 10, 10)
	at(20)
	send(p, 11, 11)
	at(60)
	p.adaptIn(segment(nil, cmdAck, 11, 11, 0, 0)) // left at 20 ms
	if got := inflight(); got != size {
		t.Fatalf("after an ACK of a transmission 20 ms after sn 0-9: inflight %d, want %d (sn 10, 5 ms before, only)", got, size)
	}
	for sn := range uint32(4) {
		send(p, 12+sn, 12+sn) // at 60 ms
	}
	p.adaptIn(segment(nil, cmdAck, 3, 3, 0, 0)) // a late ACK of one presumed lost
	if got := inflight(); got != 5*size {
		t.Fatalf("after a late ACK of sn 3: inflight %d, want %d", got, 5*size)
	}
	send(p, 5, 100) // KCP re-sends sn 5: it leaves inflight no second time
	if got := inflight(); got != 6*size {
		t.Fatalf("after the re-send of sn 5: inflight %d, want %d", got, 6*size)
	}
}

// slowTimer sets the client's KCP retransmission timeout of pair e to 5 s
// or more, so that kcp-go re-sends only on ACKs: KCP's timeout is its
// smoothed RTT plus at least its flush interval, here 5 s, once one byte
// sent and acknowledged gave it an RTT sample.
func slowTimer(t *testing.T, e pairEnds) {
	t.Helper()
	e.cli.SetNoDelay(1, 5000, 2, 1)
	if _, err := e.cli.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	one := make([]byte, 1)
	_ = e.srv.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := io.ReadFull(e.srv, one); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, testTimeout, "kcp-go's timeout to pass 5 s", func() bool { return e.cli.GetRTO() >= 5000 })
}

// pattern returns n bytes, byte i being i*k (mod 256).
func pattern(n int, k byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i) * k
	}
	return b
}
