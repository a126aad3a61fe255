package packet

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/seed-fc8f924e/kcptun/internal/testwait"
)

// segHeader is the header of one KCP segment, as a test reads it.
type segHeader struct {
	cmd          byte
	sn, ts, una  uint32
	conv, length uint32
	wnd          uint16
}

func (s segHeader) String() string {
	return fmt.Sprintf("{cmd %d sn %d ts %d una %d}", s.cmd, s.sn, s.ts, s.una)
}

// readSegs reads one datagram from sink, a bare KCP packet, and returns its
// segments' headers.
func readSegs(t *testing.T, sink *net.UDPConn) []segHeader {
	t.Helper()
	buf := make([]byte, 2048)
	_ = sink.SetReadDeadline(time.Now().Add(testTimeout))
	n, _, err := sink.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	var segs []segHeader
	for b := buf[:n]; len(b) >= kcpOverhead; {
		s := segHeader{
			conv: binary.LittleEndian.Uint32(b), cmd: b[4], wnd: binary.LittleEndian.Uint16(b[6:]),
			ts: binary.LittleEndian.Uint32(b[8:]), sn: binary.LittleEndian.Uint32(b[12:]),
			una: binary.LittleEndian.Uint32(b[16:]), length: binary.LittleEndian.Uint32(b[20:]),
		}
		if uint64(s.length) > uint64(len(b)-kcpOverhead) {
			t.Fatalf("a malformed datagram: %x", buf[:n])
		}
		segs = append(segs, s)
		b = b[kcpOverhead+int(s.length):]
	}
	return segs
}

// shifted is ts as a repeated ACK carries it.
func shifted(ts uint32) uint32 { return ts - repeatTsShift }

// acks returns a datagram of ACK segments of sns (timestamp 1000 + sn),
// with una.
func acks(una uint32, sns ...uint32) []byte {
	var b []byte
	for _, sn := range sns {
		b = segment(b, cmdAck, sn, 1000+sn, una, 0)
	}
	return b
}

// TestRepeatedAcks checks which ACKs an adaptive peer repeats and how: each
// ACK of an sn at or after the una it went with, in the next two datagrams
// with an ACK of their own, before their own segments, with the datagram's
// conv, window and una and its timestamp moved back by repeatTsShift; not
// once una passed it, not in a datagram without an ACK, and no more than the
// MTU holds. A peer with no controller repeats nothing.
func TestRepeatedAcks(t *testing.T) {
	sink := listenUDP(t)
	t.Cleanup(func() { _ = sink.Close() })
	p, _ := adaptPeerTo(t, sink, AdaptiveConfig{MTU: 1350, FECPinned: true})
	write := func(b []byte) []segHeader {
		t.Helper()
		if _, err := p.write(b); err != nil {
			t.Fatal(err)
		}
		return readSegs(t, sink)
	}
	repeat := func(sn, una uint32) segHeader {
		return segHeader{cmd: cmdAck, sn: sn, ts: shifted(1000 + sn), una: una, conv: 1, wnd: 128}
	}
	own := func(una uint32, sns ...uint32) []segHeader {
		var s []segHeader
		for _, sn := range sns {
			s = append(s, segHeader{cmd: cmdAck, sn: sn, ts: 1000 + sn, una: una, conv: 1, wnd: 128})
		}
		return s
	}
	check := func(name string, got []segHeader, want ...[]segHeader) {
		t.Helper()
		if w := slices.Concat(want...); !slices.Equal(got, w) {
			t.Fatalf("%s: sent %v, want %v", name, got, w)
		}
	}

	// sn 3 and 4 are missing: the ACKs of 5 and 6 are above a hole, that
	// of 2 is not (una 3 covers it).
	check("the first ACKs", write(acks(3, 2, 5, 6)), own(3, 2, 5, 6))
	check("a datagram with no ACK", write(segment(nil, cmdWins, 0, 0, 3, 0)),
		[]segHeader{{cmd: cmdWins, una: 3, conv: 1, wnd: 128}})
	check("the next ACK", write(acks(3, 7)), []segHeader{repeat(5, 3), repeat(6, 3)}, own(3, 7))
	check("the one after", write(acks(3, 8)), []segHeader{repeat(5, 3), repeat(6, 3), repeat(7, 3)}, own(3, 8))
	check("the third", write(acks(3, 9)), []segHeader{repeat(7, 3), repeat(8, 3)}, own(3, 9))
	// sn 3 to 7 arrived: una 8 covers the ACK of 7, not those of 8 and 9.
	check("after una moved", write(acks(8, 10)), []segHeader{repeat(8, 8), repeat(9, 8)}, own(8, 10))
	if n := p.Stats().AcksRepeated.Load(); n != 9 {
		t.Errorf("AcksRepeated %d, want 9", n)
	}

	// A datagram with room for two more segments repeats two.
	check("before a full datagram", write(acks(11, 12, 13, 14)), own(11, 12, 13, 14))
	var sns []uint32
	for sn := range uint32(54) {
		sns = append(sns, 20+sn)
	}
	full := acks(11, sns...)
	if left := 1350 - len(full); left/kcpOverhead != 2 {
		t.Fatalf("the test's datagram leaves room for %d segments, want 2", left/kcpOverhead)
	}
	// The ACK of 14 was not repeated yet: a datagram of repeats goes
	// first, that one first in it, ended by an ACK of an sn below una with
	// the timestamp of the full datagram's last ACK.
	check("the datagram of repeats", write(full), []segHeader{repeat(14, 11), repeat(12, 11), repeat(13, 11),
		{cmd: cmdAck, sn: 10, ts: 1073, una: 11, conv: 1, wnd: 128}})
	check("a full datagram", readSegs(t, sink), []segHeader{repeat(12, 11), repeat(13, 11)}, own(11, sns...))
	// The next datagram with room repeats the ACK of 14 a second time and
	// those of the full datagram, of 20 to 73; none is left unrepeated, so
	// no datagram follows it.
	next := write(acks(11, 74))
	if len(next) != 56 || next[0] != repeat(14, 11) || next[1] != repeat(20, 11) || next[54] != repeat(73, 11) {
		t.Fatalf("after the full datagram: sent %v, want the repeats of 14 and of 20 to 73, then the ACK of 74", next)
	}
	if n := p.Stats().AcksRepeated.Load(); n != 9+5+55 {
		t.Errorf("AcksRepeated %d, want %d", n, 9+5+55)
	}

	// No controller: nothing repeated.
	q := c2Peer(t, sink)
	for _, b := range [][]byte{acks(3, 5, 6), acks(3, 7)} {
		if _, err := q.write(b); err != nil {
			t.Fatal(err)
		}
	}
	readSegs(t, sink)
	if got := readSegs(t, sink); len(got) != 1 {
		t.Errorf("a peer with no controller sent %v, want the ACK of 7 alone", got)
	}
}

