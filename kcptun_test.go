package kcptun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed-fc8f924e/kcptun/internal/crypt"
	"github.com/seed-fc8f924e/kcptun/internal/testwait"
	"go.uber.org/goleak"
)

// TestEchoMatrix sends data through Dial and Listen and back for every cipher,
// compression on and off, smux 1 and 2, FEC on and off, and adaptation on
// and off.
func TestEchoMatrix(t *testing.T) {
	payload := randomBytes(t, 96<<10)
	for _, name := range crypt.Names() {
		for _, comp := range []bool{true, false} {
			for _, smuxVer := range []int{1, 2} {
				// Adaptation on with FEC pinned or adaptive (-1), and off
				// (the binaries' fixed behaviour) with FEC on and off.
				for _, v := range []struct {
					adaptive bool
					fec      [2]int
				}{{true, [2]int{10, 3}}, {true, [2]int{-1, -1}}, {false, [2]int{10, 3}}, {false, [2]int{0, 0}}} {
					fec := v.fec
					t.Run(fmt.Sprintf("%s/comp=%v/smux%d/fec%d-%d/adaptive=%v", name, comp, smuxVer, fec[0], fec[1], v.adaptive), func(t *testing.T) {
						opts := []Option{WithKey("matrix"), WithCrypt(name), WithCompression(comp),
							WithSmuxVersion(smuxVer), WithMode(ModeFast3), WithAdaptive(v.adaptive)}
						if fec[0] >= 0 {
							opts = append(opts, WithFEC(fec[0], fec[1]))
						}
						ln := listenEcho(t, opts...)
						c, err := Dial(ln.Addr().String(), opts...)
						if err != nil {
							t.Fatalf("Dial: %v", err)
						}
						defer c.Close()
						echoRoundTrip(t, c, payload)
					})
				}
			}
		}
	}
}

// TestDefaultsInterwork checks that two zero-option ends talk.
func TestDefaultsInterwork(t *testing.T) {
	ln := listenEcho(t)
	c, err := Dial(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoRoundTrip(t, c, randomBytes(t, 1<<20))
	if got := c.RemoteAddr().String(); got != ln.Addr().String() {
		t.Errorf("RemoteAddr %s, want the listener's %s", got, ln.Addr())
	}
}

// TestClientManyStreams runs 64 concurrent streams over a Client with two sessions.
func TestClientManyStreams(t *testing.T) {
	ln := listenEcho(t, WithMode(ModeFast2))
	cl, err := NewClient(ln.Addr().String(), WithConns(2), WithMode(ModeFast2))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	payload := randomBytes(t, 64<<10)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := cl.Dial()
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			echoRoundTrip(t, c, payload)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s := ln.Stats(); s.TotalSessions != 2 {
		t.Errorf("server saw %d sessions, want 2 (WithConns(2))", s.TotalSessions)
	}
}

// TestCopyWhileGCRuns copies a stream with io.Copy while the collector runs
// constantly: smux's finalizer on accepted streams must not close them.
func TestCopyWhileGCRuns(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(1))
	ln, err := Listen("127.0.0.1:0", WithMode(ModeFast3))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The server reads through io.Copy and keeps no reference to the
	// accepted conn other than what io.Copy holds.
	received := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			received <- nil
			return
		}
		var buf strings.Builder
		_, _ = io.Copy(&buf, c)
		_ = c.Close()
		received <- []byte(buf.String())
	}()
	stop := make(chan struct{})
	gcDone := make(chan struct{})
	go func() {
		defer close(gcDone)
		for i := 0; i < 100000; i++ { // bounded; stops far earlier
			select {
			case <-stop:
				return
			default:
				runtime.GC()
			}
		}
	}()
	payload := randomBytes(t, 8<<20)
	c, err := Dial(ln.Addr().String(), WithMode(ModeFast3))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(payload); err != nil {
		t.Fatal(err)
	}
	if err := c.(*Stream).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	var got []byte
	select {
	case got = <-received:
	case <-time.After(testTimeout):
		t.Fatal("server did not finish reading")
	}
	close(stop)
	<-gcDone
	_ = c.Close()
	if len(got) != len(payload) || string(got) != string(payload) {
		t.Fatalf("server received %d bytes, want %d identical", len(got), len(payload))
	}
}

