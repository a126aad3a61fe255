package packet

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/seed-fc8f924e/kcptun/internal/crypt"
	"github.com/seed-fc8f924e/kcptun/internal/kcpdrain"
	"github.com/seed-fc8f924e/kcptun/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

const testTimeout = 30 * time.Second

var testPass = crypt.DeriveKey("packet test key")

// block returns the SDK's cipher called name, keyed from testPass.
func block(t testing.TB, name string) kcp.BlockCrypt {
	t.Helper()
	return buildBlock(t, crypt.New, name)
}

// refBlock is block with kcp-go's own implementation of the cipher, for the
// kcp-go end of an interop pair, as the kcptun binaries run it.
func refBlock(t testing.TB, name string) kcp.BlockCrypt {
	t.Helper()
	return buildBlock(t, crypt.NewReference, name)
}

// buildBlock keys the cipher called name from testPass with build.
func buildBlock(t testing.TB, build func(string, []byte) (kcp.BlockCrypt, error), name string) kcp.BlockCrypt {
	t.Helper()
	b, err := build(name, testPass)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dropper is a PacketConn that loses every nth datagram it sends, so that
// FEC has something to recover, deterministically.
type dropper struct {
	*net.UDPConn
	n     int
	count atomic.Int64
}

func (d *dropper) WriteTo(b []byte, addr net.Addr) (int, error) {
	if d.n > 0 && d.count.Add(1)%int64(d.n) == 0 {
		return len(b), nil
	}
	return d.UDPConn.WriteTo(b, addr)
}

// dropper hides *net.UDPConn's other methods so kcp-go treats it as a plain
// PacketConn.
type plainPC struct{ net.PacketConn }

func listenUDP(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tuneKCP(s *kcp.UDPSession, mtu int) {
	//lint:ignore SA1019 stream mode is off by default and the wire format needs it
	s.SetStreamMode(true)
	s.SetWriteDelay(false)
	s.SetNoDelay(1, 10, 2, 1)
	s.SetWindowSize(512, 512)
	s.SetMtu(mtu)
}

// side describes one end of an interop pair.
type side struct {
	ours   bool // our packet layer under a bare kcp-go session
	cipher string
	ds, ps int
	drop   int // lose every drop-th datagram sent (0: none)
	// lose, when set, loses every datagram sent for which it is true.
	lose func(b []byte) bool
}

// loser is a PacketConn that loses the datagrams its function picks.
type loser struct {
	*net.UDPConn
	lose func(b []byte) bool
}

func (l *loser) WriteTo(b []byte, addr net.Addr) (int, error) {
	if l.lose(b) {
		return len(b), nil
	}
	return l.UDPConn.WriteTo(b, addr)
}

// pair connects a client and a server as described and returns both KCP
// sessions, the peers of our layer (nil for a kcp-go end) and a cleanup.
type pairEnds struct {
	cli, srv         *kcp.UDPSession
	cliPeer, srvPeer *Peer
}

func makePair(t *testing.T, cs, ss side) pairEnds {
	t.Helper()
	const mtu = 1350
	var e pairEnds
	// Server.
	sock := listenUDP(t)
	var srvPC net.PacketConn = sock
	if ss.drop > 0 {
		srvPC = plainPC{&dropper{UDPConn: sock, n: ss.drop}}
	}
	if ss.lose != nil {
		srvPC = plainPC{&loser{UDPConn: sock, lose: ss.lose}}
	}
	var ln *kcp.Listener
	var srvConn *Conn
	var err error
	if ss.ours {
		srvConn = NewConn(srvPC, Config{Block: block(t, ss.cipher), DataShards: ss.ds, ParityShards: ss.ps, Migrate: true})
		ln, err = kcp.ServeConn(nil, 0, 0, srvConn)
	} else {
		ln, err = kcp.ServeConn(refBlock(t, ss.cipher), ss.ds, ss.ps, srvPC)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The client is closed first (cleanups run last-in first-out); a
		// late datagram may still have opened a session in the backlog.
		_ = ln.Close()
		if srvConn != nil {
			_ = srvConn.Close()
		}
		_ = sock.Close()
		kcpdrain.Backlog(ln)
	})
	// Client.
	csock := listenUDP(t)
	var cliPC net.PacketConn = csock
	if cs.drop > 0 {
		cliPC = plainPC{&dropper{UDPConn: csock, n: cs.drop}}
	}
	if cs.lose != nil {
		cliPC = plainPC{&loser{UDPConn: csock, lose: cs.lose}}
	}
	raddr := sock.LocalAddr().(*net.UDPAddr)
	if cs.ours {
		c := NewClientConn(cliPC, raddr, Config{Block: block(t, cs.cipher), DataShards: cs.ds, ParityShards: cs.ps, OwnSocket: true})
		e.cliPeer = c.Peer()
		e.cli, err = kcp.NewConn4(0x01020304, raddr, nil, 0, 0, true, c)
		tuneKCP(e.cli, mtu-Overhead(block(t, cs.cipher)))
	} else {
		e.cli, err = kcp.NewConn4(0x01020304, raddr, refBlock(t, cs.cipher), cs.ds, cs.ps, true, cliPC)
		tuneKCP(e.cli, mtu)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.cli.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	_ = ln.SetDeadline(time.Now().Add(testTimeout))
	e.srv, err = ln.AcceptKCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.srv.Close() })
	t.Cleanup(func() { _ = e.cli.Close() })
	if ss.ours {
		e.srvPeer = srvConn.Bind(e.srv.RemoteAddr(), e.srv.GetConv())
		tuneKCP(e.srv, mtu-Overhead(block(t, ss.cipher)))
	} else {
		tuneKCP(e.srv, mtu)
	}
	got := make([]byte, 5)
	_ = e.srv.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := io.ReadFull(e.srv, got); err != nil || string(got) != "hello" {
		t.Fatalf("first bytes %q, %v", got, err)
	}
	return e
}

