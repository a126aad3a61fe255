package packet

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"
)

// kcpSender is a KCP sender whose packets go to out, for tests that feed
// it ACK packets by hand.
type kcpSender struct {
	k   *kcp.KCP
	out [][]byte
}

func newKCPSender(conv uint32) *kcpSender {
	s := &kcpSender{}
	s.k = kcp.NewKCP(conv, func(buf []byte, size int) {
		s.out = append(s.out, append([]byte(nil), buf[:size]...))
	})
	s.k.NoDelay(1, 10, 2, 1)
	return s
}

// sendOne has the sender send one small segment now and returns its packet.
func (s *kcpSender) sendOne(t *testing.T, data string) []byte {
	t.Helper()
	s.out = nil
	if s.k.Send([]byte(data)) < 0 {
		t.Fatal("kcp Send refused")
	}
	// kcp-go flushes at most once per interval (10 ms): wait for it,
	// within a bound.
	for i := 0; i < 200 && len(s.out) == 0; i++ {
		s.k.Update()
		if len(s.out) == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	if len(s.out) != 1 {
		t.Fatalf("sender flushed %d packets, want 1", len(s.out))
	}
	return s.out[0]
}

// acksFor has a fresh receiver take in the packets and returns the packet
// of ACKs it flushes.
func acksFor(t *testing.T, conv uint32, pkts ...[]byte) []byte {
	t.Helper()
	var out [][]byte
	r := kcp.NewKCP(conv, func(buf []byte, size int) { out = append(out, append([]byte(nil), buf[:size]...)) })
	r.NoDelay(1, 10, 2, 1)
	for _, p := range pkts {
		if r.Input(p, kcp.IKCP_PACKET_REGULAR, false) != 0 {
			t.Fatal("receiver refused a packet")
		}
	}
	r.Update()
	if len(out) != 1 || out[0][4] != cmdAck {
		t.Fatalf("receiver flushed %d packets, want one of ACKs", len(out))
	}
	return out[0]
}

// TestTimeoutHint checks the ACK segment an adaptive peer appends to a
// packet with ACKs on its way to kcp-go: it repeats the last ACK's header
// with the timestamp moved back by the controller's margin and an sn below
// una, kcp-go takes it in without acknowledging anything else, and kcp-go
// waits longer before it re-sends a segment than after the same packet
// without it.
func TestTimeoutHint(t *testing.T) {
	const margin = 2 * time.Second // the ACK delay: no RTT sample yet
	p, _ := adaptPeerWith(t, AdaptiveConfig{MTU: 1350, AckDelay: margin})
	const conv = 7
	plain, hinted := newKCPSender(conv), newKCPSender(conv)
	push := plain.sendOne(t, "first")
	hinted.sendOne(t, "first")
	ack := acksFor(t, conv, push)

	buf := make([]byte, len(ack), len(ack)+2*kcpOverhead)
	copy(buf, ack)
	n := p.timeoutHint(buf, buf[len(buf):cap(buf)], scanSegments(buf))
	if n != kcpOverhead {
		t.Fatalf("timeoutHint appended %d bytes, want one segment", n)
	}
	h := buf[len(ack) : len(ack)+n]
	last := ack[len(ack)-kcpOverhead:]
	if !bytes.Equal(h[:8], last[:8]) || !bytes.Equal(h[16:20], last[16:20]) {
		t.Errorf("hint header %x, want conv, cmd, frg, wnd and una of the last ACK %x", h, last)
	}
	if got, want := binary.LittleEndian.Uint32(h[8:]), binary.LittleEndian.Uint32(last[8:])-uint32(margin/time.Millisecond); got != want {
		t.Errorf("hint ts %d, want %d", got, want)
	}
	if got, want := binary.LittleEndian.Uint32(h[12:]), binary.LittleEndian.Uint32(last[16:])-1; got != want || binary.LittleEndian.Uint32(h[20:]) != 0 {
		t.Errorf("hint sn %d (want %d), length %d (want 0)", got, want, binary.LittleEndian.Uint32(h[20:]))
	}

	if plain.k.Input(ack, kcp.IKCP_PACKET_REGULAR, false) != 0 || hinted.k.Input(buf[:len(ack)+n], kcp.IKCP_PACKET_REGULAR, false) != 0 {
		t.Fatal("kcp-go refused an ACK packet")
	}
	if plain.k.WaitSnd() != 0 || hinted.k.WaitSnd() != 0 {
		t.Fatalf("segments still unacknowledged: %d without the hint, %d with it", plain.k.WaitSnd(), hinted.k.WaitSnd())
	}
	// A segment sent now times out after kcp-go's timeout: about 30 ms
	// (its floor) from the plain sample of about 0 ms, three times the
	// margin (a first sample's deviation counts twice) from the hinted one.
	plain.sendOne(t, "second")
	hinted.sendOne(t, "second")
	plain.out, hinted.out = nil, nil
	for i := 0; i < 1000 && len(plain.out) == 0; i++ {
		time.Sleep(time.Millisecond)
		plain.k.Update()
		hinted.k.Update()
	}
	if len(plain.out) == 0 {
		t.Fatal("the sender without the hint never re-sent")
	}
	if len(hinted.out) != 0 {
		t.Errorf("the sender with the hint re-sent as early as the one without")
	}

	// A packet without ACKs gets nothing, nor does a peer without a
	// controller.
	if n := p.timeoutHint(push, make([]byte, kcpOverhead), scanSegments(push)); n != 0 {
		t.Errorf("a packet of data got a %d-byte hint", n)
	}
	q := &Peer{}
	if n := q.timeoutHint(ack, make([]byte, kcpOverhead), scanSegments(ack)); n != 0 {
		t.Errorf("a peer without a controller appended %d bytes", n)
	}
}
