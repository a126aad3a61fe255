package kcptun

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestCloseWriteKeepsReply: a client sends a request and half-closes; the
// server answers and closes before the client reads a byte. smux's own
// CloseWrite would drop the unread reply when the server's end arrives.
func TestCloseWriteKeepsReply(t *testing.T) {
	for _, v := range []int{1, 2} {
		ln, err := Listen("127.0.0.1:0", WithSmuxVersion(v))
		if err != nil {
			t.Fatal(err)
		}
		// Within smux v2's initial 256 KiB window, so the server can send it
		// all before the client reads.
		reply := randomBytes(t, 200<<10)
		served := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				served <- err
				return
			}
			req, err := io.ReadAll(c) // until the client's half-close
			if err == nil && string(req) != "request" {
				err = errors.New("bad request " + string(req))
			}
			if err == nil {
				_, err = c.Write(reply)
			}
			_ = c.Close()
			served <- err
		}()
		c, err := Dial(ln.Addr().String(), WithSmuxVersion(v))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("request")); err != nil {
			t.Fatal(err)
		}
		if err := c.(*Stream).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("late")); !errors.Is(err, ErrSessionClosed) {
			t.Errorf("Write after CloseWrite: %v, want ErrSessionClosed", err)
		}
		select {
		case err := <-served:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(testTimeout):
			t.Fatalf("smux v%d: server did not finish", v)
		}
		// The server has written the reply and closed; only now does the
		// client read, so the server's end can arrive before the reply is read.
		_ = c.SetReadDeadline(time.Now().Add(testTimeout))
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("smux v%d: reading the reply: %v", v, err)
		}
		if !bytes.Equal(got, reply) {
			t.Fatalf("smux v%d: got %d reply bytes, want %d", v, len(got), len(reply))
		}
		_ = c.Close()
		_ = ln.Close()
	}
}

// TestDialCloseDeliversLastBytes: the client writes and closes at once; the
// server must receive every byte, although closing a KCP session drops what
// it has not sent.
func TestDialCloseDeliversLastBytes(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	payload := randomBytes(t, 4<<20)
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		b, _ := io.ReadAll(c)
		_ = c.Close()
		got <- b
	}()
	c, err := Dial(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(payload); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, payload) {
			t.Fatalf("server received %d of %d bytes", len(b), len(payload))
		}
	case <-time.After(testTimeout):
		t.Fatal("server never saw the end of the stream")
	}
	var _ net.Conn = c
}

// TestExpiredReadDeadlineKeepsWindowOpen reads a large transfer with read
// deadlines that have already passed whenever data is buffered. smux v2 sends
// its window update under the read deadline and drops it when the deadline
// wins, which would stall the sender forever; the Stream re-sends it.
func TestExpiredReadDeadlineKeepsWindowOpen(t *testing.T) {
	ln, err := Listen("127.0.0.1:0", WithSmuxBuffer(1<<20, 128<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const total = 8 << 20
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = c.Write(make([]byte, total))
	}()
	c, err := Dial(ln.Addr().String(), WithSmuxBuffer(1<<20, 128<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 4096)
	got := 0
	deadline := time.Now().Add(testTimeout)
	for got < total && time.Now().Before(deadline) {
		_ = c.SetReadDeadline(time.Now().Add(-time.Second)) // already passed
		n, err := c.Read(buf)
		got += n
		if n == 0 && isTimeout(err) {
			// Nothing buffered: wait for data with a live deadline.
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			n, err = c.Read(buf)
			got += n
		}
		if err != nil && !isTimeout(err) {
			t.Fatalf("after %d bytes: %v", got, err)
		}
	}
	if got != total {
		t.Fatalf("received %d of %d bytes: the sender's window did not reopen", got, total)
	}
}
