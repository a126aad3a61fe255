package wire

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// ErrNoCaptures reports a capture directory that exists but holds no capture.
var ErrNoCaptures = errors.New("wire: no capture files")

// Capture is one golden capture of the kcptun binaries, a JSON file of
// testdata/wire (its README describes the fields): the flags both
// binaries ran with and the datagrams they exchanged.
type Capture struct {
	File        string `json:"-"` // base name of the file
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
		Dir string  `json:"dir"` // "c2s" or "s2c"
		TMs float64 `json:"t_ms"`
		Hex string  `json:"hex"`
	} `json:"packets"`

	Payload   []byte   `json:"-"` // PayloadHex decoded
	Datagrams [][]byte `json:"-"` // each packet's Hex decoded, in order
}

// FEC reports whether the capture's datagrams carry FEC headers.
func (c *Capture) FEC() bool { return c.DataShard > 0 && c.ParityShard > 0 }

// ClientDatagrams returns the datagrams the client sent, in order.
func (c *Capture) ClientDatagrams() [][]byte {
	var out [][]byte
	for i, p := range c.Packets {
		if p.Dir == "c2s" {
			out = append(out, c.Datagrams[i])
		}
	}
	return out
}

// LoadCaptures reads and checks every *.json capture in dir, sorted by name.
// A missing dir is an error wrapping fs.ErrNotExist; an empty one wraps
// ErrNoCaptures.
func LoadCaptures(dir string) ([]*Capture, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w in %s", ErrNoCaptures, dir)
	}
	slices.Sort(files)
	caps := make([]*Capture, 0, len(files))
	for _, f := range files {
		c, err := loadCapture(f)
		if err != nil {
			return nil, err
		}
		caps = append(caps, c)
	}
	return caps, nil
}

func loadCapture(path string) (*Capture, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c := &Capture{File: filepath.Base(path)}
	if err := json.Unmarshal(raw, c); err != nil {
		return nil, fmt.Errorf("%s: %w", c.File, err)
	}
	if c.Payload, err = hex.DecodeString(c.PayloadHex); err != nil {
		return nil, fmt.Errorf("%s: payload_hex: %w", c.File, err)
	}
	if len(c.Packets) == 0 {
		return nil, fmt.Errorf("%s: no packets", c.File)
	}
	for i, p := range c.Packets {
		d, err := hex.DecodeString(p.Hex)
		if err != nil {
			return nil, fmt.Errorf("%s: packet %d: %w", c.File, i, err)
		}
		if p.Dir != "c2s" && p.Dir != "s2c" {
			return nil, fmt.Errorf("%s: packet %d: dir %q", c.File, i, p.Dir)
		}
		c.Datagrams = append(c.Datagrams, d)
	}
	return c, nil
}
