package wire

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/golang/snappy"
)

// SnappyStreamID is the stream identifier chunk that starts every snappy
// framed stream: type 0xff, length 6, "sNaPpY".
const SnappyStreamID = "\xff\x06\x00\x00sNaPpY"

// Snappy framing chunk types and limits.
const (
	snappyCompressed   = 0x00
	snappyRaw          = 0x01
	snappyPadding      = 0xfe
	snappyStreamIDType = 0xff
	snappyMaxBlock     = 65536 // largest uncompressed data in one chunk
	snappyChunkHeader  = 4     // type u8 | length u24
	snappyCRCSize      = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// snappyMaskedCRC is the framing format's masked CRC-32C of the
// uncompressed data.
func snappyMaskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return (c>>15 | c<<17) + 0xa282ead8
}

// DecodeSnappyStream decodes the beginning of a snappy framed stream (the
// compression kcptun runs over each direction of a KCP session). p must
// start with SnappyStreamID; the chunks after it are decoded and their
// masked CRC-32C checked, and their data is returned concatenated in out,
// which does not alias p.
//
// A chunk cut off by the end of p is not an error: its bytes are returned in
// rest, so a caller can append more input and call again (keeping the
// identifier in front). Likewise, a p that is a proper prefix of
// SnappyStreamID returns (nil, p, nil).
//
// Errors: ErrInvalid for a missing or bad stream identifier, an unknown
// unskippable chunk type, a chunk too small for its CRC, or data over 64 KiB
// in one chunk; ErrChecksum for a CRC mismatch; a snappy decoding error is
// wrapped in ErrInvalid too. out holds the data decoded before the fault.
func DecodeSnappyStream(p []byte) (out, rest []byte, err error) {
	if len(p) < len(SnappyStreamID) {
		if string(p) == SnappyStreamID[:len(p)] {
			return nil, p, nil
		}
		return nil, nil, fmt.Errorf("%w: snappy stream identifier missing", ErrInvalid)
	}
	if string(p[:len(SnappyStreamID)]) != SnappyStreamID {
		return nil, nil, fmt.Errorf("%w: snappy stream identifier missing, stream starts % x", ErrInvalid, p[:len(SnappyStreamID)])
	}
	for off := len(SnappyStreamID); off < len(p); {
		chunk := p[off:]
		if len(chunk) < snappyChunkHeader {
			return out, chunk, nil
		}
		typ := chunk[0]
		n := int(chunk[1]) | int(chunk[2])<<8 | int(chunk[3])<<16
		if len(chunk)-snappyChunkHeader < n {
			return out, chunk, nil
		}
		body := chunk[snappyChunkHeader : snappyChunkHeader+n]
		switch {
		case typ == snappyCompressed || typ == snappyRaw:
			if n < snappyCRCSize {
				return out, nil, fmt.Errorf("%w: snappy chunk at offset %d has %d bytes, no room for its CRC", ErrInvalid, off, n)
			}
			want := binary.LittleEndian.Uint32(body)
			data := body[snappyCRCSize:]
			if typ == snappyCompressed {
				size, err := snappy.DecodedLen(data)
				if err != nil {
					return out, nil, fmt.Errorf("%w: snappy chunk at offset %d: %v", ErrInvalid, off, err)
				}
				if size > snappyMaxBlock {
					return out, nil, fmt.Errorf("%w: snappy chunk at offset %d decodes to %d bytes, limit %d", ErrInvalid, off, size, snappyMaxBlock)
				}
				if data, err = snappy.Decode(nil, data); err != nil {
					return out, nil, fmt.Errorf("%w: snappy chunk at offset %d: %v", ErrInvalid, off, err)
				}
			} else if len(data) > snappyMaxBlock {
				return out, nil, fmt.Errorf("%w: raw snappy chunk at offset %d holds %d bytes, limit %d", ErrInvalid, off, len(data), snappyMaxBlock)
			}
			if got := snappyMaskedCRC(data); got != want {
				return out, nil, fmt.Errorf("%w: snappy chunk at offset %d: masked crc32c %08x, header says %08x", ErrChecksum, off, got, want)
			}
			out = append(out, data...)
		case typ == snappyStreamIDType:
			// The identifier may be repeated, for example where two streams
			// were concatenated.
			if string(chunk[:snappyChunkHeader+n]) != SnappyStreamID {
				return out, nil, fmt.Errorf("%w: bad snappy stream identifier at offset %d", ErrInvalid, off)
			}
		case typ >= 0x80:
			// Padding (0xfe) and reserved skippable chunks (0x80-0xfd).
		default:
			return out, nil, fmt.Errorf("%w: reserved unskippable snappy chunk type %#02x at offset %d", ErrInvalid, typ, off)
		}
		off += snappyChunkHeader + n
	}
	return out, nil, nil
}
