package wire

import (
	"encoding/binary"
	"fmt"

	"github.com/seed-fc8f924e/kcptun/internal/smuxwire"
)

// SmuxFrame is one smux frame.
type SmuxFrame struct {
	Ver  uint8  // protocol version, 1 or 2
	Cmd  uint8  // one of the smuxwire.Cmd constants
	SID  uint32 // stream id; the client opens odd ids from 3
	Data []byte // the len field's worth of bytes
}

// Update decodes the body of a smuxwire.CmdUPD frame: the bytes of the stream the
// sender has consumed and its receive window. ok is false when f is not an
// UPD frame with an 8-byte body.
func (f SmuxFrame) Update() (consumed, window uint32, ok bool) {
	if f.Cmd != smuxwire.CmdUPD || len(f.Data) != smuxwire.UpdateSize {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint32(f.Data), binary.LittleEndian.Uint32(f.Data[4:]), true
}

// ParseSmuxFrames parses the complete smux frames at the start of p, a
// stretch of the byte stream of one direction. Each frame is ver u8, cmd u8,
// len u16, sid u32, then len bytes. A frame cut off by the end of p is not
// an error: its bytes are returned in rest, for the caller to complete.
//
// A version other than 1 or 2 or a command above smuxwire.CmdUPD yields ErrInvalid,
// with the frames before it and rest starting at the bad frame. It does not
// check that all frames share one version; smux itself drops a session on a
// frame of the other version. Frame data aliases p.
func ParseSmuxFrames(p []byte) (frames []SmuxFrame, rest []byte, err error) {
	for len(p) >= smuxwire.HeaderSize {
		f := SmuxFrame{Ver: p[0], Cmd: p[1], SID: binary.LittleEndian.Uint32(p[4:])}
		if !smuxwire.ValidVersion(f.Ver) {
			return frames, p, fmt.Errorf("%w: smux version %d", ErrInvalid, f.Ver)
		}
		if f.Cmd > smuxwire.CmdUPD {
			return frames, p, fmt.Errorf("%w: smux command %d", ErrInvalid, f.Cmd)
		}
		n := int(binary.LittleEndian.Uint16(p[2:]))
		if len(p)-smuxwire.HeaderSize < n {
			break
		}
		f.Data = p[smuxwire.HeaderSize : smuxwire.HeaderSize+n : smuxwire.HeaderSize+n]
		frames = append(frames, f)
		p = p[smuxwire.HeaderSize+n:]
	}
	if len(p) == 0 {
		p = nil
	}
	return frames, p, nil
}
