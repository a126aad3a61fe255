package kcptun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
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

// TestIdleTimeoutBound: a session that receives nothing for the idle timeout
// d is closed within d plus one keepalive interval, on the client (Dial and
// Client sessions, the server gone) and on the server (the client gone); a
// session whose peer is alive but silent survives, its keepalives count.
func TestIdleTimeoutBound(t *testing.T) {
	const (
		idle      = time.Second
		keepalive = 250 * time.Millisecond
		slack     = 750 * time.Millisecond // scheduling on a busy machine
	)
	opts := []Option{WithIdleTimeout(idle), WithKeepAlive(keepalive)}
	bound := idle + keepalive + slack

	// readFails reports how long after start a Read on c fails.
	readFails := func(t *testing.T, c net.Conn, start time.Time) time.Duration {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(testTimeout))
		_, err := c.Read(make([]byte, 1))
		took := time.Since(start)
		if err == nil || isTimeout(err) {
			t.Fatalf("Read: %v, want the session's end", err)
		}
		if !errors.Is(err, ErrIdleTimeout) || !errors.Is(err, ErrSessionClosed) {
			t.Errorf("Read: %v, want ErrIdleTimeout (and ErrSessionClosed)", err)
		}
		return took
	}

	for _, kind := range []streamKind{kindDial, kindClient} {
		t.Run("server gone/"+string(kind), func(t *testing.T) {
			ln, err := Listen("127.0.0.1:0", opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			c1, c2, stop, err := streamPair(kind, ln, "", opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
			// Quiet for longer than the timeout, both ends alive: the
			// keepalives hold the session open.
			quiet := time.NewTimer(idle + idle/2)
			<-quiet.C
			if _, err := c2.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c1, make([]byte, 1)); err != nil {
				t.Fatalf("after a quiet spell with keepalives: %v", err)
			}
			start := time.Now()
			_ = ln.Close() // vanishes without a word
			if took := readFails(t, c1, start); took > bound {
				t.Errorf("the client noticed after %v, want within %v (+%v slack)", took, idle+keepalive, slack)
			} else {
				t.Logf("the client noticed after %v", took)
			}
		})
	}
	t.Run("client gone", func(t *testing.T) {
		ln, err := Listen("127.0.0.1:0", opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		cl, err := NewClient(ln.Addr().String(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		c, err := cl.Dial()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		accepted, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer accepted.Close()
		start := time.Now()
		_ = cl.Close() // its sessions end without a word to the server
		if took := readFails(t, accepted, start); took > bound {
			t.Errorf("the server noticed after %v, want within %v (+%v slack)", took, idle+keepalive, slack)
		} else {
			t.Logf("the server noticed after %v", took)
		}
	})
}

// TestDialErrorMatrix: every dial entry point that ends because the server
// never answered matches ErrNoResponse, also when the caller's context
// deadline ended it (then context.DeadlineExceeded too); a cancelled context
// matches context.Canceled.
func TestDialErrorMatrix(t *testing.T) {
	// A UDP socket that reads and never answers.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	addr := silent.LocalAddr().String()
	const short = 300 * time.Millisecond

	type dialFunc func(ctx context.Context, opts ...Option) (net.Conn, error)
	entries := map[string]dialFunc{
		"Dial": func(_ context.Context, opts ...Option) (net.Conn, error) { return Dial(addr, opts...) },
		"DialContext": func(ctx context.Context, opts ...Option) (net.Conn, error) {
			return DialContext(ctx, addr, opts...)
		},
		"Client.Dial": func(_ context.Context, opts ...Option) (net.Conn, error) {
			cl, err := NewClient(addr, opts...)
			if err != nil {
				return nil, err
			}
			defer cl.Close()
			return cl.Dial()
		},
		"Client.DialContext": func(ctx context.Context, opts ...Option) (net.Conn, error) {
			cl, err := NewClient(addr, opts...)
			if err != nil {
				return nil, err
			}
			defer cl.Close()
			return cl.DialContext(ctx)
		},
	}
	for name, dial := range entries {
		t.Run(name+"/dial timeout", func(t *testing.T) {
			_, err := dial(context.Background(), WithDialTimeout(short))
			if !errors.Is(err, ErrNoResponse) || !errors.Is(err, context.DeadlineExceeded) || !isTimeout(err) {
				t.Errorf("got %v, want ErrNoResponse, context.DeadlineExceeded and a net.Error timeout", err)
			}
		})
		if name == "Dial" || name == "Client.Dial" {
			continue
		}
		t.Run(name+"/context deadline", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), short)
			defer cancel()
			_, err := dial(ctx)
			if !errors.Is(err, ErrNoResponse) || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("got %v, want ErrNoResponse and context.DeadlineExceeded", err)
			}
		})
		t.Run(name+"/context cancelled", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			stop := time.AfterFunc(short, cancel)
			defer stop.Stop()
			_, err := dial(ctx)
			if !errors.Is(err, context.Canceled) || errors.Is(err, ErrNoResponse) {
				t.Errorf("got %v, want context.Canceled and not ErrNoResponse", err)
			}
		})
	}
}

