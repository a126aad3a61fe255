package kcptun

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed-fc8f924e/kcptun/kcptuntest"
)

// progressWriter counts what passes through it and calls at once when the
// count first reaches mark.
type progressWriter struct {
	w    io.Writer
	n    atomic.Int64
	mark int64
	at   func()
	once sync.Once
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	if p.n.Add(int64(n)) >= p.mark {
		p.once.Do(p.at)
	}
	return n, err
}

// TestMigrationMidTransfer rebinds the client's address in the middle of a
// 16 MiB echo at 2 % loss each way: every byte must arrive, the server must
// keep its one session, and its stats must show the move.
func TestMigrationMidTransfer(t *testing.T) {
	const size = 16 << 20
	lossy := kcptuntest.Link{Loss: 0.02}
	ln, relay := listenEchoBehindRelay(t, kcptuntest.Config{Up: lossy, Down: lossy, Seed: 11}, WithMode(ModeFast2))
	c, err := Dial(relay.Addr().String(), WithMode(ModeFast2))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := randomBytes(t, size)
	_ = c.SetDeadline(time.Now().Add(4 * testTimeout))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		werr <- err
	}()
	var rebindErr error
	h := sha256.New()
	pw := &progressWriter{w: h, mark: size / 3, at: func() { rebindErr = relay.Rebind() }}
	if n, err := io.CopyN(pw, c, size); err != nil {
		t.Fatalf("read echo after %d of %d bytes: %v", n, size, err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if rebindErr != nil {
		t.Fatal(rebindErr)
	}
	if want := sha256.Sum256(payload); !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("echo differs from what was sent")
	}
	if rs := relay.Stats(); rs.Rebinds != 1 {
		t.Fatalf("relay rebinds %d, want 1", rs.Rebinds)
	}
	st := ln.Stats()
	if st.TotalSessions != 1 || len(st.PerSession) != 1 {
		t.Fatalf("server opened %d sessions (%d open), want 1", st.TotalSessions, len(st.PerSession))
	}
	ss := st.PerSession[0]
	if ss.Migrations != 1 {
		t.Fatalf("session migrations %d, want 1; stats %+v", ss.Migrations, ss)
	}
	t.Logf("server session after the move: remote %v, migrations %d, resent %d of %d, FEC recovered %d, loss in %.3f, RTT min %v",
		ss.Remote, ss.Migrations, ss.SegmentsResent, ss.SegmentsSent, ss.FECRecovered, ss.LossIn, ss.RTTMin)
}

// recordingPC is a caller's socket that keeps a copy of what it sends.
type recordingPC struct {
	net.PacketConn
	mu   sync.Mutex
	sent [][]byte
}

func (r *recordingPC) WriteTo(b []byte, addr net.Addr) (int, error) {
	r.mu.Lock()
	if len(r.sent) < 1000 {
		r.sent = append(r.sent, append([]byte(nil), b...))
	}
	r.mu.Unlock()
	return r.PacketConn.WriteTo(b, addr)
}

func (r *recordingPC) recorded() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.sent...)
}

// TestReplayDoesNotMigrate replays a client's earlier datagrams from another
// address: they authenticate and carry the live session's conversation, but
// nothing newer than the session has seen, so the session must not move.
func TestReplayDoesNotMigrate(t *testing.T) {
	ln := listenEcho(t)
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	pc := &recordingPC{PacketConn: udp}
	c, err := DialPacket(context.Background(), pc, ln.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoRoundTrip(t, c, randomBytes(t, 64<<10))
	other, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	replayed := pc.recorded()
	for _, d := range replayed {
		if _, err := other.WriteTo(d, ln.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the server to refuse the replays", func() bool {
		st := ln.Stats()
		return len(st.PerSession) == 1 && st.PerSession[0].StaleMoves > 0
	})
	echoRoundTrip(t, c, []byte("still here"))
	st := ln.Stats()
	if st.TotalSessions != 1 || st.PerSession[0].Migrations != 0 {
		t.Fatalf("after %d replayed datagrams: %d sessions, %d migrations; want 1 and 0", len(replayed), st.TotalSessions, st.PerSession[0].Migrations)
	}
	if got := st.PerSession[0].Remote.String(); got != udp.LocalAddr().String() {
		t.Fatalf("session remote %s, want the client's %s", got, udp.LocalAddr())
	}
}

// TestStreamRemoteAddrFollowsMigration checks that an accepted stream's
// RemoteAddr reports the address its peer sends from after a migration.
func TestStreamRemoteAddrFollowsMigration(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	relay, err := kcptuntest.NewRelay(ln.Addr().String(), kcptuntest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	c, err := Dial(relay.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := c.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(testTimeout))
	buf := make([]byte, 1)
	if _, err := io.ReadFull(s, buf); err != nil {
		t.Fatal(err)
	}
	before := s.RemoteAddr().String()
	if err := relay.Rebind(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("b")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(s, buf); err != nil || buf[0] != 'b' {
		t.Fatalf("read after the move: %q, %v", buf, err)
	}
	after := s.RemoteAddr().String()
	if after == before {
		t.Fatalf("RemoteAddr still %s after the peer moved", before)
	}
	if st := ln.Stats(); len(st.PerSession) != 1 || st.PerSession[0].Remote.String() != after {
		t.Fatalf("RemoteAddr %s, session stats %+v", after, st.PerSession)
	}
}
