package kcptun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/golang/snappy"

	"github.com/seed-fc8f924e/kcptun/internal/smuxwire"
)

// Neither end of a kcptun session announces its settings: the smux version
// and compression show only in the bytes themselves. The client speaks first,
// with a snappy stream identifier when it compresses, or else with a bare smux
// frame header whose first byte is the smux version. A server's first bytes
// (its keepalive, or a reply) have the same shape. This file reads that shape.

// wireFormat is what one end of a session speaks beneath the user's bytes.
type wireFormat struct {
	version    int  // smux protocol version, 1 or 2
	compressed bool // snappy framing under smux
}

// String names the format as a log line wants it, e.g. "smux v1 with compression".
func (f wireFormat) String() string {
	if f.compressed {
		return fmt.Sprintf("smux v%d with compression", f.version)
	}
	return fmt.Sprintf("smux v%d without compression", f.version)
}

// formatOf returns the format a configuration speaks.
func (c *config) formatOf() wireFormat {
	return wireFormat{version: c.smuxVersion, compressed: c.compression}
}

// errSniffShort means the bytes seen so far end before the format shows.
var errSniffShort = errors.New("kcptun: more bytes needed to tell the format")

// errNotKcptun is wrapped by the error for bytes that are neither a snappy
// stream nor a smux frame of version 1 or 2.
var errNotKcptun = errors.New("not a kcptun stream")

// maxSniff bounds how many bytes the format may take to show: the snappy
// identifier and one chunk of the largest size, with room to spare.
const maxSniff = 1 << 17

// sniffFormat tells the format of a session from the first bytes one end
// sent (after KCP, before snappy and smux). It returns errSniffShort while
// b ends too early, and an error wrapping errNotKcptun for anything else that
// is not a kcptun stream. The answer for b holds for every extension of b.
func sniffFormat(b []byte) (wireFormat, error) {
	if len(b) == 0 {
		return wireFormat{}, errSniffShort
	}
	if b[0] != 0xff { // 0xff is never a smux version
		return sniffSmux(b, false)
	}
	var head [2]byte // the first decompressed bytes
	got := 0
	for off := 0; ; {
		if off+4 > len(b) {
			return wireFormat{}, errSniffShort
		}
		kind := b[off]
		length := int(b[off+1]) | int(b[off+2])<<8 | int(b[off+3])<<16
		end := off + 4 + length
		if end > maxSniff {
			return wireFormat{}, fmt.Errorf("kcptun: no smux frame in the first %d bytes of a snappy stream: %w", maxSniff, errNotKcptun)
		}
		switch {
		case kind == 0xff:
			if length != len(snappyStreamIdentifier)-4 {
				return wireFormat{}, fmt.Errorf("kcptun: snappy identifier of length %d: %w", length, errNotKcptun)
			}
			have := b[off+4 : min(end, len(b))]
			if string(have) != snappyStreamIdentifier[4:4+len(have)] {
				return wireFormat{}, fmt.Errorf("kcptun: bad snappy identifier: %w", errNotKcptun)
			}
		case kind == snappyChunkCompressed || kind == snappyChunkUncompressed:
			if length < 4 {
				return wireFormat{}, fmt.Errorf("kcptun: snappy chunk of %d bytes: %w", length, errNotKcptun)
			}
			if end > len(b) {
				return wireFormat{}, errSniffShort
			}
			data := b[off+8 : end]
			if kind == snappyChunkCompressed {
				n, err := snappy.DecodedLen(data)
				if err != nil || n > snappyMaxBlock {
					return wireFormat{}, fmt.Errorf("kcptun: corrupt snappy chunk: %w", errNotKcptun)
				}
				if data, err = snappy.Decode(nil, data); err != nil {
					return wireFormat{}, fmt.Errorf("kcptun: corrupt snappy chunk: %w", errNotKcptun)
				}
			}
			if maskedCRC(data) != binary.LittleEndian.Uint32(b[off+4:]) {
				return wireFormat{}, fmt.Errorf("kcptun: snappy chunk checksum mismatch: %w", errNotKcptun)
			}
			got += copy(head[got:], data)
			if got == len(head) {
				return sniffSmux(head[:], true)
			}
			if got > 0 {
				if _, err := sniffSmux(head[:got], true); !errors.Is(err, errSniffShort) {
					return wireFormat{}, err
				}
			}
		case kind >= 0x80: // skippable chunk
			if end > len(b) {
				return wireFormat{}, errSniffShort
			}
		default:
			return wireFormat{}, fmt.Errorf("kcptun: snappy chunk type %#x: %w", kind, errNotKcptun)
		}
		off = end
	}
}

