package kcptun

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/golang/snappy"

	"github.com/seed-fc8f924e/kcptun/internal/smuxwire"
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
const snappyStreamIdentifier = "\xff\x06\x00\x00sNaPpY"

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
	r    snappyReader
	// maxBlock is the most uncompressed bytes per chunk: one smux frame, so
	// that obuf stays small (smux writes at most one frame per call).
	maxBlock int

	wmu        sync.Mutex
	wroteIdent bool
	// obuf (identifier + chunk header + largest compressed block) and
	// gather (where WriteBuffers joins its slices, up to maxBlock) are
	// taken from chunkBufs for the time of one write, so that an idle
	// session holds neither.
	obuf      []byte
	obufp     *[]byte // what obuf came from
	gatherp   *[]byte
	vec       [2][]byte
	closeOnce sync.Once
	closeErr  error
}

// identifierLen is the length of snappyStreamIdentifier; obuf keeps a copy of
// it in front of every chunk header.
const identifierLen = len(snappyStreamIdentifier)

// newCompressedConn wraps conn; frameSize is smux's largest frame payload.
func newCompressedConn(conn io.ReadWriteCloser, frameSize int) *compressedConn {
	c := &compressedConn{
		conn:     conn,
		r:        snappyReader{r: conn},
		maxBlock: min(snappyMaxBlock, frameSize+smuxwire.HeaderSize),
	}
	c.vw, _ = conn.(vectorWriter)
	return c
}

// obufLen is the size of an output buffer.
func (c *compressedConn) obufLen() int {
	return identifierLen + snappyChunkHeaderLen + snappy.MaxEncodedLen(c.maxBlock)
}

// chunkBufs recycles the buffers of the snappy framing among all the
// sessions of the process: a session holds one only while it writes or
// decodes a chunk. It is a cache, nothing depends on what it holds. (A pool
// per session would leave a buffer in almost every idle session: smux's
// keepalive writes every few seconds, and the collector empties pools only
// every two cycles, which can be minutes apart.)
var chunkBufs sync.Pool // *[]byte

// chunkBufLen is the size of a pooled buffer: the largest a session with
// the default frame size needs, or more when asked.
var chunkBufLen = identifierLen + snappyChunkHeaderLen + snappy.MaxEncodedLen(DefaultFrameSize+smuxwire.HeaderSize)

// takeChunkBuf returns a buffer of n bytes from chunkBufs; putChunkBuf
// returns it.
func takeChunkBuf(n int) *[]byte {
	if p, ok := chunkBufs.Get().(*[]byte); ok {
		if cap(*p) >= n {
			*p = (*p)[:n]
			return p
		}
		chunkBufs.Put(p) // too small for this session; right for others
	}
	b := make([]byte, n, max(n, chunkBufLen))
	return &b
}

func putChunkBuf(p *[]byte) { chunkBufs.Put(p) }

// startWrite takes the output buffer for one write; c.wmu is held.
func (c *compressedConn) startWrite() {
	c.obufp = takeChunkBuf(c.obufLen())
	c.obuf = *c.obufp
	copy(c.obuf, snappyStreamIdentifier)
}

// endWrite returns the buffers of one write to the pool; c.wmu is held.
func (c *compressedConn) endWrite() {
	putChunkBuf(c.obufp)
	c.obufp, c.obuf = nil, nil
	if c.gatherp != nil {
		putChunkBuf(c.gatherp)
		c.gatherp = nil
	}
}

