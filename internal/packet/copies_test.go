package packet

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"
)

// forceCopies gives p's controller a shape of one data shard and m parity
// shards (not pinned through the configuration, so it is the thin rule's
// kind of shape), which the packet layer sends as m bare copies.
func forceCopies(p *Peer, m int) { forceShape(p, 1, m) }

// forceShape has p's controller choose the FEC shape k+m and applies it.
func forceShape(p *Peer, k, m int) {
	a := p.ad.Load()
	a.mu.Lock()
	a.ctl.PinFEC(k, m)
	d, par, c := a.fecShape()
	a.fecD, a.fecP, a.copies = d, par, c
	a.mu.Unlock()
	p.setShape(d, par, c)
}

// TestCopiesLeaveBare checks that under a shape of 1+m each datagram with
// data, new or re-sent, leaves 1+m times without an FEC header, that a
// datagram without data leaves once, and that the controller counts the
// copied segments once: in flight after they left, not per copy.
func TestCopiesLeaveBare(t *testing.T) {
	const m = 2
	c, rx := pacedPair(t)
	p := c.Peer()
	p.EnableAdaptive(AdaptiveConfig{MTU: 1350})
	forceCopies(p, m)
	if st, _ := p.Adaptive(); st.DataShards != 1 || st.ParityShards != m {
		t.Fatalf("controller state shows FEC %d+%d, want 1+%d", st.DataShards, st.ParityShards, m)
	}

	var sent [][]byte
	want := 0
	push := func(b []byte, copies int) {
		if _, err := p.write(b); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, b)
		want += copies
	}
	var size int64
	for sn := range uint32(3) {
		b := segment(nil, cmdPush, sn, 100+sn, 0, 64)
		size += int64(len(b))
		push(b, 1+m)
	}
	push(segment(nil, cmdAck, 1, 100, 0, 0), 1)
	push(segment(nil, cmdPush, 1, 500, 0, 64), 1+m) // a re-send of sn 1
	// A marker without copies, queued behind the rest: when it arrives,
	// everything before it left.
	forceCopies(p, 0)
	marker := segment(nil, cmdPush, 3, 103, 0, 64)
	push(marker, 1)

	_ = rx.SetReadDeadline(time.Now().Add(testTimeout))
	got := make(map[string]int)
	buf := make([]byte, 2048)
	for n := 0; n < want+1; n++ {
		k, _, err := rx.ReadFrom(buf)
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", n, want, err)
		}
		got[string(buf[:k])]++
		if bytes.Equal(buf[:k], marker) {
			break
		}
	}
	for i, b := range sent {
		copies := 1 + m
		if b[4] != cmdPush || i == len(sent)-1 {
			copies = 1
		}
		if got[string(b)] != copies {
			t.Errorf("datagram %d (cmd %d, sn %d): left %d times bare, want %d", i, b[4], b[12], got[string(b)], copies)
		}
	}
	if len(got) != len(sent) {
		t.Errorf("%d distinct datagrams left, want %d (all bare)", len(got), len(sent))
	}
	a := p.ad.Load()
	a.mu.Lock()
	inflight, queued := a.inflight, a.queued
	sentPkts := a.ctl.State().SentPackets
	a.mu.Unlock()
	// Four datagrams with data left (three new, one re-send), and maybe
	// the marker: the copies are not packets sent for the controller.
	if sentPkts < 4 || sentPkts > 5 {
		t.Errorf("the controller counted %d packets sent, want 4 (or 5 with the marker)", sentPkts)
	}
	// sn 1 was re-sent (it left inflight and came back once); the marker
	// may not be counted yet.
	if mk := int64(len(marker)); inflight < size || inflight > size+mk || queued > mk {
		t.Errorf("in flight %d, queued %d: want %d in flight (each segment once) and nothing queued, marker (%d bytes) aside", inflight, queued, size, mk)
	}
}

