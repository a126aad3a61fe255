package kcptun

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/nettest"

	"github.com/seed-fc8f924e/kcptun/kcptuntest"
)

// streamKind names the three ways to get a Stream.
type streamKind string

const (
	kindDial     streamKind = "Dial"
	kindClient   streamKind = "Client"
	kindAccepted streamKind = "Accepted"
)

var streamKinds = []streamKind{kindDial, kindClient, kindAccepted}

// streamPair connects a stream of the given kind (c1) to its other end (c2)
// through a fresh Listener on target (the Listener's own address if empty),
// and returns a function that closes everything.
func streamPair(kind streamKind, ln *Listener, target string, opts ...Option) (c1, c2 net.Conn, stop func(), err error) {
	if target == "" {
		target = ln.Addr().String()
	}
	var cl *Client
	var dialed net.Conn
	switch kind {
	case kindClient:
		cl, err = NewClient(target, opts...)
		if err == nil {
			dialed, err = cl.Dial()
		}
	default:
		dialed, err = Dial(target, opts...)
	}
	if err != nil {
		if cl != nil {
			_ = cl.Close()
		}
		return nil, nil, nil, err
	}
	accepted, err := ln.Accept()
	if err != nil {
		_ = dialed.Close()
		if cl != nil {
			_ = cl.Close()
		}
		return nil, nil, nil, err
	}
	stop = func() {
		_ = dialed.Close()
		_ = accepted.Close()
		if cl != nil {
			_ = cl.Close()
		}
	}
	if kind == kindAccepted {
		return accepted, dialed, stop, nil
	}
	return dialed, accepted, stop, nil
}

// connConfigs are the settings every stream kind is tested under: both smux
// versions, with and without compression.
var connConfigs = []struct {
	name string
	opts []Option
}{
	{"v1", []Option{WithSmuxVersion(1)}},
	{"v2", []Option{WithSmuxVersion(2)}},
	{"v1-snappy", []Option{WithSmuxVersion(1), WithCompression(true)}},
	{"v2-snappy", []Option{WithSmuxVersion(2), WithCompression(true)}},
}

// TestNetConn runs golang.org/x/net/nettest's net.Conn conformance suite on
// every kind of stream under every configuration.
func TestNetConn(t *testing.T) {
	if testing.Short() {
		t.Skip("the full matrix takes a while")
	}
	for _, cfg := range connConfigs {
		for _, kind := range streamKinds {
			t.Run(cfg.name+"/"+string(kind), func(t *testing.T) {
				t.Parallel()
				ln, err := Listen("127.0.0.1:0", cfg.opts...)
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				nettest.TestConn(t, func() (net.Conn, net.Conn, func(), error) {
					return streamPair(kind, ln, "", cfg.opts...)
				})
			})
		}
	}
}

