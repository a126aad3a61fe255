package wire_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/golang/snappy"
	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/seed-fc8f924e/kcptun/internal/crypt"
	"github.com/seed-fc8f924e/kcptun/internal/smuxwire"
	"github.com/seed-fc8f924e/kcptun/internal/wire"
)

// The fuzz targets are seeded from the golden captures (decoded down to the
// layer each target parses) and from a few built-in inputs. Their seed
// corpora run in plain go test.

// fuzzKey is the key of the captures, so that their datagrams open.
const fuzzKey = "golden-key"

// builtinDatagram is c2s packet 1 of none_nocomp_smux1_fec0-0.json: a KCP
// PUSH carrying a smux PSH with the test payload, cipher none.
var builtinDatagram, _ = hex.DecodeString("a834309b659947bca84596c0883a70e6845ab26a2771831c51000002f300000001000000000000002300000001021b000300000068656c6c6f206b637074756e20676f6c64656e20766563746f720a")

// cipherIndex returns the position of name in crypt.Names().
func cipherIndex(tb testing.TB, name string) uint8 {
	for i, n := range crypt.Names() {
		if n == name {
			return uint8(i)
		}
	}
	tb.Fatalf("cipher %q not in crypt.Names()", name)
	return 0
}

func FuzzOpen(f *testing.F) {
	pass := crypt.DeriveKey(fuzzKey)
	names := crypt.Names()
	blocks := make([]kcp.BlockCrypt, len(names))
	for i, name := range names {
		b, err := crypt.New(name, pass)
		if err != nil {
			f.Fatal(err)
		}
		blocks[i] = b
	}
	f.Add(cipherIndex(f, "none"), builtinDatagram)
	f.Add(cipherIndex(f, "aes"), []byte{})
	f.Add(cipherIndex(f, "aes-128-gcm"), make([]byte, 28))
	for _, c := range loadCaptures(f) {
		for _, d := range c.Datagrams {
			f.Add(cipherIndex(f, c.Crypt), d)
		}
	}
	f.Fuzz(func(t *testing.T, idx uint8, d []byte) {
		name := names[int(idx)%len(names)]
		block := blocks[int(idx)%len(names)]
		orig := bytes.Clone(d)
		p, err := wire.Open(block, d)
		if !bytes.Equal(d, orig) {
			t.Fatal("Open modified its input")
		}
		if err != nil {
			if !errors.Is(err, wire.ErrShort) && !errors.Is(err, wire.ErrChecksum) && !errors.Is(err, wire.ErrAuth) {
				t.Fatalf("%s: unexpected error %v", name, err)
			}
			return
		}
		overhead := wire.CryptHeaderSize
		switch name {
		case "null":
			overhead = 0
		case "aes-128-gcm":
			overhead = 12 + 16
		}
		if len(p) != len(d)-overhead {
			t.Fatalf("%s: %d-byte payload from %d-byte datagram", name, len(p), len(d))
		}
	})
}

func FuzzParseFEC(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0xf1, 0, 2, 0})
	f.Add([]byte{10, 0, 0, 0, 0xf2, 0, 9, 9, 1, 2, 3})
	for _, c := range loadCaptures(f) {
		block := blockFor(f, c)
		for _, d := range c.Datagrams {
			if p, err := wire.Open(block, d); err == nil {
				f.Add(p)
			}
		}
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		h, body, err := wire.ParseFEC(p)
		switch {
		case err == nil:
			if !h.IsFEC() || len(body) != len(p)-wire.FECHeaderSize {
				t.Fatalf("header %+v with %d-byte body from %d bytes", h, len(body), len(p))
			}
		case errors.Is(err, wire.ErrShort):
			if len(p) >= wire.FECHeaderSize {
				t.Fatalf("ErrShort on %d bytes", len(p))
			}
		case errors.Is(err, wire.ErrNotFEC):
			if h.IsFEC() {
				t.Fatalf("ErrNotFEC with flag %#x", h.Flag)
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}

func FuzzParseSegments(f *testing.F) {
	f.Add(builtinDatagram[wire.CryptHeaderSize:])
	f.Add([]byte{})
	for _, c := range loadCaptures(f) {
		block := blockFor(f, c)
		for _, d := range c.Datagrams {
			if b := kcpBytes(block, c.FEC(), d); b != nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		segs, err := wire.ParseSegments(p)
		var again []byte
		for _, s := range segs {
			if s.Cmd < wire.CmdPush || s.Cmd > wire.CmdWins {
				t.Fatalf("returned a segment with cmd %d", s.Cmd)
			}
			again = appendSegment(again, s)
		}
		if !bytes.HasPrefix(p, again) {
			t.Fatal("segments do not rebuild a prefix of the input")
		}
		if err == nil {
			if len(again) != len(p) || len(segs) == 0 {
				t.Fatalf("success but %d of %d bytes used", len(again), len(p))
			}
		} else if !errors.Is(err, wire.ErrShort) && !errors.Is(err, wire.ErrInvalid) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// smuxSeeds returns the smux byte streams of every capture direction.
func smuxSeeds(tb testing.TB) (smux, snappyStreams [][]byte) {
	for _, c := range loadCaptures(tb) {
		byDir, _ := streams(c, blockFor(tb, c))
		for _, s := range byDir {
			if !c.NoComp {
				snappyStreams = append(snappyStreams, s)
				s, _, _ = wire.DecodeSnappyStream(s)
			}
			smux = append(smux, s)
		}
	}
	return smux, snappyStreams
}

func FuzzParseSmuxFrames(f *testing.F) {
	f.Add(builtinDatagram[wire.CryptHeaderSize+wire.SegmentHeaderSize:])
	f.Add([]byte{1, 0, 0, 0, 3, 0, 0, 0, 2, 4, 8, 0, 3, 0, 0})
	smux, _ := smuxSeeds(f)
	for _, s := range smux {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		frames, rest, err := wire.ParseSmuxFrames(p)
		var again []byte
		for _, fr := range frames {
			again = appendSmux(again, fr)
		}
		if !bytes.Equal(append(again, rest...), p) {
			t.Fatal("frames and rest do not rebuild the input")
		}
		if err == nil {
			if len(rest) >= smuxwire.HeaderSize && int(rest[2])|int(rest[3])<<8 <= len(rest)-smuxwire.HeaderSize {
				t.Fatal("a complete frame was left in rest")
			}
		} else if !errors.Is(err, wire.ErrInvalid) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}

func FuzzDecodeSnappyStream(f *testing.F) {
	f.Add([]byte(wire.SnappyStreamID))
	f.Add(appendSnappyChunk([]byte(wire.SnappyStreamID), 0x01, []byte("abc"), []byte("abc")))
	_, snappyStreams := smuxSeeds(f)
	for _, s := range snappyStreams {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		if len(p) > 1<<16 {
			return // a chunk may expand 64 KiB from a few bytes; keep runs fast
		}
		out, rest, err := wire.DecodeSnappyStream(p)
		if err != nil {
			if !errors.Is(err, wire.ErrInvalid) && !errors.Is(err, wire.ErrChecksum) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if len(p) < len(wire.SnappyStreamID) {
			return
		}
		// Differential check against golang/snappy's own reader on the
		// complete chunks.
		ref := new(bytes.Buffer)
		if _, err := ref.ReadFrom(snappy.NewReader(bytes.NewReader(p[:len(p)-len(rest)]))); err != nil {
			t.Fatalf("wire decoded %d bytes, golang/snappy failed: %v", len(out), err)
		}
		if !bytes.Equal(ref.Bytes(), out) {
			t.Fatal("wire and golang/snappy decode differently")
		}
	})
}
