package kcptun

import (
	"encoding/binary"
	"hash/crc32"
	"io"
	"sync"

	"github.com/golang/snappy"
)

// The snappy framing format (github.com/google/snappy, framing_format.txt):
// a stream identifier chunk, then chunks of type u8 | length u24 | body, where
// a data chunk's body starts with the masked CRC-32C of its uncompressed bytes.
const (
	snappyChunkCompressed   = 0x00
	snappyChunkUncompressed = 0x01
	snappyChunkHeaderLen    = 4 + 4 // type+length, then the checksum
	snappyMaxBlock          = 65536
)

// snappyStreamIdentifier is the first chunk of every snappy framed stream.
var snappyStreamIdentifier = []byte{0xff, 0x06, 0x00, 0x00, 's', 'N', 'a', 'P', 'p', 'Y'}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maskedCRC is the checksum the framing format stores: CRC-32C, rotated and offset.
func maskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return (c>>15 | c<<17) + 0xa282ead8
}

// vectorWriter is implemented by kcp-go's UDPSession: several slices, one call.
type vectorWriter interface {
	WriteBuffers(v [][]byte) (int, error)
}

// compressedConn carries a byte stream through snappy framing, wire-compatible
// with the kcptun binaries. Every Write goes out as whole chunks at once (there
// is no buffering to flush), so each smux frame leaves without delay. Reads
// decode the peer's framed stream. It allocates nothing per call once built.
type compressedConn struct {
	conn io.ReadWriteCloser
	vw   vectorWriter // conn as a vectorWriter, or nil
	r    *snappy.Reader

	wmu           sync.Mutex
	wroteIdent    bool
	obuf          []byte // identifier + chunk header + largest compressed block
	vec           [2][]byte
	closeOnce     sync.Once
	closeErr      error
	identifierLen int
}

func newCompressedConn(conn io.ReadWriteCloser) *compressedConn {
	c := &compressedConn{
		conn:          conn,
		r:             snappy.NewReader(conn),
		identifierLen: len(snappyStreamIdentifier),
	}
	c.vw, _ = conn.(vectorWriter)
	c.obuf = make([]byte, c.identifierLen+snappyChunkHeaderLen+snappy.MaxEncodedLen(snappyMaxBlock))
	copy(c.obuf, snappyStreamIdentifier)
	return c
}

// Read returns decompressed bytes from the peer's stream.
func (c *compressedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Write compresses p into one or more chunks and writes them at once.
func (c *compressedConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	written := 0
	for len(p) > 0 {
		block := p
		if len(block) > snappyMaxBlock {
			block = block[:snappyMaxBlock]
		}
		if err := c.writeChunk(block); err != nil {
			return written, err
		}
		written += len(block)
		p = p[len(block):]
	}
	return written, nil
}

// writeChunk frames one block of at most snappyMaxBlock bytes. The stream
// identifier rides in front of the first chunk.
func (c *compressedConn) writeChunk(block []byte) error {
	start := c.identifierLen
	if !c.wroteIdent {
		start = 0
	}
	hdr := c.obuf[c.identifierLen : c.identifierLen+snappyChunkHeaderLen]
	encoded := snappy.Encode(c.obuf[c.identifierLen+snappyChunkHeaderLen:], block)
	kind, body := byte(snappyChunkCompressed), encoded
	if len(encoded) >= len(block)-len(block)/8 {
		// Not worth it: send the block as it is (the same 12.5 % rule as the
		// reference encoder).
		kind, body = snappyChunkUncompressed, block
	}
	chunkLen := 4 + len(body)
	hdr[0] = kind
	hdr[1], hdr[2], hdr[3] = byte(chunkLen), byte(chunkLen>>8), byte(chunkLen>>16)
	binary.LittleEndian.PutUint32(hdr[4:], maskedCRC(block))

	var err error
	switch {
	case kind == snappyChunkCompressed:
		_, err = c.conn.Write(c.obuf[start : c.identifierLen+snappyChunkHeaderLen+len(encoded)])
	case c.vw != nil:
		c.vec[0], c.vec[1] = c.obuf[start:c.identifierLen+snappyChunkHeaderLen], block
		_, err = c.vw.WriteBuffers(c.vec[:])
		c.vec[0], c.vec[1] = nil, nil
	default:
		if _, err = c.conn.Write(c.obuf[start : c.identifierLen+snappyChunkHeaderLen]); err == nil {
			_, err = c.conn.Write(block)
		}
	}
	if err != nil {
		return err
	}
	c.wroteIdent = true
	return nil
}

// Close closes the underlying connection once.
func (c *compressedConn) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.conn.Close() })
	return c.closeErr
}