// TestCopiesInteropKCP sends a transfer from our layer with bare copies (a
// shape of 1+2) to kcp-go's own receiver, losing every fifth datagram: kcp-go
// takes the copies as duplicate segments, drops them by sn, and delivers
// every byte once.
func TestCopiesInteropKCP(t *testing.T) {
	for _, oursIsClient := range []bool{true, false} {
		t.Run(fmt.Sprintf("ourclient=%v", oursIsClient), func(t *testing.T) {
			ours := side{ours: true, cipher: "aes", drop: 5}
			theirs := side{cipher: "aes", ds: 10, ps: 3}
			cs, ss := ours, theirs
			if !oursIsClient {
				cs, ss = theirs, ours
			}
			before := kcp.DefaultSnmp.Copy()
			e := makePair(t, cs, ss)
			p := e.cliPeer
			if p == nil {
				// The server's peer exists once the client's first packet
				// arrived: exchange a byte first, with no copies yet.
				exchange(t, e, 1)
				p = e.srvPeer
			}
			if p == nil {
				t.Fatal("no peer of ours")
			}
			p.EnableAdaptive(AdaptiveConfig{MTU: 1350})
			forceCopies(p, 2)
			exchange(t, e, 64<<10)
			after := kcp.DefaultSnmp.Copy()
			st := p.Stats().Snapshot()
			if st.FECGroupsOut != 0 {
				t.Errorf("%d FEC groups sent, want none: copies are bare", st.FECGroupsOut)
			}
			if after.FECErrs != before.FECErrs {
				t.Errorf("kcp-go counted %d FEC errors", after.FECErrs-before.FECErrs)
			}
			// kcp-go counts each copy it drops as a repeated segment.
			if rep := after.RepeatSegs - before.RepeatSegs; rep < st.SegmentsOut/2 {
				t.Errorf("kcp-go saw %d repeated segments for our %d segments sent with two copies each", rep, st.SegmentsOut)
			}
		})
	}
}

// TestCopyCountMeasuresLoss checks the receive-side measure: copies of a
// peer's datagrams, some lost, give the loss of copies, a re-send counts
// apart, and a peer that sends no copies measures nothing.
func TestCopyCountMeasuresLoss(t *testing.T) {
	var c copyCount
	sent, arrived := 0, 0
	for sn := range uint32(640) {
		for i := range 3 { // 1+2: three copies
			sent++
			if (int(sn)*3+i)%10 == 0 { // lose one copy in ten
				continue
			}
			arrived++
			c.add(sn, 1000+sn)
		}
		if sn%50 == 0 { // a re-send, once: a new timestamp
			c.add(sn, 5000+sn)
		}
	}
	seen, lost := c.take()
	if seen+lost < sent*8/10 || seen+lost > sent {
		t.Fatalf("measured %d copies (%d seen, %d lost), want about %d", seen+lost, seen, lost, sent)
	}
	if r := float64(lost) / float64(seen+lost); r < 0.08 || r > 0.12 {
		t.Errorf("measured loss %.3f, want 0.1", r)
	}
	if s, l := c.take(); s != 0 || l != 0 {
		t.Errorf("second take: %d, %d", s, l)
	}
	var plain copyCount
	for sn := range uint32(200) {
		plain.add(sn, sn)
	}
	if s, l := plain.take(); s != 0 || l != 0 {
		t.Errorf("a peer without copies measured %d seen, %d lost", s, l)
	}
	// A path that duplicates one datagram in 25 makes no copies of a peer
	// that sends none (the most any datagram of a batch arrived, 2, once
	// counted as two copies sent and half the batch lost).
	var duped copyCount
	for sn := range uint32(800) {
		duped.add(sn, sn)
		if sn%25 == 0 {
			duped.add(sn, sn)
		}
	}
	if s, l := duped.take(); l != 0 {
		t.Errorf("a peer without copies on a duplicating path measured %d seen, %d lost", s, l)
	}
	if n := testing.AllocsPerRun(100, func() { c.add(7, 7); c.add(8, 8) }); n != 0 {
		t.Errorf("add allocates %.0f times", n)
	}
}