// TestNetConnLossy runs the conformance suite on a Dial stream through the
// link emulator at 2 % loss each way.
func TestNetConnLossy(t *testing.T) {
	opts := []Option{WithMode(ModeFast3), WithSmuxVersion(2)}
	ln, err := Listen("127.0.0.1:0", opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lossy := kcptuntest.Link{Loss: 0.02, Delay: time.Millisecond}
	relay, err := kcptuntest.NewRelay(ln.Addr().String(), kcptuntest.Config{Up: lossy, Down: lossy, Seed: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	nettest.TestConn(t, func() (net.Conn, net.Conn, func(), error) {
		return streamPair(kindDial, ln, relay.Addr().String(), opts...)
	})
}

// TestWriteDeadlineNeverDuplicates writes a payload in chunks under very short
// write deadlines, retrying whatever each Write reports unwritten, as every
// correct writer does. What arrives must be the payload exactly: a Write that
// times out must never have sent more than it reported.
func TestWriteDeadlineNeverDuplicates(t *testing.T) {
	const total = 2 << 20
	payload := randomBytes(t, total)
	want := sha256.Sum256(payload)
	for _, cfg := range connConfigs {
		t.Run(cfg.name, func(t *testing.T) {
			ln, err := Listen("127.0.0.1:0", cfg.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			c1, c2, stop, err := streamPair(kindDial, ln, "", cfg.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
			got := make(chan []byte, 1)
			go func() {
				h := sha256.New()
				_ = c2.SetReadDeadline(time.Now().Add(testTimeout))
				n, _ := io.Copy(h, c2)
				got <- append(h.Sum(nil), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
			}()
			timeouts := 0
			end := time.Now().Add(testTimeout)
			p := payload
			for len(p) > 0 && time.Now().Before(end) {
				chunk := p[:min(len(p), 16<<10)]
				_ = c1.SetWriteDeadline(time.Now().Add(200 * time.Microsecond))
				n, err := c1.Write(chunk)
				if n < 0 || n > len(chunk) {
					t.Fatalf("Write returned n=%d for %d bytes", n, len(chunk))
				}
				if err != nil {
					if !isTimeout(err) {
						t.Fatalf("Write: %v", err)
					}
					timeouts++
				}
				p = p[n:]
			}
			if len(p) > 0 {
				t.Fatalf("%d bytes left unwritten after %v", len(p), testTimeout)
			}
			_ = c1.SetWriteDeadline(time.Time{})
			if err := c1.(*Stream).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			select {
			case g := <-got:
				n := int(g[32])<<24 | int(g[33])<<16 | int(g[34])<<8 | int(g[35])
				if n != total || !bytes.Equal(g[:32], want[:]) {
					t.Fatalf("received %d bytes (sha256 %x), want %d (%x); %d writes timed out", n, g[:32], total, want, timeouts)
				}
			case <-time.After(testTimeout):
				t.Fatal("the reader never saw the end of the stream")
			}
			t.Logf("%d writes timed out", timeouts)
		})
	}
}

// TestCloseUnblocks: Close wakes a Read waiting for data and a Write waiting
// for the peer to make room, on every kind of stream, at once.
func TestCloseUnblocks(t *testing.T) {
	const bound = 100 * time.Millisecond
	for _, v := range []int{1, 2} {
		// Small buffers, so that a Write blocks soon when the peer does not read.
		opts := []Option{WithSmuxVersion(v), WithSmuxBuffer(64<<10, 32<<10), WithWindow(32, 32)}
		ln, err := Listen("127.0.0.1:0", opts...)
		if err != nil {
			t.Fatal(err)
		}
		for _, kind := range streamKinds {
			t.Run(fmt.Sprintf("v%d/%s", v, kind), func(t *testing.T) {
				for _, op := range []string{"Read", "Write"} {
					c1, _, stop, err := streamPair(kind, ln, "", opts...)
					if err != nil {
						t.Fatal(err)
					}
					blocked := make(chan error, 1)
					var progress func() int
					switch op {
					case "Read":
						go func() {
							_, err := c1.Read(make([]byte, 10))
							blocked <- err
						}()
						progress = func() int { return 0 }
					case "Write":
						written := make(chan int, 1<<12)
						go func() {
							buf := make([]byte, 32<<10)
							for {
								n, err := c1.Write(buf)
								written <- n
								if err != nil {
									blocked <- err
									return
								}
							}
						}()
						// Wait until Write stops making progress: the peer's
						// window or KCP's send window is full.
						total := 0
						progress = func() int {
							for {
								select {
								case n := <-written:
									total += n
								default:
									return total
								}
							}
						}
						last := -1
						deadline := time.Now().Add(testTimeout)
						for time.Now().Before(deadline) {
							time.Sleep(50 * time.Millisecond)
							if cur := progress(); cur == last {
								break
							} else {
								last = cur
							}
						}
					}
					select {
					case err := <-blocked:
						t.Fatalf("%s returned before Close: %v", op, err)
					case <-time.After(50 * time.Millisecond):
					}
					start := time.Now()
					if err := c1.Close(); err != nil {
						t.Fatal(err)
					}
					select {
					case err := <-blocked:
						if !errors.Is(err, net.ErrClosed) {
							t.Errorf("%s after Close: %v, want net.ErrClosed", op, err)
						}
						if d := time.Since(start); d > bound {
							t.Errorf("%s returned %v after Close, want within %v", op, d, bound)
						}
					case <-time.After(testTimeout):
						t.Fatalf("Close did not unblock %s", op)
					}
					progress()
					stop()
				}
			})
		}
		_ = ln.Close()
	}
}
