package kcptun

import (
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/seed-fc8f924e/kcptun/internal/testwait"
)

// TestOpenStreamHoldsReads checks what openStream relies on: while a stream
// is being opened, the transport hands smux none of the peer's bytes, so a
// peer that answers at once cannot reach smux before smux has recorded the
// stream (smux drops frames of a stream it does not know); they are
// delivered once the opening ends.
func TestOpenStreamHoldsReads(t *testing.T) {
	ln := listenEcho(t)
	c, err := Dial(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := streamSession(c)
	dataIn := func() uint64 { st := s.stats(); return st.SegmentsReceived - st.AcksReceived }
	before := dataIn()

	s.base.opening.Lock() // as openStream holds it
	held := true
	defer func() {
		if held {
			s.base.opening.Unlock()
		}
	}()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "the echo to reach the client's session", func() bool { return dataIn() > before })
	_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	buf := make([]byte, 4)
	if n, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %q, %v while a stream was being opened; want nothing until the opening ends", buf[:n], err)
	}
	s.base.opening.Unlock()
	held = false
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("after the opening: read %q, %v; want the echo", buf, err)
	}
}