func TestDialNothingListening(t *testing.T) {
	// Reserve a port, then free it: nothing answers there.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	_ = pc.Close()
	start := time.Now()
	_, err = Dial(addr, WithDialTimeout(700*time.Millisecond))
	if !errors.Is(err, ErrNoResponse) {
		t.Fatalf("Dial to a dead port: %v, want ErrNoResponse", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Dial took %v with a 700ms timeout", elapsed)
	}
	for _, hint := range []string{addr, "UDP", "key", "cipher"} {
		if !strings.Contains(err.Error(), hint) {
			t.Errorf("error %q does not mention %q", err, hint)
		}
	}
}

func TestDialWrongKeyOrCipher(t *testing.T) {
	ln := listenEcho(t, WithKey("right"))
	for name, opts := range map[string][]Option{
		"key":    {WithKey("wrong")},
		"cipher": {WithKey("right"), WithCrypt("salsa20")},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Dial(ln.Addr().String(), append(opts, WithDialTimeout(700*time.Millisecond))...)
			if !errors.Is(err, ErrNoResponse) {
				t.Fatalf("Dial with the wrong %s: %v, want ErrNoResponse", name, err)
			}
		})
	}
	// The listener must still serve the right key afterwards.
	c, err := Dial(ln.Addr().String(), WithKey("right"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoRoundTrip(t, c, []byte("still here"))
}

func TestDialContextCancel(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close() // a socket that never answers
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = DialContext(ctx, pc.LocalAddr().String())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("DialContext with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestInvalidOptions(t *testing.T) {
	cases := []struct {
		name string
		opt  Option
	}{
		{"WithCrypt", WithCrypt("rot13")},
		{"WithMode", WithMode(Mode(42))},
		{"WithNoDelay", WithNoDelay(2, 20, 2, 1)},
		{"WithMTU", WithMTU(9000)},
		{"WithMTU", WithMTU(40)},
		{"WithFEC", WithFEC(200, 100)},
		{"WithFEC", WithFEC(-1, 3)},
		{"WithSmuxVersion", WithSmuxVersion(3)},
		{"WithKeepAlive", WithKeepAlive(31 * time.Second)},
		{"WithKeepAlive", WithKeepAlive(0)},
		{"WithSmuxBuffer", WithSmuxBuffer(1024, 4096)},
		{"WithSmuxBuffer", WithSmuxBuffer(-1, 1)},
		{"WithWindow", WithWindow(-5, 10)},
		{"WithSockBuf", WithSockBuf(-1)},
		{"WithFrameSize", WithFrameSize(70000)},
		{"WithDSCP", WithDSCP(64)},
		{"WithRateLimit", WithRateLimit(-1)},
		{"WithConns", WithConns(0)},
		{"WithAutoExpire", WithAutoExpire(-time.Second)},
		{"WithDialTimeout", WithDialTimeout(0)},
	}
	for _, tc := range cases {
		for call, do := range map[string]func() error{
			"Dial":      func() error { _, err := Dial("127.0.0.1:1", tc.opt); return err },
			"Listen":    func() error { _, err := Listen("127.0.0.1:0", tc.opt); return err },
			"NewClient": func() error { _, err := NewClient("127.0.0.1:1", tc.opt); return err },
		} {
			err := do()
			if !errors.Is(err, ErrInvalidOption) {
				t.Errorf("%s with bad %s: %v, want ErrInvalidOption", call, tc.name, err)
				continue
			}
			if !strings.Contains(err.Error(), tc.name) {
				t.Errorf("%s: error %q does not name %s", call, err, tc.name)
			}
		}
	}
	if _, err := ParseMode("turbo"); !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), "turbo") {
		t.Errorf("ParseMode(turbo): %v", err)
	}
	for _, name := range []string{"normal", "fast", "fast2", "FAST3", "manual"} {
		m, err := ParseMode(name)
		if err != nil || !strings.EqualFold(m.String(), name) {
			t.Errorf("ParseMode(%q) = %v, %v", name, m, err)
		}
	}
}

func TestBadAddress(t *testing.T) {
	for _, addr := range []string{"nohostport", "127.0.0.1:70000", "127.0.0.1:9-3", "127.0.0.1:x"} {
		if _, err := Dial(addr); err == nil || !strings.Contains(err.Error(), addr) {
			t.Errorf("Dial(%q): %v, want an error naming the address", addr, err)
		}
	}
}

func TestDeadlinesAndClose(t *testing.T) {
	ln := listenEcho(t)
	c, err := Dial(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_, err = c.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) || !isTimeout(err) {
		t.Fatalf("Read past the deadline: %v, want os.ErrDeadlineExceeded and a net.Error timeout", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	echoRoundTrip(t, c, []byte("after the timeout the stream still works"))

	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v, want net.ErrClosed", err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v, want net.ErrClosed", err)
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v, want net.ErrClosed", err)
	}
}