// exchange sends size random bytes each way at once and checks them.
func exchange(t *testing.T, e pairEnds, size int) {
	t.Helper()
	a, b := make([]byte, size), make([]byte, size)
	_, _ = rand.Read(a)
	_, _ = rand.Read(b)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	deadline := time.Now().Add(testTimeout)
	_ = e.cli.SetDeadline(deadline)
	_ = e.srv.SetDeadline(deadline)
	copyCheck := func(w, r *kcp.UDPSession, data []byte, name string) {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := w.Write(data); err != nil {
				errs <- fmt.Errorf("%s write: %w", name, err)
			}
		}()
		go func() {
			defer wg.Done()
			got := make([]byte, len(data))
			if _, err := io.ReadFull(r, got); err != nil {
				errs <- fmt.Errorf("%s read: %w", name, err)
				return
			}
			if !bytes.Equal(got, data) {
				errs <- fmt.Errorf("%s: bytes differ", name)
			}
		}()
	}
	copyCheck(e.cli, e.srv, a, "client to server")
	copyCheck(e.srv, e.cli, b, "server to client")
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestInteropEveryCipher runs our layer against kcp-go's own, both ways,
// for every cipher, with FEC off and on.
func TestInteropEveryCipher(t *testing.T) {
	for _, name := range crypt.Names() {
		for _, fec := range [][2]int{{0, 0}, {10, 3}} {
			for _, oursIsClient := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s/fec%d-%d/ourclient=%v", name, fec[0], fec[1], oursIsClient), func(t *testing.T) {
					cs := side{ours: oursIsClient, cipher: name, ds: fec[0], ps: fec[1]}
					ss := side{ours: !oursIsClient, cipher: name, ds: fec[0], ps: fec[1]}
					e := makePair(t, cs, ss)
					exchange(t, e, 64<<10)
				})
			}
		}
	}
}

// TestInteropFECRecovery loses every 7th datagram in both directions, for
// several shard shapes that differ between the two ends, and checks that
// our decoder rebuilt shards from kcp-go's parity (and kcp-go from ours).
func TestInteropFECRecovery(t *testing.T) {
	shapes := [][4]int{{10, 3, 10, 3}, {3, 2, 5, 5}, {20, 5, 2, 1}, {4, 4, 0, 0}}
	for _, cipher := range []string{"aes", "aes-128-gcm", "null"} {
		for _, sh := range shapes {
			for _, oursIsClient := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s/%v/ourclient=%v", cipher, sh, oursIsClient), func(t *testing.T) {
					cs := side{ours: oursIsClient, cipher: cipher, ds: sh[0], ps: sh[1], drop: 7}
					ss := side{ours: !oursIsClient, cipher: cipher, ds: sh[2], ps: sh[3], drop: 7}
					e := makePair(t, cs, ss)
					// Enough groups of the peer's shape for our decoder to
					// learn it and then rebuild a shard: 256 KiB per 8
					// shards of a group.
					n := max(sh[0]+sh[1], sh[2]+sh[3])
					exchange(t, e, 256<<10*max(1, n/8))
					p := e.cliPeer
					theirs := ss
					if p == nil {
						p, theirs = e.srvPeer, cs
					}
					st := p.Stats().Snapshot()
					t.Logf("our counters: %+v", st)
					if theirs.ds > 0 && st.FECRecovered == 0 {
						t.Fatalf("nothing recovered from the peer's %d/%d parity", theirs.ds, theirs.ps)
					}
					if st.SegmentsOut == 0 || st.RTTSamples == 0 || st.DatagramsIn == 0 || st.DatagramsOut == 0 {
						t.Fatalf("counters not kept: %+v", st)
					}
				})
			}
		}
	}
}

// TestRebuiltPacketsReachKCPAsRebuilt checks that what our decoder rebuilds
// goes through kcp-go's own FEC path (so that KCP takes neither its window
// nor its RTT as current): kcp-go's decoder counts one recovery for each.
// Loss runs client to server only, so no other decoder rebuilds anything.
func TestRebuiltPacketsReachKCPAsRebuilt(t *testing.T) {
	before := kcp.DefaultSnmp.Copy().FECRecovered
	e := makePair(t, side{cipher: "aes", ds: 10, ps: 3, drop: 7}, side{ours: true, cipher: "aes", ds: 10, ps: 3})
	exchange(t, e, 256<<10)
	ours := e.srvPeer.Stats().FECRecovered.Load()
	got := kcp.DefaultSnmp.Copy().FECRecovered - before
	if ours == 0 || got < ours {
		t.Fatalf("our decoder rebuilt %d packets, kcp-go's FEC path took %d", ours, got)
	}
}
