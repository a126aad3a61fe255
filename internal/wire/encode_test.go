package wire_test

import (
	"encoding/binary"
	"hash/crc32"

	"github.com/seed-fc8f924e/kcptun/internal/wire"
)

// Encoders written from the layouts in the README, used to build test
// inputs and to check that parsing loses nothing.

func appendSegment(b []byte, s wire.Segment) []byte {
	b = binary.LittleEndian.AppendUint32(b, s.Conv)
	b = append(b, s.Cmd, s.Frg)
	b = binary.LittleEndian.AppendUint16(b, s.Wnd)
	b = binary.LittleEndian.AppendUint32(b, s.TS)
	b = binary.LittleEndian.AppendUint32(b, s.SN)
	b = binary.LittleEndian.AppendUint32(b, s.UNA)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.Data)))
	return append(b, s.Data...)
}

func appendSmux(b []byte, f wire.SmuxFrame) []byte {
	b = append(b, f.Ver, f.Cmd)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(f.Data)))
	b = binary.LittleEndian.AppendUint32(b, f.SID)
	return append(b, f.Data...)
}

func maskedCRC32C(data []byte) uint32 {
	c := crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))
	return (c>>15 | c<<17) + 0xa282ead8
}

// appendSnappyChunk appends a chunk of the given type whose body is crc
// followed by body; crcOf is the uncompressed data the CRC covers.
func appendSnappyChunk(b []byte, typ byte, crcOf, body []byte) []byte {
	n := 4 + len(body)
	b = append(b, typ, byte(n), byte(n>>8), byte(n>>16))
	b = binary.LittleEndian.AppendUint32(b, maskedCRC32C(crcOf))
	return append(b, body...)
}
