package packet

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/seed-fc8f924e/kcptun/internal/crypt"
	"github.com/seed-fc8f924e/kcptun/internal/wire"
)

// nopPC is a PacketConn that never receives and discards what it sends.
type nopPC struct{}

func (nopPC) ReadFrom([]byte) (int, net.Addr, error)    { return 0, nil, net.ErrClosed }
func (nopPC) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }
func (nopPC) Close() error                              { return nil }
func (nopPC) LocalAddr() net.Addr                       { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (nopPC) SetDeadline(time.Time) error               { return nil }
func (nopPC) SetReadDeadline(time.Time) error           { return nil }
func (nopPC) SetWriteDeadline(time.Time) error          { return nil }

// FuzzReceive feeds datagrams to a server Conn with a bound peer, for every
// cipher. The fuzzed bytes are the plaintext (FEC header and KCP segments),
// sealed with the cipher so that they reach the FEC and KCP parsers, or,
// with raw set, the datagram itself (which must then fail authentication
// unless the cipher is null). Nothing may panic, and what reaches kcp-go
// must fit the buffer it gave. Seeds: every datagram of the golden captures.
func FuzzReceive(f *testing.F) {
	names := crypt.Names()
	caps, err := wire.LoadCaptures(captureDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		f.Fatal(err)
	}
	for _, g := range caps {
		ci := 0
		for i, n := range names {
			if n == g.Crypt {
				ci = i
			}
		}
		c := captureCipher(f, g)
		for _, d := range g.Datagrams {
			p, ok := c.open(append([]byte(nil), d...))
			if !ok {
				f.Fatalf("%s: a datagram does not open", g.File)
			}
			f.Add(uint8(ci), p, false, false)
		}
		f.Add(uint8(ci), g.Datagrams[0], true, false)
	}
	f.Add(uint8(0), []byte{1, 2, 3, 4, 0xf1, 0, 0, 0}, false, true)
	blocks := make([]kcp.BlockCrypt, len(names))
	for i, n := range names {
		b, err := crypt.New(n, testPass)
		if err != nil {
			f.Fatal(err)
		}
		blocks[i] = b
	}
	f.Fuzz(func(t *testing.T, ci uint8, in []byte, raw, elsewhere bool) {
		b := blocks[int(ci)%len(blocks)]
		c := NewConn(nopPC{}, Config{Block: b, DataShards: 10, ParityShards: 3, Migrate: true})
		conv := uint32(0)
		if len(in) >= 12 {
			conv = binary.LittleEndian.Uint32(in[8:]) // a data shard's conv
		}
		peer := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 4000}
		c.Bind(peer, conv)
		from := netip.MustParseAddrPort("10.0.0.1:4000")
		if elsewhere {
			from = netip.MustParseAddrPort("10.0.0.2:5000")
		}
		var dgram []byte
		if raw {
			dgram = append(make([]byte, 0, bufSize), in...)
		} else {
			if len(in) > MaxDatagram-c.cip.overhead() {
				in = in[:MaxDatagram-c.cip.overhead()]
			}
			dgram = append(make([]byte, c.cip.head, bufSize), in...)
			dgram = c.cip.seal(dgram, rand.NewChaCha8([32]byte{}))
		}
		if len(dgram) > MaxDatagram {
			dgram = dgram[:MaxDatagram]
		}
		out := make([]byte, MaxDatagram)
		for range 3 { // repeats exercise duplicates and the decoder's groups
			n, _, ok := c.input(append([]byte(nil), dgram...), from, out)
			if ok && (n < 0 || n > len(out)) {
				t.Fatalf("input returned %d bytes", n)
			}
		}
		for len(c.pend) > 0 {
			if len(c.pend[0]) > MaxDatagram {
				t.Fatalf("recovered a %d-byte packet", len(c.pend[0]))
			}
			c.pend = c.pend[1:]
		}
		_ = c.Close()
	})
}

// TestAuthFailureAllocatesNothing checks that a datagram failing
// authentication costs no allocation, for every cipher that authenticates.
func TestAuthFailureAllocatesNothing(t *testing.T) {
	for _, name := range crypt.Names() {
		if name == "null" {
			continue
		}
		c := NewConn(nopPC{}, Config{Block: block(t, name), DataShards: 10, ParityShards: 3, Migrate: true})
		junk := make([]byte, 1200)
		for i := range junk {
			junk[i] = byte(i * 7)
		}
		buf := make([]byte, bufSize)
		out := make([]byte, MaxDatagram)
		from := netip.MustParseAddrPort("10.0.0.9:9")
		allocs := testing.AllocsPerRun(200, func() {
			copy(buf, junk)
			if _, _, ok := c.input(buf[:len(junk)], from, out); ok {
				t.Fatalf("%s: junk authenticated", name)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %.1f allocations per rejected datagram", name, allocs)
		}
		if c.AuthFailures.Load() == 0 {
			t.Errorf("%s: failures not counted", name)
		}
	}
}