// TestGoleakUsualShape: a test in the shape users write (defer the
// Listener's Close, then the stream's) passes goleak right after closing,
// without sleeping, with only the two documented kcp-go ignores.
func TestGoleakUsualShape(t *testing.T) {
	for _, v := range []int{1, 2} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			// Earlier tests' goroutines are not this test's business.
			defer goleak.VerifyNone(t, append(goleakOpts, goleak.IgnoreCurrent())...)
			ln, err := Listen("127.0.0.1:0", WithSmuxVersion(v))
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			served := make(chan struct{})
			defer func() { <-served }()
			go func() {
				defer close(served)
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
			conn, err := Dial(ln.Addr().String(), WithSmuxVersion(v))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			echoRoundTrip(t, conn, []byte("hello, leak checker"))
		})
	}
}

// TestClientShutdown: Shutdown refuses new streams at once, waits for the
// open one, delivers what it wrote last, and closes the Client.
func TestClientShutdown(t *testing.T) {
	ln := listenEcho(t)
	cl, err := NewClient(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c, err := cl.Dial()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cl.Shutdown(context.Background()) }()
	waitFor(t, "Shutdown to refuse new streams", func() bool {
		s, err := cl.Dial()
		if err == nil {
			// Opened before Shutdown began: Shutdown waits for it too.
			_ = s.Close()
		}
		return errors.Is(err, net.ErrClosed)
	})
	echoRoundTrip(t, c, randomBytes(t, 256<<10)) // the open stream still works
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a stream open", err)
	default:
	}
	_ = c.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Shutdown did not return after the last stream closed")
	}

	// With a stream left open, Shutdown gives up when its context ends.
	cl2, err := NewClient(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c2, err := cl2.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := cl2.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a stream open: %v, want context.DeadlineExceeded", err)
	}
	if _, err := c2.Read(make([]byte, 1)); err == nil {
		t.Fatal("the stream still reads after Shutdown closed its Client")
	}
}

// TestCloseWaitSeesUnsentData checks the wait of a closing Dial stream in
// the state where the packet layer's count of unacknowledged segments alone
// would end it too early: KCP has data it could not send yet (the peer's
// window is shut: smux v1 has no per-stream window, and the server reads
// nothing), and everything it did send is acknowledged. The wait must not
// report the session delivered then, and must once the server reads.
func TestCloseWaitSeesUnsentData(t *testing.T) {
	opts := []Option{WithSmuxVersion(1), WithWindow(64, 64), WithSmuxBuffer(64<<10, 64<<10)}
	ln, err := Listen("127.0.0.1:0", opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	conn, err := Dial(ln.Addr().String(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	payload := randomBytes(t, 1<<20) // far more than the server's buffers and windows hold
	wrote := make(chan error, 1)
	go func() {
		_, err := conn.Write(payload)
		wrote <- err
	}()
	srv, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer srv.Close()
	sess := conn.(*Stream).sess
	st := sess.peer.Stats()
	// Wait for the state to test: data written to KCP and not sent, and
	// nothing sent left unacknowledged (polling the counters; no result
	// depends on how long it takes).
	deadline := time.Now().Add(testTimeout)
	for st.DataSent() >= sess.base.written.Load() || st.Unacked() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("KCP never held unsent data with nothing in flight: %d of %d bytes sent, %d segments unacknowledged",
				st.DataSent(), sess.base.written.Load(), st.Unacked())
		}
		time.Sleep(time.Millisecond)
	}
	if sess.waitUnacked(0, time.Now().Add(50*time.Millisecond)) {
		t.Fatalf("the wait reported everything delivered with %d bytes written to KCP and %d sent",
			sess.base.written.Load(), st.DataSent())
	}
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, len(payload))
		_, _ = io.ReadFull(srv, b)
		got <- b
	}()
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if !sess.waitUnacked(0, time.Now().Add(testTimeout)) {
		t.Fatal("the wait did not end once the server read everything")
	}
	if b := <-got; !bytes.Equal(b, payload) {
		t.Fatal("the server received other bytes than were sent")
	}
}
