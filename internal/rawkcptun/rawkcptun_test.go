package rawkcptun

import (
	"bytes"
	"crypto/rand"
	"io"
	"testing"
	"time"

	"github.com/xtaci/smux"

	"github.com/seed-fc8f924e/kcptun/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func testConfig(crypt string, compression bool) Config {
	return Config{
		Key: "raw-test", Crypt: crypt,
		DataShards: 10, ParityShards: 3, MTU: 1350,
		NoDelay: 1, Interval: 10, Resend: 2, NC: 1,
		ClientSndWnd: 128, ClientRcvWnd: 512, ServerSndWnd: 1024, ServerRcvWnd: 1024,
		Compression: compression,
		SockBuf:     1 << 20,
		Smux:        smux.DefaultConfig(),
	}
}

// TestRoundTrip moves random bytes both ways over a raw pair, with and
// without compression, and closes everything.
func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		crypt string
		comp  bool
	}{{"aes-comp", "aes", true}, {"gcm-nocomp", "aes-128-gcm", false}} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig(tc.crypt, tc.comp)
			ln, err := Listen("127.0.0.1:0", c)
			if err != nil {
				t.Fatal(err)
			}
			cl, err := Dial(ln.Addr().String(), c)
			if err != nil {
				_ = ln.Close()
				t.Fatal(err)
			}
			// The listener closes first: kcp-go's listener opens a session
			// for any datagram of a conversation it no longer knows, so
			// the client's last datagrams (its end of the session),
			// arriving after the server's session closed, would open one
			// that nobody accepts or closes, and its goroutines would leak.
			defer func() {
				_ = ln.Close()
				_ = cl.Close()
			}()
			st, err := cl.OpenStream()
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			srv, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			deadline := time.Now().Add(30 * time.Second)
			_ = st.SetDeadline(deadline)
			_ = srv.SetDeadline(deadline)

			up := make([]byte, 256<<10)
			_, _ = rand.Read(up)
			errc := make(chan error, 1)
			go func() {
				_, err := st.Write(up)
				errc <- err
			}()
			got := make([]byte, len(up))
			if _, err := io.ReadFull(srv, got); err != nil {
				t.Fatalf("server read: %v", err)
			}
			if err := <-errc; err != nil {
				t.Fatalf("client write: %v", err)
			}
			if !bytes.Equal(got, up) {
				t.Fatal("server got different bytes")
			}
			down := []byte("reply")
			if _, err := srv.Write(down); err != nil {
				t.Fatal(err)
			}
			back := make([]byte, len(down))
			if _, err := io.ReadFull(st, back); err != nil || !bytes.Equal(back, down) {
				t.Fatalf("client read %q, %v", back, err)
			}
		})
	}
}

// TestSnappyConnFlushesEachWrite checks that every Write reaches the
// underlying conn whole, at once, and reads back through the framing.
func TestSnappyConnFlushesEachWrite(t *testing.T) {
	var wire bytes.Buffer
	sc := NewSnappyConn(rwc{&wire})
	msgs := [][]byte{[]byte("one"), bytes.Repeat([]byte("two"), 1000), []byte("three")}
	var all []byte
	for _, m := range msgs {
		before := wire.Len()
		if n, err := sc.Write(m); err != nil || n != len(m) {
			t.Fatalf("Write: %d, %v", n, err)
		}
		if wire.Len() == before {
			t.Fatalf("Write of %d bytes left nothing on the wire", len(m))
		}
		all = append(all, m...)
	}
	got, err := io.ReadAll(NewSnappyConn(rwc{&wire}))
	if err != nil || !bytes.Equal(got, all) {
		t.Fatalf("read back %d bytes, %v; want %d", len(got), err, len(all))
	}
}

type rwc struct{ *bytes.Buffer }

func (rwc) Close() error { return nil }
