package kcptun

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// pipeTCPPair returns the two ends of a loopback TCP connection.
func pipeTCPPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
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

// pipeResult is what Pipe returned.
type pipeResult struct {
	aToB, bToA int64
	err        error
}

// pipeRig is app <-> a ==Pipe== b <-> peer: the test drives app and peer,
// Pipe joins a and b.
type pipeRig struct {
	app, peer *net.TCPConn
	done      chan pipeResult
	cancel    context.CancelFunc
}

func startPipe(t *testing.T, cfg PipeConfig) *pipeRig {
	t.Helper()
	app, a := pipeTCPPair(t)
	b, peer := pipeTCPPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	r := &pipeRig{app: app, peer: peer, done: make(chan pipeResult, 1), cancel: cancel}
	go func() {
		var res pipeResult
		res.aToB, res.bToA, res.err = Pipe(ctx, a, b, cfg)
		r.done <- res
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	for _, c := range []net.Conn{app, peer} {
		_ = c.SetDeadline(time.Now().Add(testTimeout))
	}
	return r
}

// wait waits for Pipe to return.
func (r *pipeRig) wait(t *testing.T) pipeResult {
	t.Helper()
	select {
	case res := <-r.done:
		r.done <- res // for the cleanup
		return res
	case <-time.After(testTimeout):
		t.Fatalf("Pipe did not return within %v", testTimeout)
		return pipeResult{}
	}
}

func readExactly(t *testing.T, c net.Conn, want string) {
	t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

// writeAndEnd writes msg to c and ends c's side of the connection.
func writeAndEnd(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
}

// expectEnd checks that c's peer has ended its side (or closed it).
func expectEnd(t *testing.T, c net.Conn) {
	t.Helper()
	var b [1]byte
	n, err := c.Read(b[:])
	if n != 0 || err == nil || isTimeout(err) {
		t.Fatalf("read %d bytes, %v; want the end of the stream", n, err)
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
	send := func(c *net.TCPConn, data []byte) {
		_, err := c.Write(data)
		if err == nil {
			err = c.CloseWrite()
		}
		errc <- err
	}
	go send(r.app, up)
	go send(r.peer, down)
	if got, err := io.ReadAll(r.peer); err != nil || !bytes.Equal(got, up) {
		t.Fatalf("peer got %d bytes (%v), want %d equal bytes", len(got), err, len(up))
	}
	if got, err := io.ReadAll(r.app); err != nil || !bytes.Equal(got, down) {
		t.Fatalf("app got %d bytes (%v), want %d equal bytes", len(got), err, len(down))
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	res := r.wait(t)
	if res.aToB != int64(len(up)) || res.bToA != int64(len(down)) || res.err != nil {
		t.Errorf("Pipe returned %+v, want %d, %d, nil", res, len(up), len(down))
	}
}

func TestPipeCloseWaitZeroClosesBothAtOnce(t *testing.T) {
	r := startPipe(t, PipeConfig{})
	writeAndEnd(t, r.app, "bye")
	readExactly(t, r.peer, "bye")
	expectEnd(t, r.peer)
	expectEnd(t, r.app)
	if res := r.wait(t); res.aToB != 3 || res.err != nil {
		t.Errorf("Pipe returned %+v, want 3 bytes a to b and no error", res)
	}
}

func TestPipeHalfClosesTheOtherSide(t *testing.T) {
	r := startPipe(t, PipeConfig{CloseWait: time.Minute})
	writeAndEnd(t, r.peer, "reply")
	readExactly(t, r.app, "reply")
	expectEnd(t, r.app)
	// The other direction still works after the half-close...
	if _, err := r.app.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	readExactly(t, r.peer, "late")
	// ...and its end closes everything without waiting for CloseWait.
	if err := r.app.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	expectEnd(t, r.peer)
	if res := r.wait(t); res.aToB != 4 || res.bToA != 5 || res.err != nil {
		t.Errorf("Pipe returned %+v, want 4, 5, nil", res)
	}
}

func TestPipeCloseWaitBoundsTheOtherDirection(t *testing.T) {
	const wait = 200 * time.Millisecond
	r := startPipe(t, PipeConfig{CloseWait: wait})
	start := time.Now()
	if err := r.app.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	expectEnd(t, r.peer) // the end was passed on
	// The peer never ends its side: CloseWait must.
	res := r.wait(t)
	if el := time.Since(start); el < wait {
		t.Errorf("Pipe returned after %v, before CloseWait %v", el, wait)
	}
	if res.err != nil {
		t.Errorf("err = %v, want nil: Pipe closed the connections itself", res.err)
	}
	expectEnd(t, r.app)
}

func TestPipeErrorClosesBothAtOnce(t *testing.T) {
	r := startPipe(t, PipeConfig{CloseWait: time.Hour})
	if _, err := r.peer.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	readExactly(t, r.app, "x")
	_ = r.peer.SetLinger(0)
	r.peer.Close() // a reset
	res := r.wait(t)
	if res.err == nil {
		t.Errorf("err = nil, want the reset")
	}
	expectEnd(t, r.app)
}

// TestPipeErrorDuringCloseWait: after one direction ended cleanly, a reset
// of the other ends the Pipe at once and is reported.
func TestPipeErrorDuringCloseWait(t *testing.T) {
	r := startPipe(t, PipeConfig{CloseWait: time.Hour})
	if err := r.app.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	expectEnd(t, r.peer)
	_ = r.peer.SetLinger(0)
	r.peer.Close() // a reset
	if res := r.wait(t); res.err == nil {
		t.Errorf("err = nil, want the reset")
	}
	expectEnd(t, r.app)
}

func TestPipeContextCancelClosesBoth(t *testing.T) {
	r := startPipe(t, PipeConfig{CloseWait: time.Hour})
	r.cancel()
	res := r.wait(t)
	if !errors.Is(res.err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", res.err)
	}
	expectEnd(t, r.app)
	expectEnd(t, r.peer)
}

// TestPipeHalfClosesStreamsOnlyWhenAllowed joins a TCP connection to a
// Stream: the end of the TCP side reaches the Stream's peer only with
// HalfCloseStreams.
func TestPipeHalfClosesStreamsOnlyWhenAllowed(t *testing.T) {
	for _, allowed := range []bool{true, false} {
		t.Run(map[bool]string{true: "allowed", false: "not allowed"}[allowed], func(t *testing.T) {
			ln, err := Listen("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			app, a := pipeTCPPair(t)
			_ = app.SetDeadline(time.Now().Add(testTimeout))
			st, err := Dial(ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			peer, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			_ = peer.SetDeadline(time.Now().Add(testTimeout))
			done := make(chan error, 1)
			go func() {
				_, _, err := Pipe(context.Background(), a, st, PipeConfig{CloseWait: time.Minute, HalfCloseStreams: allowed})
				done <- err
			}()
			writeAndEnd(t, app, "request")
			readExactly(t, peer, "request")
			if allowed {
				expectEnd(t, peer) // the end was passed on
			} else {
				// The end is not passed on: the peer sees nothing more.
				_ = peer.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				if n, err := peer.Read(make([]byte, 1)); n != 0 || !isTimeout(err) {
					t.Fatalf("read %d bytes, %v; want nothing until the deadline", n, err)
				}
				_ = peer.SetReadDeadline(time.Now().Add(testTimeout))
			}
			// The reply flows either way, and its end ends the Pipe.
			if _, err := peer.Write([]byte("answer")); err != nil {
				t.Fatal(err)
			}
			readExactly(t, app, "answer")
			if err := peer.(*Stream).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			expectEnd(t, app)
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Pipe: %v", err)
				}
			case <-time.After(testTimeout):
				t.Fatal("Pipe did not return")
			}
		})
	}
}

// pipeTunnel is an in-process client and server with Pipe on both ends, the
// shape of the forwarding programs without the processes.
type pipeTunnel struct {
	addr string // the client side's TCP address
}

// startPipeTunnel forwards TCP connections to its address through a Client
// and a Listener to the TCP address target.
func startPipeTunnel(tb testing.TB, target string, closeWait time.Duration, opts ...Option) *pipeTunnel {
	tb.Helper()
	kl, err := Listen("127.0.0.1:0", opts...)
	if err != nil {
		tb.Fatal(err)
	}
	cl, err := NewClient(kl.Addr().String(), opts...)
	if err != nil {
		kl.Close()
		tb.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		kl.Close()
		cl.Close()
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// forward pipes every connection ln accepts to a new one from dial.
	forward := func(ln net.Listener, dial func() (net.Conn, error), cfg PipeConfig) {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				out, err := dial()
				if err != nil {
					in.Close()
					return
				}
				_, _, _ = Pipe(ctx, in, out, cfg)
			})
		}
	}
	var d net.Dialer
	wg.Go(func() { // the server side
		forward(kl, func() (net.Conn, error) { return d.DialContext(ctx, "tcp", target) },
			PipeConfig{CloseWait: closeWait, HalfCloseStreams: true})
	})
	wg.Go(func() { // the client side
		forward(tl, func() (net.Conn, error) { return cl.DialContext(ctx) }, PipeConfig{CloseWait: closeWait})
	})
	tb.Cleanup(func() {
		tl.Close()
		kl.Close()
		cancel()
		cl.Close()
		wg.Wait()
	})
	return &pipeTunnel{addr: tl.Addr().String()}
}

// listenTCP accepts TCP connections on loopback and runs handle on each in
// a goroutine of its own, until the test ends. It returns the address.
func listenTCP(tb testing.TB, handle func(net.Conn)) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { handle(c) })
		}
	})
	tb.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// TestPipeThroughTunnel runs Pipe on both ends of a real session, as the
