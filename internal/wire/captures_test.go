package wire_test

import (
	"testing"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/seed-fc8f924e/kcptun/internal/crypt"
	"github.com/seed-fc8f924e/kcptun/internal/wire"
)

// captureDir is where the repository keeps the golden captures of the kcptun
// binaries, relative to this package.
const captureDir = "../../testdata/wire"

// capture is one golden capture file (see README.md in captureDir).
type capture = wire.Capture

// loadCaptures reads every capture. It fails the test when captureDir is
// missing or empty or a file does not parse: the repository carries them.
func loadCaptures(tb testing.TB) []*capture {
	tb.Helper()
	caps, err := wire.LoadCaptures(captureDir)
	if err != nil {
		tb.Fatalf("golden captures: %v", err)
	}
	return caps
}

// blockFor builds the cipher a capture was made with.
func blockFor(tb testing.TB, c *capture) kcp.BlockCrypt {
	tb.Helper()
	block, err := crypt.New(c.Crypt, crypt.DeriveKey(c.Key))
	if err != nil {
		tb.Fatalf("%s: crypt.New(%q): %v", c.File, c.Crypt, err)
	}
	return block
}

// kcpBytes strips the crypto and FEC layers of one datagram. It returns nil
// for parity shards and on any error.
func kcpBytes(block kcp.BlockCrypt, fec bool, datagram []byte) []byte {
	p, err := wire.Open(block, datagram)
	if err != nil {
		return nil
	}
	if !fec {
		return p
	}
	h, body, err := wire.ParseFEC(p)
	if err != nil || h.Flag != wire.FECData {
		return nil
	}
	return body
}

// streams reassembles the KCP byte stream of each direction of a capture
// from its PUSH segments in sn order, ignoring retransmissions. Missing sns
// are reported in gaps.
func streams(c *capture, block kcp.BlockCrypt) (byDir map[string][]byte, gaps []string) {
	pushes := map[string]map[uint32][]byte{"c2s": {}, "s2c": {}}
	for i, d := range c.Datagrams {
		segs, _ := wire.ParseSegments(kcpBytes(block, c.FEC(), d))
		for _, s := range segs {
			if s.Cmd == wire.CmdPush {
				pushes[c.Packets[i].Dir][s.SN] = s.Data
			}
		}
	}
	byDir = map[string][]byte{}
	for dir, m := range pushes {
		var out []byte
		for sn := uint32(0); sn < uint32(len(m)); sn++ {
			data, ok := m[sn]
			if !ok {
				gaps = append(gaps, dir)
				break
			}
			out = append(out, data...)
		}
		byDir[dir] = out
	}
	return byDir, gaps
}