func TestListenerCloseReleasesEverything(t *testing.T) {
	defer goleak.VerifyNone(t, append(goleakOpts, goleak.IgnoreCurrent())...)
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := startEcho(t, ln)
	cl, err := NewClient(ln.Addr().String(), WithConns(3))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for range 3 {
		c, err := cl.Dial()
		if err != nil {
			t.Fatal(err)
		}
		echoRoundTrip(t, c, []byte("hello"))
	}
	if s := ln.Stats(); s.Sessions != 3 || s.Streams != 3 {
		t.Errorf("Stats %+v, want 3 sessions and 3 streams", s)
	}
	var wg sync.WaitGroup
	for range 4 { // Close is idempotent and safe concurrently
		wg.Add(1)
		go func() { defer wg.Done(); _ = ln.Close() }()
	}
	wg.Wait()
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
	}
	// Closing the sessions ended the echo handlers' streams.
	e.stop()
	if s := ln.Stats(); s.Sessions != 0 || s.Streams != 0 {
		t.Errorf("Stats after Close %+v, want nothing open", s)
	}
	_ = cl.Close()
}

func TestClientCloseReleasesEverything(t *testing.T) {
	defer goleak.VerifyNone(t, append(goleakOpts, goleak.IgnoreCurrent())...)
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := startEcho(t, ln)
	defer e.stop()
	cl, err := NewClient(ln.Addr().String(), WithConns(3))
	if err != nil {
		t.Fatal(err)
	}
	c, err := cl.Dial()
	if err != nil {
		t.Fatal(err)
	}
	echoRoundTrip(t, c, []byte("pooled"))
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := cl.Dial(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Dial after Close: %v, want net.ErrClosed", err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("Read on a stream of a closed Client succeeded")
	}
	_ = c.Close()
}

func TestClientAutoExpire(t *testing.T) {
	ln := listenEcho(t)
	// Every session is expired by the time the next Dial looks at it.
	cl, err := NewClient(ln.Addr().String(), WithAutoExpire(time.Nanosecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var conns []net.Conn
	for range 3 {
		c, err := cl.Dial()
		if err != nil {
			t.Fatal(err)
		}
		echoRoundTrip(t, c, []byte("expiring"))
		conns = append(conns, c)
	}
	if got := ln.Stats().TotalSessions; got < 3 {
		t.Errorf("server saw %d sessions, want a fresh one per Dial (>= 3)", got)
	}
	// Retired sessions keep serving their open streams.
	for _, c := range conns {
		echoRoundTrip(t, c, []byte("still served"))
		_ = c.Close()
	}
	// Once their streams are closed, the client closes retired sessions.
	// A closed stream counts until its writer has handed its last bytes over.
	waitFor(t, "retired sessions to close", func() bool { s := cl.Stats(); return s.Retired == 0 && s.Streams == 0 })
	if s := cl.Stats(); s.Sessions != 1 || s.Streams != 0 {
		t.Errorf("Stats %+v, want one live session and no streams", s)
	}
}

func TestClientReplacesDeadSession(t *testing.T) {
	opts := []Option{WithKeepAlive(100 * time.Millisecond), WithIdleTimeout(500 * time.Millisecond)}
	e, cl, c := serveAndConnect(t, opts)
	addr := e.ln.Addr().String()
	_ = c.Close()

	// The server goes away and comes back on the same port.
	e.stop()
	ln2, err := Listen(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	startEcho(t, ln2)
	// The client notices the dead session (idle timeout) and replaces it
	// by itself, without a Dial tripping over it.
	waitFor(t, "the client to replace its dead session", func() bool { return cl.Stats().Dials >= 2 })
	c, err = cl.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoRoundTrip(t, c, []byte("second server"))
}

func TestShutdownWaitsForStreams(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := startEcho(t, ln)
	c, err := Dial(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	echoRoundTrip(t, c, []byte("in flight"))

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := ln.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with an open stream: %v, want context.DeadlineExceeded", err)
	}
	_ = c.Close()
	e.stop()

	// A second listener: Shutdown returns nil once the stream is closed.
	ln2, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e2 := startEcho(t, ln2)
	c2, err := Dial(ln2.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	echoRoundTrip(t, c2, []byte("in flight"))
	done := make(chan error, 1)
	go func() { done <- ln2.Shutdown(context.Background()) }()
	// The echo handler closes the server side when the client closes.
	_ = c2.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Shutdown did not return after the last stream closed")
	}
	e2.stop()
}

// serveAndConnect starts an echo Listener and a Client to it, both with opts
// and the Client also with clientOpts, and proves the path with one stream,
// which it returns open. The Client is closed at the end of the test.
func serveAndConnect(t *testing.T, opts []Option, clientOpts ...Option) (*echoServer, *Client, net.Conn) {
	t.Helper()
	ln, err := Listen("127.0.0.1:0", opts...)
	if err != nil {
		t.Fatal(err)
	}
	e := startEcho(t, ln)
	cl, err := NewClient(ln.Addr().String(), append(slices.Clip(opts), clientOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	c, err := cl.Dial()
	if err != nil {
		t.Fatal(err)
	}
	echoRoundTrip(t, c, []byte("path check"))
	return e, cl, c
}

// waitFor polls cond until it holds, failing the test after testTimeout. It is
// for conditions that only a background goroutine can make true.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, testTimeout, what, cond)
}