// Read returns decompressed bytes from the peer's stream.
func (c *compressedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Write compresses p into one or more chunks and writes them at once.
func (c *compressedConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.startWrite()
	defer c.endWrite()
	written := 0
	for len(p) > 0 {
		block := p
		if len(block) > c.maxBlock {
			block = block[:c.maxBlock]
		}
		if err := c.writeChunk(block); err != nil {
			return written, err
		}
		written += len(block)
		p = p[len(block):]
	}
	return written, nil
}

// WriteBuffers writes the slices as if joined, one chunk for a whole smux
// frame (header and payload). Offering it also spares smux its own 64 KiB
// frame buffer per session.
func (c *compressedConn) WriteBuffers(v [][]byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.startWrite()
	defer c.endWrite()
	total := 0
	for _, b := range v {
		total += len(b)
	}
	if total <= c.maxBlock {
		c.gatherp = takeChunkBuf(c.maxBlock)
		g := (*c.gatherp)[:0]
		for _, b := range v {
			g = append(g, b...)
		}
		if err := c.writeChunk(g); err != nil {
			return 0, err
		}
		return total, nil
	}
	written := 0
	for _, b := range v {
		for len(b) > 0 {
			block := b[:min(len(b), c.maxBlock)]
			if err := c.writeChunk(block); err != nil {
				return written, err
			}
			written += len(block)
			b = b[len(block):]
		}
	}
	return written, nil
}

// writeChunk frames one block of at most maxBlock bytes. The stream
// identifier rides in front of the first chunk.
func (c *compressedConn) writeChunk(block []byte) error {
	start := identifierLen
	if !c.wroteIdent {
		start = 0
	}
	hdr := c.obuf[identifierLen : identifierLen+snappyChunkHeaderLen]
	encoded := snappy.Encode(c.obuf[identifierLen+snappyChunkHeaderLen:], block)
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
		_, err = c.conn.Write(c.obuf[start : identifierLen+snappyChunkHeaderLen+len(encoded)])
	case c.vw != nil:
		c.vec[0], c.vec[1] = c.obuf[start:identifierLen+snappyChunkHeaderLen], block
		_, err = c.vw.WriteBuffers(c.vec[:])
		c.vec[0], c.vec[1] = nil, nil
	default:
		if _, err = c.conn.Write(c.obuf[start : identifierLen+snappyChunkHeaderLen]); err == nil {
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

// snappyReader decodes a snappy framed stream. Its buffers grow to the
// largest chunk the peer actually sends (one smux frame with the binaries'
// settings) instead of the format's 64 KiB maximum, which keeps idle sessions
// small. An uncompressed chunk that fits the caller's slice is read straight
// into it.
type snappyReader struct {
	r        io.Reader
	hdr      [snappyChunkHeaderLen]byte
	decoded  *[]byte // the current chunk's decoded bytes, from chunkBufs
	pending  []byte  // what of decoded is not yet returned
	sawIdent bool
	err      error
}

// Read returns decompressed bytes. A malformed stream yields an error that
// wraps snappy.ErrCorrupt or snappy.ErrUnsupported; the end of the
// underlying stream inside a chunk is io.ErrUnexpectedEOF.
func (z *snappyReader) Read(p []byte) (int, error) {
	for len(z.pending) == 0 {
		if z.err != nil {
			return 0, z.err
		}
		if len(p) == 0 {
			return 0, nil
		}
		n, err := z.nextChunk(p)
		if err != nil {
			z.err = err
			return 0, err
		}
		if n > 0 {
			return n, nil
		}
	}
	n := copy(p, z.pending)
	z.pending = z.pending[n:]
	if len(z.pending) == 0 {
		z.dropDecoded() // drained: an idle session keeps no chunk buffer
	}
	return n, nil
}

// dropDecoded returns the decoded chunk's buffer to the pool.
func (z *snappyReader) dropDecoded() {
	if z.decoded != nil {
		putChunkBuf(z.decoded)
		z.decoded = nil
	}
}

// nextChunk reads one chunk. Data of an uncompressed chunk that fits p goes
// into p and its length is returned; otherwise the data lands in pending.
func (z *snappyReader) nextChunk(p []byte) (int, error) {
	if _, err := io.ReadFull(z.r, z.hdr[:4]); err != nil {
		return 0, err // io.EOF here is a clean end between chunks
	}
	kind := z.hdr[0]
	length := int(z.hdr[1]) | int(z.hdr[2])<<8 | int(z.hdr[3])<<16
	if kind != 0xff && !z.sawIdent {
		return 0, fmt.Errorf("kcptun: snappy stream does not start with its identifier: %w", snappy.ErrCorrupt)
	}
	switch {
	case kind == 0xff: // stream identifier
		if length != len(snappyStreamIdentifier)-4 {
			return 0, fmt.Errorf("kcptun: snappy identifier of length %d: %w", length, snappy.ErrCorrupt)
		}
		var id [6]byte
		if _, err := io.ReadFull(z.r, id[:]); err != nil {
			return 0, unexpected(err)
		}
		if string(id[:]) != snappyStreamIdentifier[4:] {
			return 0, fmt.Errorf("kcptun: bad snappy identifier: %w", snappy.ErrCorrupt)
		}
		z.sawIdent = true
		return 0, nil
	case kind == snappyChunkUncompressed:
		n := length - 4
		if n < 0 || n > snappyMaxBlock {
			return 0, fmt.Errorf("kcptun: snappy raw chunk of %d bytes: %w", length, snappy.ErrCorrupt)
		}
		if _, err := io.ReadFull(z.r, z.hdr[4:]); err != nil {
			return 0, unexpected(err)
		}
		dst := p
		if n > len(p) {
			z.dropDecoded()
			z.decoded = takeChunkBuf(n)
			dst = *z.decoded
		}
		dst = dst[:n]
		if _, err := io.ReadFull(z.r, dst); err != nil {
			return 0, unexpected(err)
		}
		if maskedCRC(dst) != binary.LittleEndian.Uint32(z.hdr[4:]) {
			return 0, fmt.Errorf("kcptun: snappy chunk checksum mismatch: %w", snappy.ErrCorrupt)
		}
		if n <= len(p) {
			return n, nil
		}
		z.pending = dst
		return 0, nil
	case kind == snappyChunkCompressed:
		if length < 4 || length > 4+snappy.MaxEncodedLen(snappyMaxBlock) {
			return 0, fmt.Errorf("kcptun: snappy chunk of %d bytes: %w", length, snappy.ErrCorrupt)
		}
		if _, err := io.ReadFull(z.r, z.hdr[4:]); err != nil {
			return 0, unexpected(err)
		}
		bp := takeChunkBuf(length - 4)
		defer putChunkBuf(bp)
		body := *bp
		if _, err := io.ReadFull(z.r, body); err != nil {
			return 0, unexpected(err)
		}
		n, err := snappy.DecodedLen(body)
		if err != nil || n > snappyMaxBlock {
			return 0, fmt.Errorf("kcptun: snappy chunk decodes to %d bytes: %w", n, snappy.ErrCorrupt)
		}
		z.dropDecoded()
		z.decoded = takeChunkBuf(n)
		out, err := snappy.Decode(*z.decoded, body)
		if err != nil {
			return 0, fmt.Errorf("kcptun: snappy chunk: %w", err)
		}
		if maskedCRC(out) != binary.LittleEndian.Uint32(z.hdr[4:]) {
			return 0, fmt.Errorf("kcptun: snappy chunk checksum mismatch: %w", snappy.ErrCorrupt)
		}
		z.pending = out
		return 0, nil
	case kind >= 0x80: // skippable chunks (0x80-0xfe, 0xfe is padding)
		if _, err := io.CopyN(io.Discard, z.r, int64(length)); err != nil {
			return 0, unexpected(err)
		}
		return 0, nil
	default: // 0x02-0x7f are reserved and must not be skipped
		return 0, fmt.Errorf("kcptun: snappy chunk type %#x: %w", kind, snappy.ErrUnsupported)
	}
}

// unexpected turns an end of stream inside a chunk into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
