package forward

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	acc := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		acc <- res{c, err}
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-acc
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() {
		a.Close()
		r.c.Close()
	})
	return a.(*net.TCPConn), r.c.(*net.TCPConn)
}

// pipeRig is app <-> local ==Pipe== remote <-> peer: the test drives app and
// peer, Pipe joins local and remote.
type pipeRig struct {
	app, peer *net.TCPConn
	done      chan PipeStats
	cancel    context.CancelFunc
}

func startPipe(t *testing.T, cfg PipeConfig) *pipeRig {
	t.Helper()
	app, local := tcpPair(t)
	remote, peer := tcpPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	r := &pipeRig{app: app, peer: peer, done: make(chan PipeStats, 1), cancel: cancel}
	go func() { r.done <- Pipe(ctx, local, remote, cfg) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	for _, c := range []net.Conn{app, peer} {
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	}
	return r
}

// wait waits for Pipe to return, for at most d.
func (r *pipeRig) wait(t *testing.T, d time.Duration) PipeStats {
	t.Helper()
	select {
	case st := <-r.done:
		r.done <- st // for the cleanup
		return st
	case <-time.After(d):
		t.Fatalf("Pipe did not return within %v", d)
		return PipeStats{}
	}
}

func readAllOf(t *testing.T, c net.Conn, want string) {
	t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

func expectEOF(t *testing.T, c net.Conn) {
	t.Helper()
	var b [1]byte
	n, err := c.Read(b[:])
	if n != 0 || err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read %d bytes, %v; want the end of the stream", n, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("read timed out; want the end of the stream")
	}
}

func TestPipeCopiesBothWays(t *testing.T) {
	r := startPipe(t, PipeConfig{CloseWait: time.Minute})
	up := make([]byte, 3<<20)
	down := make([]byte, 2<<20+17)
	rng := rand.NewChaCha8([32]byte{3})
	_, _ = rng.Read(up)
	_, _ = rng.Read(down)
	errc := make(chan error, 2)
	go func() {
		_, err := r.app.Write(up)
		if err == nil {
			err = r.app.CloseWrite()
		}
		errc <- err
	}()
	go func() {
		_, err := r.peer.Write(down)
		if err == nil {
			err = r.peer.CloseWrite()
		}
		errc <- err
	}()
	gotUp, err := io.ReadAll(r.peer)
	if err != nil || !bytes.Equal(gotUp, up) {
		t.Fatalf("peer got %d bytes (%v), want %d equal bytes", len(gotUp), err, len(up))
	}
	gotDown, err := io.ReadAll(r.app)
	if err != nil || !bytes.Equal(gotDown, down) {
		t.Fatalf("app got %d bytes (%v), want %d equal bytes", len(gotDown), err, len(down))
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	st := r.wait(t, 10*time.Second)
	if st.Sent != int64(len(up)) || st.Received != int64(len(down)) || st.Err != nil {
		t.Errorf("stats = %+v, want sent %d received %d", st, len(up), len(down))
	}
}

func TestPipeCloseWaitZeroClosesBothAtOnce(t *testing.T) {
	r := startPipe(t, PipeConfig{})
	if _, err := r.app.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	if err := r.app.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	readAllOf(t, r.peer, "bye")
	expectEOF(t, r.peer)
	expectEOF(t, r.app)
	r.wait(t, 5*time.Second)
}

func TestPipeHalfClosesLocalWhenStreamEnds(t *testing.T) {
	r := startPipe(t, PipeConfig{CloseWait: time.Minute})
	if _, err := r.peer.Write([]byte("reply")); err != nil {
		t.Fatal(err)
	}
	if err := r.peer.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	readAllOf(t, r.app, "reply")
	expectEOF(t, r.app)
	// The other direction still works after the half-close...
	if _, err := r.app.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	readAllOf(t, r.peer, "late")
	// ...and its end closes everything without waiting for CloseWait.
	if err := r.app.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	expectEOF(t, r.peer)
	st := r.wait(t, 10*time.Second)
	if st.Sent != 4 || st.Received != 5 || st.Err != nil {
		t.Errorf("stats = %+v", st)
	}
}

func TestPipeHalfClosesStreamOnlyWhenAllowed(t *testing.T) {
	t.Run("allowed", func(t *testing.T) {
		r := startPipe(t, PipeConfig{CloseWait: time.Minute, HalfCloseStream: true})
		if err := r.app.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		expectEOF(t, r.peer) // the end was passed on
		if _, err := r.peer.Write([]byte("answer")); err != nil {
			t.Fatal(err)
		}
		readAllOf(t, r.app, "answer")
		r.peer.Close()
		expectEOF(t, r.app)
		r.wait(t, 10*time.Second)
	})
	t.Run("not allowed", func(t *testing.T) {
		r := startPipe(t, PipeConfig{CloseWait: time.Minute})
		if err := r.app.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		// The reply still flows; the end is not passed on, so the peer's
		// side stays open for writing and reading.
		if _, err := r.peer.Write([]byte("answer")); err != nil {
			t.Fatal(err)
		}
		readAllOf(t, r.app, "answer")
		r.peer.CloseWrite()
		expectEOF(t, r.app)
		expectEOF(t, r.peer) // Pipe closed both once both directions ended
		r.wait(t, 10*time.Second)
	})
}

func TestPipeCloseWaitBoundsTheOtherDirection(t *testing.T) {
	const wait = 200 * time.Millisecond
	r := startPipe(t, PipeConfig{CloseWait: wait})
	start := time.Now()
	if err := r.app.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	// The peer never ends its side: CloseWait must.
	st := r.wait(t, 10*time.Second)
	if el := time.Since(start); el < wait {
		t.Errorf("Pipe returned after %v, before CloseWait %v", el, wait)
	}
	if st.Err != nil {
		t.Errorf("Err = %v, want nil: Pipe closed the connections itself", st.Err)
	}
	expectEOF(t, r.app)
	expectEOF(t, r.peer)
}

func TestPipeErrorClosesBothAtOnce(t *testing.T) {
	r := startPipe(t, PipeConfig{CloseWait: time.Hour})
	if _, err := r.peer.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	readAllOf(t, r.app, "x")
	_ = r.peer.SetLinger(0)
	r.peer.Close() // a reset
	st := r.wait(t, 10*time.Second)
	if st.Err == nil {
		t.Errorf("Err = nil, want the reset")
	}
	expectEOF(t, r.app)
}

func TestPipeContextCancelClosesBoth(t *testing.T) {
	r := startPipe(t, PipeConfig{CloseWait: time.Hour})
	r.cancel()
	r.wait(t, 10*time.Second)
	expectEOF(t, r.app)
	expectEOF(t, r.peer)
}

// TestPipeThroughTunnel runs Pipe on both ends of a real kcptun session,
// as the two programs do.
func TestPipeThroughTunnel(t *testing.T) {
	target, targetAddr := startTarget(t)
	tun := startTunnel(t, targetAddr, PipeConfig{CloseWait: 30 * time.Second})

	t.Run("echo", func(t *testing.T) {
		c, err := net.Dial("tcp", tun.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		tc := <-target
		defer tc.Close()
		go func() { _, _ = io.Copy(tc, tc) }()
		data := make([]byte, 2<<20)
		_, _ = rand.NewChaCha8([32]byte{9}).Read(data)
		go func() { _, _ = c.Write(data) }()
		h := sha256.New()
		if n, err := io.CopyN(h, c, int64(len(data))); err != nil {
			t.Fatalf("echo: %d bytes: %v", n, err)
		}
		if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
			t.Fatal("echo came back different")
		}
	})

	// The target ends its side first: the client's user learns at once
	// (the server half-closes the stream), not after the server's close-wait,
	// and can still send to the target.
	t.Run("target ends first", func(t *testing.T) {
		c, err := net.Dial("tcp", tun.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := (<-target).(*net.TCPConn)
		defer tc.Close()
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := tc.Write([]byte("goodbye")); err != nil {
			t.Fatal(err)
		}
		if err := tc.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		readAllOf(t, c, "goodbye")
		expectEOF(t, c)
		if _, err := c.Write([]byte("ack")); err != nil {
			t.Fatal(err)
		}
		readAllOf(t, tc, "ack")
	})

	// The user half-closes to wait for a reply: the whole reply arrives.
	t.Run("user ends first", func(t *testing.T) {
		c, err := net.Dial("tcp", tun.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		tc := (<-target).(*net.TCPConn)
		defer tc.Close()
		if _, err := c.Write([]byte("request")); err != nil {
			t.Fatal(err)
		}
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		readAllOf(t, tc, "request")
		reply := make([]byte, 1<<20)
		_, _ = rand.NewChaCha8([32]byte{5}).Read(reply)
		go func() {
			_, _ = tc.Write(reply)
			tc.Close()
		}()
		got, err := io.ReadAll(c)
		if err != nil || !bytes.Equal(got, reply) {
			t.Fatalf("reply: %d of %d bytes, %v", len(got), len(reply), err)
		}
	})
}

// startTarget listens on loopback and hands each accepted connection to the
// test.
func startTarget(t *testing.T) (<-chan net.Conn, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan net.Conn, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ch <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ch, ln.Addr().String()
}

func TestCopyBufferedAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items on purpose under the race detector")
	}
	src := bytes.NewReader(make([]byte, 1<<20))
	r := &onlyReader{src}
	allocs := testing.AllocsPerRun(20, func() {
		_, _ = src.Seek(0, io.SeekStart)
		if n, err := copyBuffered(io.Discard, r); err != nil || n != 1<<20 {
			t.Fatalf("copied %d, %v", n, err)
		}
	})
	if allocs > 0 {
		t.Errorf("copyBuffered allocates %v times per copy", allocs)
	}
}

type onlyReader struct{ r io.Reader }

func (o *onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }
