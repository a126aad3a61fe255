package packet

import "encoding/binary"

// Repeated ACKs.
//
// KCP acknowledges each segment once, in one ACK segment, and carries a
// cumulative una in every segment. An ACK of a segment that arrived above a
// hole (an sn at or after the una it was sent with) is the only word the
// sender gets of that segment until the hole is filled: when the datagram
// carrying it is lost, kcp-go's sender counts the segment as skipped by
// every later ACK and fast-retransmits it, though the peer has it. On a
// 10 Mbit/s, 20 ms path with 5 % loss each way that made about half of
// KCP's re-sends spurious, 4 % of the link.
//
// An adaptive peer therefore repeats each such ACK in the next
// ackRepeatTimes datagrams that carry an ACK of their own, until una passes
// its sn. A repeat goes before the datagram's own segments, with its
// timestamp moved back by repeatTsShift: kcp-go takes its RTT sample from a
// datagram's last ACK, which stays the datagram's own, and counts a repeat
// towards no fast retransmit, as every segment it has out was sent after
// that timestamp. kcp-go's parse_ack marks the segment acknowledged by sn
// alone. Repeats that do not fit (on a fast path KCP's ACKs fill its
// datagrams) go in a datagram of their own, sent just before: kcp-go
// re-sends as soon as it has taken a datagram whose ACKs skipped a segment
// twice. Nothing else in KCP changes, so a kcptun binary benefits as much as
// this package's sender, which restores the timestamp (repeatedAckTs). On a
// path that loses nothing no segment arrives above a hole, and nothing is
// repeated.

// ackRepeatTimes is how many later datagrams repeat an ACK.
const ackRepeatTimes = 2

// ackRepeatMax bounds the ACKs a peer keeps for repeating; the oldest go
// first.
const ackRepeatMax = 256

// repeatTsShift is how far back, in KCP milliseconds (about 12 days), a
// repeated ACK's timestamp is moved.
const repeatTsShift = 1 << 30

// ackRecord is an ACK to repeat: its sn and timestamp, and how many more
// datagrams are to repeat it.
type ackRecord struct {
	sn, ts uint32
	left   int
	in     uint32 // the datagram that last repeated it (ackRepeats.made)
}

// ackRepeats is a peer's ACKs to repeat (Peer.withRepeatedAcks), under
// Peer.smu.
type ackRepeats struct {
	recs []ackRecord
	// buf holds a datagram with repeats in front, extra a datagram of
	// repeats alone.
	buf, extra []byte
	// made counts the datagrams repeatAcks filled.
	made uint32
}

// withRepeatedAcks returns the datagram to send for b, a KCP packet from
// kcp-go, and a datagram to send before it, or nil. Only when b carries an
// ACK of its own does it repeat ACKs of earlier datagrams: in front of b's
// segments, in a buffer of the peer's own, as many as fit in the MTU; and,
// when some ACKs not yet repeated at all do not fit (on a fast path KCP's
// ACKs fill its datagrams), in the extra datagram, ended by a segment that
// acknowledges an sn below b's una with the timestamp of b's last ACK
// (kcp-go takes its RTT sample from the last ACK and ignores an sn below
// una, as in timeoutHint). It then records the ACKs in b of sns at or after
// b's una. Only adaptive peers repeat ACKs. Called under p.smu.
func (p *Peer) withRepeatedAcks(b []byte) (out, extra []byte) {
	a := p.ad.Load()
	if a == nil || len(b) < kcpOverhead {
		return b, nil
	}
	r := &p.reacks
	una := binary.LittleEndian.Uint32(b[16:])
	kept := r.recs[:0]
	for _, rec := range r.recs {
		if rec.left > 0 && int32(rec.sn-una) >= 0 {
			kept = append(kept, rec)
		}
	}
	r.recs = kept

	out = b
	if info := scanSegments(b); info.ack && len(r.recs) > 0 {
		if r.buf == nil {
			r.buf = make([]byte, 0, bufSize)
			r.extra = make([]byte, 0, bufSize)
		}
		if room := (a.cfg.MTU - len(b)) / kcpOverhead; room > 0 {
			out = append(p.repeatAcks(r.buf[:0], b[:kcpOverhead], room, false), b...)
			r.buf = out[:0]
		}
		if r.unrepeated() {
			x := p.repeatAcks(r.extra[:0], b[:kcpOverhead], a.cfg.MTU/kcpOverhead-1, true)
			x = append(x, b[info.lastAck:info.lastAck+kcpOverhead]...)
			t := x[len(x)-kcpOverhead:]
			binary.LittleEndian.PutUint32(t[12:], una-1)
			binary.LittleEndian.PutUint32(t[20:], 0)
			extra, r.extra = x, x[:0]
		}
	}

	for s := b; len(s) >= kcpOverhead; {
		n := binary.LittleEndian.Uint32(s[20:])
		if uint64(n) > uint64(len(s)-kcpOverhead) {
			break
		}
		if sn := binary.LittleEndian.Uint32(s[12:]); s[4] == cmdAck && int32(sn-una) >= 0 {
			if len(r.recs) == ackRepeatMax {
				r.recs = append(r.recs[:0], r.recs[1:]...)
			}
			r.recs = append(r.recs, ackRecord{sn: sn, ts: binary.LittleEndian.Uint32(s[8:]), left: ackRepeatTimes})
		}
		s = s[kcpOverhead+int(n):]
	}
	return out, extra
}

// unrepeated reports whether an ACK waits that was not repeated yet.
func (r *ackRepeats) unrepeated() bool {
	for _, rec := range r.recs {
		if rec.left == ackRepeatTimes {
			return true
		}
	}
	return false
}

// repeatAcks appends to buf up to n repeated ACKs, oldest first, or, with
// unrepeatedFirst, those not yet repeated before the others; each with the
// conv, window and una of hdr, a segment header. It returns buf.
func (p *Peer) repeatAcks(buf, hdr []byte, n int, unrepeatedFirst bool) []byte {
	r := &p.reacks
	r.made++
	for pass := range 2 {
		for i := range r.recs {
			rec := &r.recs[i]
			if n == 0 {
				return buf
			}
			first := !unrepeatedFirst || rec.left == ackRepeatTimes
			if rec.left == 0 || rec.in == r.made || (pass == 0) != first {
				continue
			}
			start := len(buf)
			buf = append(buf, hdr...)
			h := buf[start:]
			h[4], h[5] = cmdAck, 0
			binary.LittleEndian.PutUint32(h[8:], rec.ts-repeatTsShift)
			binary.LittleEndian.PutUint32(h[12:], rec.sn)
			binary.LittleEndian.PutUint32(h[20:], 0)
			rec.left--
			rec.in = r.made
			n--
			p.st.AcksRepeated.Add(1)
		}
	}
	return buf
}

// repeatedAckTs reports whether ackTs, the timestamp of an ACK of a
// segment first sent at ts0, is that of a repeated ACK, and the timestamp
// the ACK was first sent with.
func repeatedAckTs(ackTs, ts0 uint32) (uint32, bool) {
	if int32(ackTs-ts0) < -repeatTsShift/2 {
		return ackTs + repeatTsShift, true
	}
	return ackTs, false
}