// TestCopiesAfterFECGroup checks a change from a real FEC shape to copies:
// the group under way is finished with FEC framing and its parity, without
// copies, and the datagrams after it leave bare with their copies.
func TestCopiesAfterFECGroup(t *testing.T) {
	c, rx := pacedPair(t)
	p := c.Peer()
	p.EnableAdaptive(AdaptiveConfig{MTU: 1350})
	forceShape(p, 4, 2)
	write := func(sn uint32) []byte {
		b := segment(nil, cmdPush, sn, 100+sn, 0, 64)
		if _, err := p.write(b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	write(0)
	write(1)
	forceCopies(p, 2) // the group has two of its four data shards
	write(2)
	write(3)
	last := write(4)
	forceShape(p, 0, 0)
	marker := write(5)

	_ = rx.SetReadDeadline(time.Now().Add(testTimeout))
	buf := make([]byte, 2048)
	data, parity, bare, copies := 0, 0, 0, 0
	for n := 0; n < 20; n++ {
		k, _, err := rx.ReadFrom(buf)
		if err != nil {
			t.Fatalf("after %d datagrams: %v", n, err)
		}
		d := buf[:k]
		if bytes.Equal(d, marker) {
			break
		}
		switch {
		case bytes.Equal(d, last):
			copies++
		case k > fecHeaderSize && binary.LittleEndian.Uint16(d[fecTypeOffset:]) == typeData:
			data++
		case k > fecHeaderSize && binary.LittleEndian.Uint16(d[fecTypeOffset:]) == typeParity:
			parity++
		default:
			bare++
		}
	}
	if data != 4 || parity != 2 || copies != 3 || bare != 0 {
		t.Errorf("%d FEC data shards, %d parity, %d copies of the datagram after the group, %d other bare datagrams: want 4, 2, 3, 0", data, parity, copies, bare)
	}
}

// TestDirectDatagramsLeaveBare checks that, with Reed-Solomon FEC on, the
// datagrams that skip the pacing queue (ACKs, re-sends) leave without an FEC
// header and take no seqid: seqids then arrive in the order they were
// given, however long the queue, which the receivers' decoders need.
func TestDirectDatagramsLeaveBare(t *testing.T) {
	c, rx := pacedPair(t)
	p := c.Peer()
	p.EnableAdaptive(AdaptiveConfig{MTU: 1350})
	forceShape(p, 2, 1)
	if st, _ := p.Adaptive(); st.DataShards != 2 || st.ParityShards != 1 {
		t.Fatalf("controller state shows FEC %d+%d, want 2+1", st.DataShards, st.ParityShards)
	}
	newData := [][]byte{segment(nil, cmdPush, 0, 100, 0, 64), segment(nil, cmdPush, 1, 101, 0, 64)}
	direct := [][]byte{segment(nil, cmdAck, 0, 100, 0, 0), segment(nil, cmdPush, 0, 300, 0, 64)} // an ACK, a re-send of sn 0
	for _, b := range [][]byte{newData[0], direct[0], direct[1], newData[1]} {
		if _, err := p.write(b); err != nil {
			t.Fatal(err)
		}
	}
	// Expected: the two new segments as data shards 0 and 1, their parity
	// as shard 2, and the ACK and the re-send bare.
	_ = rx.SetReadDeadline(time.Now().Add(testTimeout))
	buf := make([]byte, 2048)
	bare := make(map[string]bool)
	framed := make(map[uint32]uint16) // seqid -> type
	for range 5 {
		n, _, err := rx.ReadFrom(buf)
		if err != nil {
			t.Fatalf("after %d bare and %d framed datagrams: %v", len(bare), len(framed), err)
		}
		d := buf[:n]
		if typ := binary.LittleEndian.Uint16(d[fecTypeOffset:]); typ == typeData || typ == typeParity {
			framed[binary.LittleEndian.Uint32(d)] = typ
			if typ == typeData && !bytes.Equal(d[fecHeaderSize:], newData[binary.LittleEndian.Uint32(d)%2]) {
				t.Errorf("data shard %d carries %x", binary.LittleEndian.Uint32(d), d[fecHeaderSize:])
			}
			continue
		}
		bare[string(d)] = true
	}
	for _, b := range direct {
		if !bare[string(b)] {
			t.Errorf("cmd %d sn %d did not leave bare", b[4], b[12])
		}
	}
	if len(framed) != 3 || framed[0] != typeData || framed[1] != typeData || framed[2] != typeParity {
		t.Errorf("FEC-framed datagrams by seqid: %v, want data 0 and 1, parity 2", framed)
	}
}
