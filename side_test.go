package kcptun

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/seed-fc8f924e/kcptun/internal/testwait"
	"github.com/seed-fc8f924e/kcptun/kcptuntest"
)

// withSideLinger shortens how long an unused side session stays open.
func withSideLinger(d time.Duration) Option { return func(c *config) { c.sideLinger = d } }

func streamSession(c net.Conn) *session { return c.(*Stream).sess }

// newSideClient returns a Client behind a link with a 20 ms RTT to an echo
// Listener, and a stream on its session, which the Client takes for busy
// from now on (the placement does not depend on a transfer's ups and
// downs; TestSessionBusy tests the measure itself).
func newSideClient(t *testing.T, opts ...Option) (*Client, net.Conn) {
	t.Helper()
	link := kcptuntest.Link{Delay: 10 * time.Millisecond}
	_, relay := listenEchoBehindRelay(t, kcptuntest.Config{Up: link, Down: link, Seed: 1})
	cl, err := NewClient(relay.Addr().String(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	first, err := cl.Dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = first.Close() })
	echoRoundTrip(t, first, randomBytes(t, 64))
	busy := streamSession(first)
	cl.busy = func(s *session) bool { return s == busy }
	return cl, first
}

// TestClientSideSession checks that a stream dialed while the Client's
// session is busy goes on a side session, that later ones join it while it
// is not busy, and that it closes once it has carried no stream for its
// linger time, leaving the busy session alone.
func TestClientSideSession(t *testing.T) {
	cl, first := newSideClient(t, withSideLinger(50*time.Millisecond))
	msg, err := cl.Dial()
	if err != nil {
		t.Fatal(err)
	}
	if streamSession(msg) == streamSession(first) {
		t.Fatal("a stream dialed beside a busy session went on that session, not on a side session")
	}
	if st := cl.Stats(); st.Sessions != 2 || st.Side != 1 || len(st.PerSession) != 2 {
		t.Fatalf("stats: %d sessions, %d side, %d listed; want 2, 1, 2", st.Sessions, st.Side, len(st.PerSession))
	}
	echoRoundTrip(t, msg, randomBytes(t, 64))
	msg2, err := cl.Dial()
	if err != nil {
		t.Fatal(err)
	}
	if streamSession(msg2) != streamSession(msg) {
		t.Error("a second stream beside the busy session did not join the side session")
	}
	side := streamSession(msg)
	_ = msg.Close()
	_ = msg2.Close()
	testwait.For(t, 10*time.Second, "the unused side session to close", func() bool {
		return cl.Stats().Side == 0 && side.isClosed()
	})
	if st := cl.Stats(); st.Sessions != 1 || streamSession(first).isClosed() {
		t.Errorf("after the side session closed: %d sessions (want 1), busy session closed: %v", st.Sessions, streamSession(first).isClosed())
	}
	echoRoundTrip(t, first, randomBytes(t, 64))
	// The next stream beside the busy session gets a new side session.
	msg3, err := cl.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer msg3.Close()
	if s := streamSession(msg3); s == streamSession(first) || s == side {
		t.Error("a stream dialed after the side session closed did not get a new one")
	}
	echoRoundTrip(t, msg3, randomBytes(t, 64))
}

// TestClientSideSessionBusyToo checks that when the side session is busy as
// well, a new stream goes on whichever of the two carries fewer streams.
func TestClientSideSessionBusyToo(t *testing.T) {
	cl, first := newSideClient(t)
	msg, err := cl.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer msg.Close()
	msg2, err := cl.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer msg2.Close()
	if side := streamSession(msg); side == streamSession(first) || streamSession(msg2) != side {
		t.Fatal("the two streams dialed beside the busy session did not both go on the side session")
	}
	cl.busy = func(*session) bool { return true }
	// The busy session carries one stream, the side session two.
	msg3, err := cl.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer msg3.Close()
	if streamSession(msg3) != streamSession(first) {
		t.Error("with both sessions busy, the stream went on the one with more streams")
	}
}