// c2Peer returns the peer of a client Conn, with no controller, sending bare
// KCP packets to sink.
func c2Peer(t *testing.T, sink *net.UDPConn) *Peer {
	t.Helper()
	c := NewClientConn(listenUDP(t), sink.LocalAddr().(*net.UDPAddr), Config{OwnSocket: true})
	t.Cleanup(func() { _ = c.Close() })
	return c.Peer()
}

// TestRepeatedAckCountsOnce checks that this package's sender takes a
// repeated ACK as an ACK of the transmission it repeats: delivered, no loss
// where the first transmission arrived, and no RTT sample.
func TestRepeatedAckCountsOnce(t *testing.T) {
	p, _ := adaptPeer(t)
	a := p.ad.Load()
	var now time.Duration
	a.clock = func() time.Duration { return now }
	for sn := range uint32(4) {
		send(p, sn, 100+sn)
	}
	now = 40 * time.Millisecond
	send(p, 1, 140) // KCP's re-send of 1, whose ACK was lost
	now = 50 * time.Millisecond
	p.adaptIn(segment(nil, cmdAck, 0, 100, 0, 0))
	a.mu.Lock()
	inflight := a.inflight
	a.mu.Unlock()
	st := a.ctl.State()
	// Repeated ACKs of 2 and of 1's first transmission, 400 ms later.
	now = 450 * time.Millisecond
	p.adaptIn(slices.Concat(segment(nil, cmdAck, 2, shifted(102), 0, 0), segment(nil, cmdAck, 1, shifted(101), 0, 0)))
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, sn := range []uint32{1, 2} {
		if r := a.rec(sn); r == nil || r.st&recAcked == 0 {
			t.Fatalf("a repeated ACK did not acknowledge sn %d", sn)
		}
	}
	if want := inflight - 2*(kcpOverhead+testData); a.inflight != want {
		t.Errorf("inflight %d after the repeated ACKs, want %d", a.inflight, want)
	}
	now2 := a.ctl.State()
	if now2.LostPackets != st.LostPackets {
		t.Errorf("%d losses after a repeated ACK of a first transmission, want %d", now2.LostPackets, st.LostPackets)
	}
	if now2.SmoothedRTT != st.SmoothedRTT {
		t.Errorf("smoothed RTT %v after a repeated ACK, want %v still", now2.SmoothedRTT, st.SmoothedRTT)
	}
}

