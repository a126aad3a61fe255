package packet

import "encoding/binary"

// KCP segment layout: conv u32, cmd u8, frg u8, wnd u16, ts u32, sn u32,
// una u32, len u32, then len bytes.
const (
	kcpOverhead = 24
	cmdPush     = 81
	cmdAck      = 82
	cmdWask     = 83
	cmdWins     = 84
)

// segInfo summarises the KCP segments of one datagram.
type segInfo struct {
	conv       uint32
	segs       int
	acks       int
	push       bool
	pushTS     uint32 // newest ts of a PUSH (the sender's clock)
	ack        bool
	ackTS      uint32 // newest ts echoed by an ACK (the receiver's clock)
	lastAck    int    // offset of the last ACK segment, when ack
	una        uint32 // una of the last segment
	wnd        uint16 // wnd of the last segment
	hasUna     bool
	pushes     int
	wellFormed bool
}

// tsNewer reports whether KCP timestamp a is after b, allowing for wrap.
func tsNewer(a, b uint32) bool { return int32(a-b) > 0 }

// scanSegments reads the headers of the KCP segments in p without checking
// more than their framing. wellFormed is false if p does not split exactly
// into segments of a known command.
func scanSegments(p []byte) segInfo {
	var s segInfo
	for whole := p; len(p) >= kcpOverhead; {
		cmd := p[4]
		ts := binary.LittleEndian.Uint32(p[8:])
		n := binary.LittleEndian.Uint32(p[20:])
		if cmd < cmdPush || cmd > cmdWins || uint64(n) > uint64(len(p)-kcpOverhead) {
			return s
		}
		if s.segs == 0 {
			s.conv = binary.LittleEndian.Uint32(p)
		}
		s.segs++
		s.una, s.hasUna = binary.LittleEndian.Uint32(p[16:]), true
		s.wnd = binary.LittleEndian.Uint16(p[6:])
		switch cmd {
		case cmdPush:
			if !s.push || tsNewer(ts, s.pushTS) {
				s.pushTS = ts
			}
			s.push = true
			s.pushes++
		case cmdAck:
			if !s.ack || tsNewer(ts, s.ackTS) {
				s.ackTS = ts
			}
			s.ack = true
			s.acks++
			s.lastAck = len(whole) - len(p)
		}
		p = p[kcpOverhead+int(n):]
	}
	s.wellFormed = len(p) == 0 && s.segs > 0
	return s
}
