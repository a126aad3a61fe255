package kcptun

import (
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// goldenDir holds datagrams captured from the kcptun binaries (see its README).
const goldenDir = "../shared/testdata/wire"

type goldenCapture struct {
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
		Dir string `json:"dir"`
		Hex string `json:"hex"`
	} `json:"packets"`
}

// TestGoldenClientToListener replays what a kcptun client binary sent into our
// Listener, configured as the binary's server was: the stream must arrive with
// the binary's payload, for every capture.
func TestGoldenClientToListener(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(goldenDir, "*.json"))
	if _, err := os.Stat(goldenDir); err != nil {
		t.Skipf("golden captures not found at %s (shared/ must sit beside the checkout): %v", goldenDir, err)
	}
	if len(files) == 0 {
		t.Fatalf("no captures in %s", goldenDir)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var g goldenCapture
			if err := json.Unmarshal(raw, &g); err != nil {
				t.Fatal(err)
			}
			mode, err := ParseMode(g.Mode)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := Listen("127.0.0.1:0", WithKey(g.Key), WithCrypt(g.Crypt), WithCompression(!g.NoComp),
				WithSmuxVersion(g.SmuxVer), WithFEC(g.DataShard, g.ParityShard), WithMTU(g.MTU), WithMode(mode))
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			for _, p := range g.Packets {
				if p.Dir != "c2s" {
					continue
				}
				b, err := hex.DecodeString(p.Hex)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := pc.WriteTo(b, ln.Addr()); err != nil {
					t.Fatal(err)
				}
			}
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					accepted <- nil
					return
				}
				accepted <- c
			}()
			var c net.Conn
			select {
			case c = <-accepted:
			case <-time.After(testTimeout):
				t.Fatal("no stream accepted from the binary's datagrams")
			}
			if c == nil {
				t.Fatal("Accept failed")
			}
			defer c.Close()
			want, _ := hex.DecodeString(g.PayloadHex)
			got := make([]byte, len(want))
			_ = c.SetReadDeadline(time.Now().Add(testTimeout))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatalf("reading the binary's payload: %v", err)
			}
			if string(got) != string(want) {
				t.Fatalf("payload %q, want %q", got, want)
			}
		})
	}
}