// sniffSmux checks the start of a smux frame header: the version, then a
// command that version knows.
func sniffSmux(h []byte, compressed bool) (wireFormat, error) {
	v := h[0]
	if !smuxwire.ValidVersion(v) {
		return wireFormat{}, fmt.Errorf("kcptun: first byte %#02x is neither a smux version nor a snappy stream: %w", v, errNotKcptun)
	}
	if len(h) < 2 {
		return wireFormat{}, errSniffShort
	}
	if h[1] > smuxwire.MaxCmd(v) {
		return wireFormat{}, fmt.Errorf("kcptun: smux v%d frame with command %d: %w", v, h[1], errNotKcptun)
	}
	return wireFormat{version: int(v), compressed: compressed}, nil
}

// readFormat reads from r until the format shows and returns it with every
// byte read, which the session must still be given.
func readFormat(r io.Reader) (wireFormat, []byte, error) {
	buf := make([]byte, 0, 256)
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= maxSniff { // sniffFormat decides before this
				return wireFormat{}, buf, fmt.Errorf("kcptun: format unknown after %d bytes: %w", len(buf), errNotKcptun)
			}
			buf = append(make([]byte, 0, min(2*cap(buf), maxSniff)), buf...)
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if n > 0 {
			f, serr := sniffFormat(buf)
			if !errors.Is(serr, errSniffShort) {
				return f, buf, serr
			}
		}
		if err != nil {
			return wireFormat{}, buf, err
		}
	}
}

// sniffConn watches the first bytes a server sends on a client session and
// reports their format once, then gets out of the way. The bytes themselves
// pass through unchanged.
type sniffConn struct {
	conn   io.ReadWriteCloser
	vw     vectorWriter
	report func(wireFormat, error)
	done   bool   // touched only by the one reading goroutine
	seen   []byte // the bytes so far, until the format shows
}

func newSniffConn(conn io.ReadWriteCloser, report func(wireFormat, error)) *sniffConn {
	vw, _ := conn.(vectorWriter)
	return &sniffConn{conn: conn, vw: vw, report: report}
}

func (s *sniffConn) Read(p []byte) (int, error) {
	n, err := s.conn.Read(p)
	if n > 0 && !s.done {
		s.seen = append(s.seen, p[:n]...)
		f, serr := sniffFormat(s.seen)
		if !errors.Is(serr, errSniffShort) {
			s.done, s.seen = true, nil
			s.report(f, serr)
		}
	}
	return n, err
}

func (s *sniffConn) Write(p []byte) (int, error) { return s.conn.Write(p) }

// WriteBuffers keeps smux and snappy on their vectored path.
func (s *sniffConn) WriteBuffers(v [][]byte) (int, error) {
	if s.vw == nil {
		return writeEach(s.conn, v)
	}
	return s.vw.WriteBuffers(v)
}

func (s *sniffConn) Close() error { return s.conn.Close() }

func writeEach(w io.Writer, v [][]byte) (int, error) {
	total := 0
	for _, b := range v {
		n, err := w.Write(b)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// fixFor names what to change on the end that speaks have so that it speaks
// want, in the forwarding programs' flags and the SDK's options.
func fixFor(have, want wireFormat) string {
	var fixes []string
	if have.version != want.version {
		fixes = append(fixes, fmt.Sprintf("-smuxver %d (WithSmuxVersion(%d))", want.version, want.version))
	}
	if have.compressed != want.compressed {
		if want.compressed {
			fixes = append(fixes, "no -nocomp (WithCompression(true))")
		} else {
			fixes = append(fixes, "-nocomp (WithCompression(false))")
		}
	}
	switch len(fixes) {
	case 0:
		return "nothing"
	case 1:
		return fixes[0]
	}
	return fixes[0] + " and " + fixes[1]
}

// logLimiter lets through at most one event per key per period (a minute
// unless set); it remembers a bounded number of keys.
type logLimiter struct {
	period time.Duration
	mu     sync.Mutex
	last   map[string]time.Time
}

// maxLimiterKeys bounds a logLimiter's memory; beyond it, keys older than the
// period are forgotten, and if none is, the event is dropped.
const maxLimiterKeys = 4096

// allow reports whether an event for key may be logged at now.
func (r *logLimiter) allow(key string, now time.Time) bool {
	period := r.period
	if period == 0 {
		period = time.Minute
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.last[key]; ok && now.Sub(t) < period {
		return false
	}
	if r.last == nil {
		r.last = make(map[string]time.Time)
	}
	if len(r.last) >= maxLimiterKeys {
		for k, t := range r.last {
			if now.Sub(t) >= period {
				delete(r.last, k)
			}
		}
		if len(r.last) >= maxLimiterKeys {
			return false
		}
	}
	r.last[key] = now
	return true
}

// hostOf returns the IP of a UDP address, or the address's string.
func hostOf(a net.Addr) string {
	if u, ok := a.(*net.UDPAddr); ok {
		return u.IP.String()
	}
	return a.String()
}
