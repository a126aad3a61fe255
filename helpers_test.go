package kcptun

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/seed-fc8f924e/kcptun/internal/leakcheck"
	"github.com/seed-fc8f924e/kcptun/kcptuntest"
)

// kcp-go's process-wide goroutines are not ours.
var goleakOpts = leakcheck.Options()

// TestMain fails the run if any goroutine outlives the tests (or, in the
// idle-memory benchmarks' child process, serves as that child). A closed Dial
// stream whose peer went away with bytes unacknowledged keeps its session for
// up to lingerTimeout; that much is allowed here (TestGoleakUsualShape checks
// that nothing lingers when everything was delivered).
func TestMain(m *testing.M) {
	if role := os.Getenv(memChildEnv); role != "" {
		runMemChild(role) // exits
	}
	code := m.Run()
	if code == 0 {
		err := goleak.Find(goleakOpts...)
		for end := time.Now().Add(lingerTimeout + time.Second); err != nil && time.Now().Before(end); {
			time.Sleep(100 * time.Millisecond)
			err = goleak.Find(goleakOpts...)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testTimeout bounds every blocking step of a test; hitting it is a failure.
const testTimeout = 30 * time.Second

// echoServer accepts streams from ln and echoes each until EOF. stop closes
// the listener and waits for every handler.
type echoServer struct {
	ln net.Listener
	wg sync.WaitGroup
}

func startEcho(t testing.TB, ln net.Listener) *echoServer {
	t.Helper()
	e := &echoServer{ln: ln}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(e.stop)
	return e
}

func (e *echoServer) stop() {
	_ = e.ln.Close()
	e.wg.Wait()
}

// listenEcho starts a Listener on a free loopback port with an echo server.
func listenEcho(t testing.TB, opts ...Option) *Listener {
	t.Helper()
	ln, err := Listen("127.0.0.1:0", opts...)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	startEcho(t, ln)
	return ln
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// listenEchoBehindRelay starts an echo Listener and a link emulator in front
// of it; clients dial the relay's address. Both close with the test.
func listenEchoBehindRelay(t testing.TB, link kcptuntest.Config, opts ...Option) (*Listener, *kcptuntest.Relay) {
	t.Helper()
	ln := listenEcho(t, opts...)
	relay, err := kcptuntest.NewRelay(ln.Addr().String(), link)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = relay.Close() })
	return ln, relay
}

// echoRoundTrip writes payload to c from one goroutine, reads the echo from
// another, half-closes, and checks the echo's sha256 against the payload's.
func echoRoundTrip(t testing.TB, c net.Conn, payload []byte) {
	t.Helper()
	echoRoundTripWithin(t, c, payload, testTimeout)
}

// echoRoundTripWithin is echoRoundTrip with its own deadline, for transfers
// sized beyond what testTimeout covers.
func echoRoundTripWithin(t testing.TB, c net.Conn, payload []byte, limit time.Duration) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(limit))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		werr <- err
	}()
	h := sha256.New()
	n, err := io.CopyN(h, c, int64(len(payload)))
	if err != nil {
		t.Fatalf("read echo after %d of %d bytes: %v", n, len(payload), err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	want := sha256.Sum256(payload)
	if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
		t.Fatalf("echo sha256 %x, want %x", got, want)
	}
}

// isTimeout reports whether err is a deadline error in both standard forms.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// echoStreams echoes n streams of size random bytes each at once, every
// stream opened by open, and checks every byte; each echo must end within
// limit.
func echoStreams(t *testing.T, n, size int, limit time.Duration, open func() (net.Conn, error)) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := open()
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			payload := make([]byte, size)
			r := mrand.New(mrand.NewPCG(uint64(i), 2))
			for j := range payload {
				payload[j] = byte(r.Uint32())
			}
			echoRoundTripWithin(t, c, payload, limit)
		}()
	}
	wg.Wait()
}
