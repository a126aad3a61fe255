package wire

import (
	"encoding/binary"
	"fmt"
)

// Commands of smux frames.
const (
	// SmuxSYN opens a stream.
	SmuxSYN uint8 = 0
	// SmuxFIN ends the sender's writes on a stream.
	SmuxFIN uint8 = 1
	// SmuxPSH carries stream data.
	SmuxPSH uint8 = 2
	// SmuxNOP is a keepalive.
	SmuxNOP uint8 = 3
	// SmuxUPD is a window update (smux version 2 only).
	SmuxUPD uint8 = 4
)

// SmuxHeaderSize is the size of a smux frame header.
const SmuxHeaderSize = 8

// SmuxFrame is one smux frame.
type SmuxFrame struct {
	Ver  uint8  // protocol version, 1 or 2
	Cmd  uint8  // SmuxSYN, SmuxFIN, SmuxPSH, SmuxNOP or SmuxUPD
	SID  uint32 // stream id; the client opens odd ids from 3
	Data []byte // the len field's worth of bytes
}

// Update decodes the body of a SmuxUPD frame: the bytes of the stream the
// sender has consumed and its receive window. ok is false when f is not an
// UPD frame with an 8-byte body.
func (f SmuxFrame) Update() (consumed, window uint32, ok bool) {
	if f.Cmd != SmuxUPD || len(f.Data) != 8 {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint32(f.Data), binary.LittleEndian.Uint32(f.Data[4:]), true
}

// ParseSmuxFrames parses the complete smux frames at the start of p, a
// stretch of the byte stream of one direction. Each frame is ver u8, cmd u8,
// len u16, sid u32, then len bytes. A frame cut off by the end of p is not
// an error: its bytes are returned in rest, for the caller to complete.
//
// A version other than 1 or 2 or a command above SmuxUPD yields ErrInvalid,
// with the frames before it and rest starting at the bad frame. It does not
// check that all frames share one version; smux itself drops a session on a
// frame of the other version. Frame data aliases p.
func ParseSmuxFrames(p []byte) (frames []SmuxFrame, rest []byte, err error) {
	for len(p) >= SmuxHeaderSize {
		f := SmuxFrame{Ver: p[0], Cmd: p[1], SID: binary.LittleEndian.Uint32(p[4:])}
		if f.Ver != 1 && f.Ver != 2 {
			return frames, p, fmt.Errorf("%w: smux version %d", ErrInvalid, f.Ver)
		}
		if f.Cmd > SmuxUPD {
			return frames, p, fmt.Errorf("%w: smux command %d", ErrInvalid, f.Cmd)
		}
		n := int(binary.LittleEndian.Uint16(p[2:]))
		if len(p)-SmuxHeaderSize < n {
			break
		}
		f.Data = p[SmuxHeaderSize : SmuxHeaderSize+n : SmuxHeaderSize+n]
		frames = append(frames, f)
		p = p[SmuxHeaderSize+n:]
	}
	if len(p) == 0 {
		p = nil
	}
	return frames, p, nil
}