// forwarding programs do.
func TestPipeThroughTunnel(t *testing.T) {
	target := make(chan net.Conn, 4) // each connection the tunnel makes to its target
	targetAddr := listenTCP(t, func(c net.Conn) { target <- c })
	tun := startPipeTunnel(t, targetAddr, 30*time.Second)
	dial := func(t *testing.T) (net.Conn, *net.TCPConn) {
		t.Helper()
		c, err := net.Dial("tcp", tun.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(testTimeout))
		tc := (<-target).(*net.TCPConn)
		t.Cleanup(func() { tc.Close() })
		_ = tc.SetDeadline(time.Now().Add(testTimeout))
		return c, tc
	}

	t.Run("echo", func(t *testing.T) {
		c, tc := dial(t)
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
	// (the server side half-closes the stream), not after the close-wait,
	// and can still send to the target.
	t.Run("target ends first", func(t *testing.T) {
		c, tc := dial(t)
		writeAndEnd(t, tc, "goodbye")
		readExactly(t, c, "goodbye")
		expectEnd(t, c)
		if _, err := c.Write([]byte("ack")); err != nil {
			t.Fatal(err)
		}
		readExactly(t, tc, "ack")
	})

	// The user half-closes to wait for a reply: the whole reply arrives.
	t.Run("user ends first", func(t *testing.T) {
		c, tc := dial(t)
		writeAndEnd(t, c, "request")
		readExactly(t, tc, "request")
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

// onlyReader hides every method of a reader but Read.
type onlyReader struct{ r io.Reader }

func (o *onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestPipeCopyAllocatesNothing(t *testing.T) {
	if raceDetector {
		t.Skip("sync.Pool drops items on purpose under the race detector")
	}
	src := bytes.NewReader(make([]byte, 1<<20))
	r := &onlyReader{src}
	allocs := testing.AllocsPerRun(20, func() {
		_, _ = src.Seek(0, io.SeekStart)
		if n, err := pipeCopy(io.Discard, r); err != nil || n != 1<<20 {
			t.Fatalf("copied %d, %v", n, err)
		}
	})
	if allocs > 0 {
		t.Errorf("pipeCopy allocates %v times per copy", allocs)
	}
}

// BenchmarkPipeUp moves 16 MiB of incompressible bytes per iteration through
// an in-process tunnel (TCP, Pipe, Client, Listener, Pipe, TCP), client to
// target.
func BenchmarkPipeUp(b *testing.B) {
	const size = 16 << 20
	for _, bc := range []struct {
		name string
		opts []Option
	}{
		{"default", nil},
		{"gcm-nocomp", []Option{WithCrypt("aes-128-gcm"), WithCompression(false)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tun := startPipeTunnel(b, startPipeSink(b), 0, bc.opts...)
			block := make([]byte, 1<<20)
			_, _ = rand.NewChaCha8([32]byte{1}).Read(block)
			b.SetBytes(size)
			for b.Loop() {
				c, err := net.Dial("tcp", tun.addr)
				if err != nil {
					b.Fatal(err)
				}
				_ = c.SetDeadline(time.Now().Add(time.Minute))
				var hdr [8]byte
				for i := range hdr {
					hdr[i] = byte(int64(size) >> (56 - 8*i))
				}
				_, _ = c.Write(hdr[:])
				for left := size; left > 0; left -= len(block) {
					if _, err := c.Write(block[:min(left, len(block))]); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := io.ReadFull(c, hdr[:1]); err != nil {
					b.Fatal("no receipt: " + err.Error())
				}
				c.Close()
			}
		})
	}
}

// startPipeSink accepts TCP connections; each sends an 8-byte length and
// that many bytes, and gets one byte back once they all arrived.
func startPipeSink(tb testing.TB) string {
	return listenTCP(tb, func(c net.Conn) {
		defer c.Close()
		var n [8]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return
		}
		want := int64(0)
		for _, b := range n {
			want = want<<8 | int64(b)
		}
		if got, _ := io.CopyN(io.Discard, c, want); got == want {
			_, _ = c.Write([]byte{1})
		}
	})
}
