package kcptun

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/seed-fc8f924e/kcptun/internal/smuxwire"
	"github.com/seed-fc8f924e/kcptun/internal/testwait"
)

// corkState reads the transport's write-delay state.
func corkState(c *kcpConn) (delaying bool, corked int, corks uint64) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.delaying, c.corked, c.corks
}

// quietSession dials an echo Listener and returns the stream and its session,
// whose smux sends no keepalive while a test runs (one would take an
// announcement meant for the test's own write).
func quietSession(t *testing.T) (net.Conn, *session) {
	t.Helper()
	ln := listenEcho(t)
	c, err := Dial(ln.Addr().String(), WithKeepAlive(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, streamSession(c)
}

// TestWriteCorking checks writeVec's rule: a write announced to be followed
// (moreFollows) turns kcp-go's write delay on, each announcement serves one
// write, an unannounced write flushes, and announced writes flush anyway
// once corkLimit bytes would wait. It writes smux NOP frames, which the
// peer ignores, through the session's transport.
func TestWriteCorking(t *testing.T) {
	_, s := quietSession(t)
	nop := smuxwire.NOP(s.version)
	write := func() int {
		t.Helper()
		before := s.base.written.Load()
		if _, err := s.tr.Write(nop[:]); err != nil {
			t.Fatal(err)
		}
		return int(s.base.written.Load() - before)
	}
	want := func(step string, delaying bool, corked int) {
		t.Helper()
		if d, n, _ := corkState(s.base); d != delaying || n != corked {
			t.Fatalf("%s: write delay %v with %d bytes corked; want %v with %d", step, d, n, delaying, corked)
		}
	}

	write()
	want("unannounced write", false, 0)
	s.base.moreFollows()
	n := write()
	want("announced write", true, n)
	write()
	want("the write after it", false, 0)

	s.base.wmu.Lock()
	s.base.corkLimit = 3*n + n/2 // three writes fit, the fourth flushes
	s.base.wmu.Unlock()
	for range 5 {
		s.base.moreFollows()
	}
	for i := 1; i <= 3; i++ {
		write()
		want("announced write under the limit", true, i*n)
	}
	write()
	want("announced write past the limit", false, 0)
	write()
	want("announced write after a flush", true, n)
	if m := s.base.more.Load(); m != 0 {
		t.Fatalf("%d announcements left after the writes they announced", m)
	}
}

// TestCorkedWriteIsSentWithoutFollower checks that bytes a write left
// unflushed go out when the announced write never comes (a stream that failed
// in between): kcp-go's timer flushes them.
func TestCorkedWriteIsSentWithoutFollower(t *testing.T) {
	c, s := quietSession(t)
	echoRoundTrip(t, c, []byte("warm"))
	st := s.peer.Stats()
	nop := smuxwire.NOP(s.version)
	s.base.moreFollows()
	if _, err := s.tr.Write(nop[:]); err != nil {
		t.Fatal(err)
	}
	if d, _, _ := corkState(s.base); !d {
		t.Fatal("the announced write did not delay its flush")
	}
	testwait.For(t, testTimeout, "KCP to send the corked frame", func() bool {
		return st.DataSent() >= s.base.written.Load()
	})
}

// TestStreamWritesCork checks that a Stream's writer announces the chunks it
// has queued, so that a long write flushes KCP less often than once a frame,
// and that every byte still arrives in order.
func TestStreamWritesCork(t *testing.T) {
	c, s := quietSession(t)
	payload := randomBytes(t, 4<<20)
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, len(payload))
		_ = c.SetReadDeadline(time.Now().Add(testTimeout))
		n, _ := io.ReadFull(c, b)
		got <- b[:n]
	}()
	if _, err := c.Write(payload); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, payload) {
		t.Fatalf("echoed %d bytes, not the %d written", len(b), len(payload))
	}
	_, _, corks := corkState(s.base)
	t.Logf("%d of %d frames corked", corks, s.base.writes.Load())
	if corks == 0 {
		t.Fatalf("%d frames written and none left its flush to the next", s.base.writes.Load())
	}
}
