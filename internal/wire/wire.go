// Package wire decodes the protocol layers of a kcptun session as they
// appear on the network, outside in:
//
//	UDP datagram -> crypto header (Open) -> FEC header (ParseFEC)
//	-> KCP segments (ParseSegments) -> snappy framing over the KCP byte
//	stream (DecodeSnappyStream) -> smux frames (ParseSmuxFrames)
//
// It exists to check this project against captures of the kcptun binaries
// and to feed fuzz targets, so it only parses: it keeps no session state,
// does no retransmission or reassembly, and never panics on any input.
// All integers on the wire are little-endian.
//
// Unless a function says otherwise, returned slices alias its input.
package wire

import "errors"

// Errors returned by this package. They are wrapped with detail, so test
// for them with errors.Is.
var (
	// ErrShort means the input ends before a header, or before the body a
	// header announces.
	ErrShort = errors.New("wire: input too short")
	// ErrChecksum means a CRC did not match: the CRC-32 of the crypto layer
	// (wrong key, wrong cipher or corruption) or the CRC-32C of a snappy chunk.
	ErrChecksum = errors.New("wire: checksum mismatch")
	// ErrAuth means an AEAD cipher (aes-128-gcm) rejected the datagram: wrong
	// key, wrong cipher, corruption or forgery.
	ErrAuth = errors.New("wire: authentication failed")
	// ErrNotFEC means the FEC flag is neither FECData nor FECParity.
	ErrNotFEC = errors.New("wire: not an FEC packet")
	// ErrInvalid means a field holds a value the protocol does not define,
	// such as an unknown command or a bad stream identifier.
	ErrInvalid = errors.New("wire: invalid field")
)