// TestRepeatedAcksInteropKCP checks, against a kcp-go sender, that data
// which arrived above a hole is not re-sent when the datagram with its ACKs
// is lost: the receiver, this package's, repeats those ACKs with its next
// ones, which kcp-go takes as acknowledgements and counts towards no fast
// retransmit, nor as an RTT sample. Only the segment that was lost is
// re-sent.
func TestRepeatedAcksInteropKCP(t *testing.T) {
	const (
		hole = 5  // lost once on the way to the receiver
		last = 11 // the first write's last sn: it starts at sn 2
	)
	var (
		mu       sync.Mutex
		sent     = map[uint32]int{} // transmissions of each sn
		ackLost  = make(chan struct{})
		lostOnce bool
		lostAck  bool
	)
	cliLose := func(b []byte) bool { // no cipher: a bare KCP packet
		mu.Lock()
		defer mu.Unlock()
		lose := false
		for len(b) >= kcpOverhead {
			n := binary.LittleEndian.Uint32(b[20:])
			if uint64(n) > uint64(len(b)-kcpOverhead) {
				break
			}
			if b[4] == cmdPush {
				sn := binary.LittleEndian.Uint32(b[12:])
				sent[sn]++
				if sn == hole && !lostOnce {
					lostOnce, lose = true, true
				}
			}
			b = b[kcpOverhead+int(n):]
		}
		return lose
	}
	// The receiver loses every datagram whose last ACK is of an sn above
	// the hole in the first write: those ACKs reach the sender only as
	// repeats.
	srvLose := func(b []byte) bool {
		lastAck, has := uint32(0), false
		for len(b) >= kcpOverhead {
			n := binary.LittleEndian.Uint32(b[20:])
			if uint64(n) > uint64(len(b)-kcpOverhead) {
				break
			}
			if b[4] == cmdAck {
				lastAck, has = binary.LittleEndian.Uint32(b[12:]), true
			}
			b = b[kcpOverhead+int(n):]
		}
		if !has || lastAck <= hole || lastAck > last {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		if lastAck == last && !lostAck {
			lostAck = true
			close(ackLost)
		}
		return true
	}
	e := makePair(t, side{cipher: "null", lose: cliLose}, side{ours: true, cipher: "null", lose: srvLose})
	e.srvPeer.EnableAdaptive(AdaptiveConfig{MTU: 1350, FECPinned: true})
	slowTimer(t, e)
	mss := 1350 - kcpOverhead
	data := pattern(12*mss, 13)
	if _, err := e.cli.Write(data[:10*mss]); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ackLost:
	case <-time.After(testTimeout):
		t.Fatal("the receiver sent no ACK of the last sn")
	}
	// Two more segments, one at a time: each ACK of one counts towards
	// kcp-go's fast retransmit of everything unacknowledged before it.
	for i := range 2 {
		at := (10 + i) * mss
		if _, err := e.cli.Write(data[at : at+mss]); err != nil {
			t.Fatal(err)
		}
		testwait.For(t, testTimeout, "the segment to be sent", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return sent[uint32(last+1+i)] > 0
		})
	}
	got := make([]byte, len(data))
	_ = e.srv.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := io.ReadFull(e.srv, got); err != nil {
		t.Fatalf("%v (ACKs repeated: %d)", err, e.srvPeer.Stats().AcksRepeated.Load())
	}
	if string(got) != string(data) {
		t.Fatal("the data arrived changed")
	}
	mu.Lock()
	defer mu.Unlock()
	for sn := uint32(hole + 1); sn <= last; sn++ {
		if sent[sn] != 1 {
			t.Errorf("sn %d sent %d times, want once (its ACK was repeated)", sn, sent[sn])
		}
	}
	if srtt := e.cli.GetSRTT(); srtt > 1000 {
		t.Errorf("kcp-go's smoothed RTT %d ms on loopback: a repeated ACK gave it a sample", srtt)
	}
	if sent[hole] < 2 {
		t.Errorf("the lost sn %d sent %d times, want a re-send", hole, sent[hole])
	}
}

// TestRepeatedAcksKCP has a kcp-go session, as sender, take the datagrams
// this package's receiver makes (withRepeatedAcks), with repeats in front of
// its ACKs and in datagrams of their own: the repeats acknowledge the data
// whose ACKs were lost, count towards no fast retransmit and give kcp-go no
// RTT sample, so that only the lost segment is re-sent and kcp-go's RTT
// stays that of the path.
func TestRepeatedAcksKCP(t *testing.T) {
	// At an MTU of 1350 the repeats fit in front of the next ACKs; at 192
	// four of them do, and the rest, with the four again, follow in a
	// datagram of their own.
	for _, mtu := range []int{1350, 8 * kcpOverhead} {
		t.Run(fmt.Sprint("mtu ", mtu), func(t *testing.T) { testRepeatedAcksKCP(t, mtu) })
	}
}