// TestClientPinnedPool checks that WithConns and WithAdaptive(false) keep a
// Client to its sessions: a stream dialed beside a busy session shares it.
func TestClientPinnedPool(t *testing.T) {
	for name, opt := range map[string]Option{"WithConns(1)": WithConns(1), "WithAdaptive(false)": WithAdaptive(false)} {
		t.Run(name, func(t *testing.T) {
			cl, first := newSideClient(t, opt)
			msg, err := cl.Dial()
			if err != nil {
				t.Fatal(err)
			}
			defer msg.Close()
			if streamSession(msg) != streamSession(first) {
				t.Error("a pinned Client opened a side session")
			}
			echoRoundTrip(t, msg, randomBytes(t, 64))
			if st := cl.Stats(); st.Sessions != 1 || st.Side != 0 {
				t.Errorf("stats: %d sessions, %d side; want 1, 0", st.Sessions, st.Side)
			}
		})
	}
}

// TestClientSideSessionUnreachable checks that a Dial beside a busy session
// opens its stream on that session when the side session cannot be dialed,
// and that the Client then leaves the side session alone for a while
// instead of making every Dial wait for it.
func TestClientSideSessionUnreachable(t *testing.T) {
	cl, first := newSideClient(t)
	// From now on a dial gives up long before the server can answer (the
	// dial goroutine that reads the setting starts after this write).
	cl.cfg.dialTimeout = time.Millisecond
	msg, err := cl.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer msg.Close()
	if streamSession(msg) != streamSession(first) {
		t.Fatal("the stream went on a side session that cannot have been dialed")
	}
	testwait.For(t, 10*time.Second, "the side session's dial to fail", func() bool {
		return cl.Stats().FailedDials == 1
	})
	if st := cl.Stats(); st.Side != 0 {
		t.Fatalf("stats: %d side sessions after its dial failed", st.Side)
	}
	msg2, err := cl.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer msg2.Close()
	cl.side.mu.Lock()
	dialing := cl.side.dialing != nil
	cl.side.mu.Unlock()
	if st := cl.Stats(); dialing || st.FailedDials != 1 {
		t.Errorf("a Dial right after the side session's dial failed dialed it again")
	}
	if streamSession(msg2) != streamSession(first) {
		t.Error("the second stream did not go on the busy session")
	}
	echoRoundTrip(t, msg2, randomBytes(t, 64))
}

// TestSessionBusy checks the measure the Client places streams by, each
// way: a session is not busy once its one message is acknowledged, and busy
// while a transfer fills a 20 Mbit/s path, by its own unacknowledged
// segments when it uploads and by the rate data arrives at when it
// downloads.
func TestSessionBusy(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	chunk := randomBytes(t, 64<<10)
	var served sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); served.Wait() })
	served.Add(1)
	go func() {
		defer served.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			served.Add(1)
			go func() { // 'u': discard an upload; 'd': send a download (at most 1 GiB)
				defer served.Done()
				defer c.Close()
				var mode [1]byte
				if _, err := io.ReadFull(c, mode[:]); err != nil {
					return
				}
				if mode[0] == 'u' {
					_, _ = io.Copy(io.Discard, c)
					return
				}
				for range 1 << 14 {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}()
		}
	}()
	link := kcptuntest.Link{Delay: 10 * time.Millisecond, Bandwidth: 20e6}
	relay, err := kcptuntest.NewRelay(ln.Addr().String(), kcptuntest.Config{Up: link, Down: link, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = relay.Close() })

	for _, mode := range []string{"u", "d"} {
		t.Run(map[string]string{"u": "upload", "d": "download"}[mode], func(t *testing.T) {
			c, err := Dial(relay.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s := streamSession(c)
			if _, err := c.Write([]byte(mode)); err != nil {
				t.Fatal(err)
			}
			testwait.For(t, 10*time.Second, "the first byte to be acknowledged", func() bool {
				return s.peer.Stats().Unacked() == 0
			})
			if s.busy() {
				t.Error("a session that sent one byte is busy")
			}
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() { // bounded: until the test has seen the session busy, or 1 GiB
				defer close(done)
				if mode == "d" {
					_, _ = io.Copy(io.Discard, c)
					return
				}
				for range 1 << 14 {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}()
			defer func() { close(stop); _ = c.Close(); <-done }()
			testwait.For(t, 20*time.Second, "the transfer to make the session busy", func() bool {
				return s.busy()
			})
			if mode == "d" {
				// What the client sends (window updates) stays far below
				// busySegments: the rate data arrives at made it busy.
				testwait.For(t, 10*time.Second, "a busy session with few segments of its own out", func() bool {
					return s.busy() && s.peer.Stats().Unacked() < busySegments
				})
			}
		})
	}
}
