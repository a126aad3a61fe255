package wire_test

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/seed-fc8f924e/kcptun/internal/crypt"
	"github.com/seed-fc8f924e/kcptun/internal/wire"
)

// captureDir is where the golden captures of the kcptun binaries live,
// relative to this package: shared/ is checked out beside the module.
const captureDir = "../../../shared/testdata/wire"

// capture is one golden capture file (see README.md in captureDir).
type capture struct {
	file        string
	Tool        string `json:"tool"`
	Key         string `json:"key"`
	Crypt       string `json:"crypt"`
	NoComp      bool   `json:"nocomp"`
	SmuxVer     int    `json:"smuxver"`
	DataShard   int    `json:"datashard"`
	ParityShard int    `json:"parityshard"`
	MTU         int    `json:"mtu"`
	Mode        string `json:"mode"`
	PayloadHex  string `json:"payload_hex"`
	Packets     []struct {
		Dir string  `json:"dir"`
		TMs float64 `json:"t_ms"`
		Hex string  `json:"hex"`
	} `json:"packets"`

	payload   []byte
	datagrams [][]byte
}

func (c *capture) fec() bool { return c.DataShard > 0 && c.ParityShard > 0 }

// loadCaptures reads every capture. It skips the test when captureDir does
// not exist and fails it when the directory holds no capture or a file does
// not parse. When skip is false a missing directory just returns nil.
func loadCaptures(tb testing.TB, skip bool) []*capture {
	tb.Helper()
	if _, err := os.Stat(captureDir); errors.Is(err, fs.ErrNotExist) {
		abs, _ := filepath.Abs(captureDir)
		if skip {
			tb.Skipf("golden captures not found at %s: check out the shared/ tree beside this module", abs)
		}
		tb.Logf("golden captures not found at %s; seeding from built-in inputs only", abs)
		return nil
	} else if err != nil {
		tb.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(captureDir, "*.json"))
	if err != nil {
		tb.Fatal(err)
	}
	if len(files) == 0 {
		tb.Fatalf("%s exists but holds no *.json capture", captureDir)
	}
	slices.Sort(files)
	var caps []*capture
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		c := &capture{file: filepath.Base(f)}
		if err := json.Unmarshal(raw, c); err != nil {
			tb.Fatalf("%s: %v", c.file, err)
		}
		if c.payload, err = hex.DecodeString(c.PayloadHex); err != nil {
			tb.Fatalf("%s: payload_hex: %v", c.file, err)
		}
		if len(c.Packets) == 0 {
			tb.Fatalf("%s: no packets", c.file)
		}
		for i, p := range c.Packets {
			d, err := hex.DecodeString(p.Hex)
			if err != nil {
				tb.Fatalf("%s: packet %d: %v", c.file, i, err)
			}
			if p.Dir != "c2s" && p.Dir != "s2c" {
				tb.Fatalf("%s: packet %d: dir %q", c.file, i, p.Dir)
			}
			c.datagrams = append(c.datagrams, d)
		}
		caps = append(caps, c)
	}
	return caps
}

// blockFor builds the cipher a capture was made with.
func blockFor(tb testing.TB, c *capture) kcp.BlockCrypt {
	tb.Helper()
	block, err := crypt.New(c.Crypt, crypt.DeriveKey(c.Key))
	if err != nil {
		tb.Fatalf("%s: crypt.New(%q): %v", c.file, c.Crypt, err)
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
	for i, d := range c.datagrams {
		segs, _ := wire.ParseSegments(kcpBytes(block, c.fec(), d))
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
