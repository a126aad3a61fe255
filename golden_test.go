package kcptun

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/seed-fc8f924e/kcptun/internal/wire"
)

// goldenDir holds datagrams captured from the kcptun binaries (see its
// README); the repository carries them, so a missing directory is a failure.
const goldenDir = "testdata/wire"

// TestGoldenClientToListener replays what a kcptun client binary sent into our
// Listener, configured as the binary's server was: the stream must arrive with
// the binary's payload, for every capture.
func TestGoldenClientToListener(t *testing.T) {
	caps, err := wire.LoadCaptures(goldenDir)
	if err != nil {
		t.Fatalf("golden captures: %v", err)
	}
	for _, g := range caps {
		for _, adaptive := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/adaptive=%v", g.File, adaptive), func(t *testing.T) {
				mode, err := ParseMode(g.Mode)
				if err != nil {
					t.Fatal(err)
				}
				ln, err := Listen("127.0.0.1:0", WithKey(g.Key), WithCrypt(g.Crypt), WithCompression(!g.NoComp),
					WithSmuxVersion(g.SmuxVer), WithFEC(g.DataShard, g.ParityShard), WithMTU(g.MTU), WithMode(mode),
					WithAdaptive(adaptive))
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				pc, err := net.ListenPacket("udp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer pc.Close()
				for _, d := range g.ClientDatagrams() {
					if _, err := pc.WriteTo(d, ln.Addr()); err != nil {
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
				want := g.Payload
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
}
