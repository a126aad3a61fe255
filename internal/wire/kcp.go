package wire

import (
	"encoding/binary"
	"fmt"
)

// KCP segment commands.
const (
	// CmdPush is a segment carrying data.
	CmdPush uint8 = 81
	// CmdAck acknowledges the one segment named by its sn and ts.
	CmdAck uint8 = 82
	// CmdWask asks the peer for its window size (a window probe).
	CmdWask uint8 = 83
	// CmdWins tells the peer this side's window size.
	CmdWins uint8 = 84
)

// SegmentHeaderSize is the size of a KCP segment header.
const SegmentHeaderSize = 24

// Segment is one KCP segment.
type Segment struct {
	Conv uint32 // conversation id, the same for every segment of a session
	Cmd  uint8  // CmdPush, CmdAck, CmdWask or CmdWins
	Frg  uint8  // fragment countdown; always 0 in stream mode
	Wnd  uint16 // sender's free receive window, in segments
	TS   uint32 // timestamp (ms); on an ACK, the ts of the segment acked
	SN   uint32 // sequence number; on an ACK, the sn acked
	UNA  uint32 // every sn below this one has been received
	Data []byte // the len field's worth of bytes; empty except on a push
}

// ParseSegments parses the KCP segments that fill p, as carried by one
// datagram (after the crypto and FEC layers). Each segment is a 24-byte
// header (conv, cmd, frg, wnd, ts, sn, una, len) followed by len bytes.
//
// p must hold at least one segment and nothing else: leftover bytes too few
// for a header, or a len reaching past the end of p, yield ErrShort, and a
// command outside 81..84 yields ErrInvalid. On error the segments parsed
// before the fault are returned too. Segment data aliases p.
func ParseSegments(p []byte) ([]Segment, error) {
	if len(p) == 0 {
		return nil, fmt.Errorf("%w: no KCP segment", ErrShort)
	}
	var segs []Segment
	for off := 0; off < len(p); {
		rest := p[off:]
		if len(rest) < SegmentHeaderSize {
			return segs, fmt.Errorf("%w: %d bytes at offset %d, segment header needs %d", ErrShort, len(rest), off, SegmentHeaderSize)
		}
		s := Segment{
			Conv: binary.LittleEndian.Uint32(rest),
			Cmd:  rest[4],
			Frg:  rest[5],
			Wnd:  binary.LittleEndian.Uint16(rest[6:]),
			TS:   binary.LittleEndian.Uint32(rest[8:]),
			SN:   binary.LittleEndian.Uint32(rest[12:]),
			UNA:  binary.LittleEndian.Uint32(rest[16:]),
		}
		n := binary.LittleEndian.Uint32(rest[20:])
		if s.Cmd < CmdPush || s.Cmd > CmdWins {
			return segs, fmt.Errorf("%w: KCP command %d at offset %d", ErrInvalid, s.Cmd, off)
		}
		body := rest[SegmentHeaderSize:]
		if uint64(n) > uint64(len(body)) {
			return segs, fmt.Errorf("%w: KCP segment at offset %d announces %d bytes, %d left", ErrShort, off, n, len(body))
		}
		s.Data = body[:n:n]
		segs = append(segs, s)
		off += SegmentHeaderSize + int(n)
	}
	return segs, nil
}
