package kcptuntest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// loopback is the address of the tests' listening sockets: a random one of
// 127.0.0.0/8, so that stray datagrams that other processes on the machine
// send to recycled ports of 127.0.0.1 do not land in them. Connected
// sockets, the tests' clients and the relays' upstream sockets, only take
// datagrams from their peer anyway.
var loopback = pickLoopback()

func pickLoopback() net.IP {
	ip := net.IPv4(127, byte(1+rand.IntN(254)), byte(rand.IntN(256)), byte(1+rand.IntN(254)))
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
	if err != nil {
		return net.IPv4(127, 0, 0, 1)
	}
	c.Close()
	return ip
}

// token marks the datagrams of this test process; endpoints ignore others.
var token = rand.Uint64()

// waitTimeout bounds every wait of the tests; reaching it fails the test.
const waitTimeout = 15 * time.Second

// arrival is a datagram received by an endpoint.
type arrival struct {
	seq  uint64
	size int
	at   time.Time
	from netip.AddrPort
}

// endpoint is a UDP socket of a test, client or target, that records what
// it receives and, as a target, can echo it back.
type endpoint struct {
	conn   *net.UDPConn
	echo   bool
	mu     sync.Mutex
	got    []arrival
	bad    int // datagrams whose payload was corrupt
	stray  int // datagrams of other processes, ignored
	notify chan struct{}
	done   chan struct{}
}

// newTarget starts a target on a free loopback port.
func newTarget(t *testing.T, echo bool) *endpoint {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: loopback})
	if err != nil {
		t.Fatal(err)
	}
	return startEndpoint(t, conn, echo)
}

// newClient starts a client sending to addr.
func newClient(t *testing.T, addr *net.UDPAddr) *endpoint {
	t.Helper()
	conn, err := net.DialUDP("udp", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	return startEndpoint(t, conn, false)
}

func startEndpoint(t *testing.T, conn *net.UDPConn, echo bool) *endpoint {
	_ = conn.SetReadBuffer(4 << 20)
	_ = conn.SetWriteBuffer(4 << 20)
	e := &endpoint{conn: conn, echo: echo, notify: make(chan struct{}, 1), done: make(chan struct{})}
	go e.loop()
	t.Cleanup(func() {
		conn.Close()
		<-e.done
	})
	return e
}

func (e *endpoint) loop() {
	defer close(e.done)
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := e.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		at := time.Now()
		seq, ok, ours := parsePayload(buf[:n])
		if !ours {
			e.mu.Lock()
			e.stray++
			e.mu.Unlock()
			continue
		}
		e.mu.Lock()
		e.got = append(e.got, arrival{seq: seq, size: n, at: at, from: from})
		if !ok {
			e.bad++
		}
		e.mu.Unlock()
		if e.echo { // after recording, so that an echo implies the record
			_, _ = e.conn.WriteToUDPAddrPort(buf[:n], from)
		}
		select {
		case e.notify <- struct{}{}:
		default:
		}
	}
}

func (e *endpoint) addr() *net.UDPAddr { return e.conn.LocalAddr().(*net.UDPAddr) }

func (e *endpoint) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.got)
}

func (e *endpoint) arrivals() []arrival {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]arrival(nil), e.got...)
}

func (e *endpoint) corrupt() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.bad
}

// send sends datagram seq, of size bytes, to the endpoint's peer.
func (e *endpoint) send(t *testing.T, seq uint64, size int) time.Time {
	t.Helper()
	at := time.Now()
	if _, err := e.conn.Write(payload(seq, size)); err != nil {
		t.Fatalf("send %d: %v", seq, err)
	}
	return at
}

// payload returns datagram seq of size bytes: the process's token, the
// sequence number, then a pattern derived from it. Datagrams shorter than
// 16 bytes are all zero.
func payload(seq uint64, size int) []byte {
	b := make([]byte, size)
	if size < 16 {
		return b
	}
	binary.BigEndian.PutUint64(b, token)
	binary.BigEndian.PutUint64(b[8:], seq)
	for i := 16; i < size; i++ {
		b[i] = byte(seq) + byte(i)
	}
	return b
}

// parsePayload returns the sequence number of b, whether its pattern is
// intact, and whether it comes from this process.
func parsePayload(b []byte) (seq uint64, ok, ours bool) {
	if len(b) < 16 {
		for _, c := range b {
			if c != 0 {
				return 0, false, false
			}
		}
		return ^uint64(0), true, true
	}
	if binary.BigEndian.Uint64(b) != token {
		return 0, false, false
	}
	seq = binary.BigEndian.Uint64(b[8:])
	for i := 16; i < len(b); i++ {
		if b[i] != byte(seq)+byte(i) {
			return seq, false, true
		}
	}
	return seq, true, true
}

// waitFor polls cond until it holds, failing the test after waitTimeout.
// The optional state function describes the state in the failure.
func waitFor(t *testing.T, what string, cond func() bool, state ...func() string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			for _, f := range state {
				what += ": " + f()
			}
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// settle waits until the relay has dealt with the first sent datagrams of
// a direction and rx has received every datagram the relay delivered, and
// returns the direction's stats then.
func settle(t *testing.T, r *Relay, up bool, sent int, rx *endpoint) LinkStats {
	t.Helper()
	var st LinkStats
	waitFor(t, "the relay to settle", func() bool {
		s := r.Stats()
		st = s.Down
		if up {
			st = s.Up
		}
		return st.Received == uint64(sent) && st.Pending == 0 && uint64(rx.count()) == st.Delivered
	}, func() string {
		sizes := map[string]int{}
		for _, a := range rx.arrivals() {
			sizes[fmt.Sprintf("%v/%d", a.from, a.size)]++
		}
		return fmt.Sprintf("sent %d, received %d, stats %+v, relay %v target %v arrivals %v", sent, rx.count(), st, r.Addr(), rx.addr(), sizes)
	})
	return st
}

// pump sends datagrams first to first+n-1 of size bytes from c through r
// to rx, at most window at a time, settling after each window so that no
// socket buffer overflows.
func pump(t *testing.T, r *Relay, c, rx *endpoint, first, n, size, window int) LinkStats {
	t.Helper()
	var st LinkStats
	for i := first; i < first+n; {
		k := min(window, first+n-i)
		for j := range k {
			c.send(t, uint64(i+j), size)
		}
		i += k
		st = settle(t, r, true, i, rx)
	}
	return st
}

// newRelay starts a relay closed at the end of the test.
func newRelay(t *testing.T, target string, cfg Config) *Relay {
	t.Helper()
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = net.JoinHostPort(loopback.String(), "0")
	}
	r, err := NewRelay(target, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

// inversions counts the arrivals with a lower sequence number than an
// earlier arrival.
func inversions(as []arrival) int {
	n := 0
	var top uint64
	for i, a := range as {
		if i > 0 && a.seq < top {
			n++
		}
		top = max(top, a.seq)
	}
	return n
}
