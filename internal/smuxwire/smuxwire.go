// Package smuxwire holds everything the SDK knows about smux below smux's own
// API: the frame layout, the few frames the SDK writes itself, the checks on
// a session's first bytes, and the workarounds for smux behaviour that would
// break the net.Conn contract. No other non-test code of the module defines
// a smux constant or builds a smux frame by hand (tests keep literal frames
// on purpose, as vectors independent of this package).
//
// A smux frame is an 8-byte header, version u8 | command u8 | length u16 |
// stream id u32 (little-endian), then length bytes of body. Version 1 knows
// SYN, FIN, PSH and NOP; version 2 adds UPD, a window update whose body is
// consumed u32 | window u32.
//
// The workarounds, each with the test (root package unless named) that fails
// without it:
//
//   - Half-close keeps unread data. smux's CloseWrite arms a clean-up that
//     drops the stream's unread bytes once the peer's FIN arrives, so a reply
//     that came before the reader looked was lost. The Stream writes the FIN
//     frame itself (FIN, through the session's transport) instead.
//     TestCloseWriteKeepsReply.
//   - Window updates survive read deadlines. smux v2 sends its window update
//     under the read deadline and drops it when the deadline wins, so the
//     peer's window never reopens. The Stream re-sends the absolute count
//     (WindowUpdate), which is harmless when repeated.
//     TestExpiredReadDeadlineKeepsWindowOpen.
//   - Accepted streams have no finalizer. smux closes an accepted stream from
//     a finalizer once its wrapper is unreachable, which can close a stream
//     the user still copies through; the Listener clears it (KeepAccepted)
//     and the Stream owns the close. TestCopyWhileGCRuns.
//   - Writes are owned. smux keeps using the slice handed to its Write after
//     a deadline returned, so a deadline could leave a frame half handed over
//     or later send bytes the caller was told were not written. A Stream
//     writes through its own writer goroutine and buffers, and smux never
//     sees a write deadline (stream.go). TestWriteDeadlineNeverDuplicates.
//   - The idle timeout is the session's. smux checks for silence only once
//     per timeout period, so a dead peer would be noticed after up to twice
//     the timeout; the session runs its own idle timer and smux's check is
//     disabled (DisableKeepAliveTimeout). TestIdleTimeoutBound.
//   - Every frame the SDK writes itself is whole: smux writes one frame per
//     call on the transport and the transports serialise calls, so a frame
//     from this package written in one Write never interleaves with smux's.
package smuxwire

import (
	"encoding/binary"
	"math"
	"runtime"

	"github.com/xtaci/smux"
)

// Protocol versions of smux.
const (
	// Version1 is smux's original protocol, without flow control per stream.
	Version1 byte = 1
	// Version2 adds per-stream windows and the UPD command.
	Version2 byte = 2
)

// Commands of smux frames.
const (
	// CmdSYN opens a stream.
	CmdSYN byte = 0
	// CmdFIN ends the sender's writes on a stream.
	CmdFIN byte = 1
	// CmdPSH carries stream data.
	CmdPSH byte = 2
	// CmdNOP is a keepalive; the receiver ignores it.
	CmdNOP byte = 3
	// CmdUPD is a window update (version 2 only).
	CmdUPD byte = 4
)

// HeaderSize is the size of a smux frame header.
const HeaderSize = 8

// UpdateSize is the size of a CmdUPD frame's body: consumed, then window.
const UpdateSize = 8

// ValidVersion reports whether v is a smux protocol version.
func ValidVersion(v byte) bool { return v == Version1 || v == Version2 }

// MaxCmd returns the highest command protocol version v knows: CmdNOP for
// version 1, CmdUPD for version 2.
func MaxCmd(v byte) byte {
	if v == Version2 {
		return CmdUPD
	}
	return CmdNOP
}

// NOP returns a keepalive frame of version v. The SDK sends one as a Client's
// dial probe (the server's KCP must acknowledge it, which proves path, key
// and cipher) and as a Listener's answer to a client it refuses (its version
// and framing tell an SDK client what to switch to).
func NOP(v byte) [HeaderSize]byte {
	return [HeaderSize]byte{v, CmdNOP}
}

// FIN returns the frame of version v that ends the sender's writes on stream
// sid, sent instead of smux's CloseWrite (see the package comment).
func FIN(v byte, sid uint32) [HeaderSize]byte {
	f := [HeaderSize]byte{v, CmdFIN}
	binary.LittleEndian.PutUint32(f[4:], sid)
	return f
}

// WindowUpdate returns the version 2 window update for stream sid: consumed
// is the total the reader has taken, an absolute count, and window the
// receive window advertised to the peer.
func WindowUpdate(sid, consumed, window uint32) [HeaderSize + UpdateSize]byte {
	f := [HeaderSize + UpdateSize]byte{Version2, CmdUPD}
	binary.LittleEndian.PutUint16(f[2:], UpdateSize)
	binary.LittleEndian.PutUint32(f[4:], sid)
	binary.LittleEndian.PutUint32(f[8:], consumed)
	binary.LittleEndian.PutUint32(f[12:], window)
	return f
}

// ParseWindowUpdate reports whether the frame of header hdr and body body is
// a version 2 window update (WindowUpdate's frame), and its stream id and
// consumed total.
func ParseWindowUpdate(hdr, body []byte) (sid, consumed uint32, ok bool) {
	if len(hdr) != HeaderSize || len(body) != UpdateSize || hdr[0] != Version2 || hdr[1] != CmdUPD {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint32(hdr[4:]), binary.LittleEndian.Uint32(body), true
}

// KeepAccepted clears the finalizer smux sets on a stream it accepted, so
// that the stream is closed by its owner only (see the package comment).
func KeepAccepted(st *smux.Stream) { runtime.SetFinalizer(st, nil) }

// DisableKeepAliveTimeout pushes smux's own silence check out of the way; the
// caller judges idleness itself (see the package comment). smux still sends
// keepalives every KeepAliveInterval.
func DisableKeepAliveTimeout(c *smux.Config) { c.KeepAliveTimeout = math.MaxInt64 }
