package wire_test

import (
	"errors"
	"io/fs"
	"path/filepath"
	"testing"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/seed-fc8f924e/kcptun/internal/crypt"
	"github.com/seed-fc8f924e/kcptun/internal/wire"
)

// captureDir is where the golden captures of the kcptun binaries live,
// relative to this package: shared/ is checked out beside the module.
const captureDir = "../../../shared/testdata/wire"

// capture is one golden capture file (see README.md in captureDir).
type capture = wire.Capture

// loadCaptures reads every capture. It skips the test when captureDir does
// not exist and fails it when the directory holds no capture or a file does
// not parse. When skip is false a missing directory just returns nil.
func loadCaptures(tb testing.TB, skip bool) []*capture {
	tb.Helper()
	caps, err := wire.LoadCaptures(captureDir)
	if errors.Is(err, fs.ErrNotExist) {
		abs, _ := filepath.Abs(captureDir)
		if skip {
			tb.Skipf("golden captures not found at %s: check out the shared/ tree beside this module", abs)
		}
		tb.Logf("golden captures not found at %s; seeding from built-in inputs only", abs)
		return nil
	}
	if err != nil {
		tb.Fatal(err)
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