func testRepeatedAcksKCP(t *testing.T, mtu int) {
	const (
		hole = 4 // lost; the data starts at sn 1
		last = 12
	)
	recv := listenUDP(t) // the receiver's socket: the test reads and answers
	t.Cleanup(func() { _ = recv.Close() })
	cli, err := kcp.NewConn4(1, recv.LocalAddr().(*net.UDPAddr), nil, 0, 0, true, listenUDP(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	tuneKCP(cli, 1400)
	// kcp-go's timeout 5 s or more once it has an RTT sample (as in
	// TestAdaptiveResendInteropKCP): it re-sends only on ACKs.
	cli.SetNoDelay(1, 5000, 2, 1)
	var cliAddr net.Addr
	ts := map[uint32]uint32{} // sn: ts of its first transmission
	buf := make([]byte, 2048)
	// nextPushes reads the sender's next datagram and returns its PUSH sns.
	nextPushes := func() []uint32 {
		t.Helper()
		_ = recv.SetReadDeadline(time.Now().Add(testTimeout))
		n, from, err := recv.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		cliAddr = from
		var sns []uint32
		for b := buf[:n]; len(b) >= kcpOverhead; b = b[kcpOverhead+int(binary.LittleEndian.Uint32(b[20:])):] {
			if b[4] == cmdPush {
				sn := binary.LittleEndian.Uint32(b[12:])
				if _, ok := ts[sn]; !ok {
					ts[sn] = binary.LittleEndian.Uint32(b[8:])
				}
				sns = append(sns, sn)
			}
		}
		return sns
	}
	// The receiver: this package's adaptive peer, whose datagrams the test
	// sends from recv.
	p, _ := adaptPeerWith(t, AdaptiveConfig{MTU: mtu, FECPinned: true})
	// answer has the receiver acknowledge sns with una and sends what it
	// makes of that (lost: nothing); it returns how many datagrams.
	answer := func(lost bool, una uint32, sns ...uint32) int {
		t.Helper()
		var b []byte
		for _, sn := range sns {
			b = segment(b, cmdAck, sn, ts[sn], una, 0)
		}
		p.smu.Lock()
		out, extra := p.withRepeatedAcks(b)
		p.smu.Unlock()
		if lost {
			return 0
		}
		n := 0
		for _, d := range [][]byte{extra, out} { // as Peer.write sends them
			if d != nil {
				if _, err := recv.WriteTo(d, cliAddr); err != nil {
					t.Fatal(err)
				}
				n++
			}
		}
		return n
	}

	if _, err := cli.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	if sns := nextPushes(); !slices.Equal(sns, []uint32{0}) {
		t.Fatalf("kcp-go sent %v first, want sn 0", sns)
	}
	answer(false, 1, 0)
	testwait.For(t, testTimeout, "kcp-go's timeout to pass 5 s", func() bool { return cli.GetRTO() >= 5000 })

	mss := 1400 - kcpOverhead
	if _, err := cli.Write(make([]byte, last*mss)); err != nil {
		t.Fatal(err)
	}
	for seen := 0; seen < last; {
		seen += len(nextPushes())
	}
	answer(false, hole, 1, 2, 3)
	answer(true, hole, 5, 6, 7, 8, 9, 10) // lost
	// The next ACKs, of 11 and 12, go with ACKs of 1 and 2 again (kcp-go
	// ignores those: una passed them), so that at an MTU of 192 they leave
	// room for four repeats. Each of the two counts towards the fast
	// retransmit of every segment unacknowledged before it: the repeats
	// must come first.
	if n, want := answer(false, hole, 1, 2, 11, 12), 1+btoi(mtu < 10*kcpOverhead); n != want {
		t.Fatalf("the ACKs of 11 and 12 left in %d datagrams, want %d", n, want)
	}
	// kcp-go re-sends the hole; whatever else it re-sends on those ACKs
	// leaves in the same flush, before the data written next.
	var resent []uint32
	for !slices.Contains(resent, hole) {
		resent = append(resent, nextPushes()...)
	}
	if _, err := cli.Write(make([]byte, mss)); err != nil {
		t.Fatal(err)
	}
	for done := false; !done; {
		for _, sn := range nextPushes() {
			if sn == last+1 {
				done = true
			} else {
				resent = append(resent, sn)
			}
		}
	}
	if !slices.Equal(resent, []uint32{hole}) {
		t.Errorf("kcp-go re-sent sns %v, want %d alone (ACKs repeated: %d)", resent, hole, p.Stats().AcksRepeated.Load())
	}
	if srtt := cli.GetSRTT(); srtt > 1000 {
		t.Errorf("kcp-go's smoothed RTT %d ms on loopback: a repeated ACK gave it a sample", srtt)
	}
}

// btoi is 1 for true, 0 for false.
func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
