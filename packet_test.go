package kcptun

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/seed-fc8f924e/kcptun/internal/packet"
)

// checkUsable fails unless pc can still send and receive a datagram: the
// SDK must never close, or leave a deadline on, a socket it was given.
func checkUsable(t *testing.T, pc net.PacketConn) {
	t.Helper()
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, err := peer.WriteTo([]byte("ping"), pc.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	_ = pc.SetReadDeadline(time.Now().Add(testTimeout))
	// Stray datagrams of closed sessions may still arrive first.
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("the caller's socket no longer reads: %v", err)
		}
		if from.String() == peer.LocalAddr().String() && string(buf[:n]) == "ping" {
			break
		}
	}
	_ = pc.SetReadDeadline(time.Time{})
	if _, err := pc.WriteTo([]byte("pong"), peer.LocalAddr()); err != nil {
		t.Fatalf("the caller's socket no longer writes: %v", err)
	}
}

// TestDialPacketSharedSocket opens sessions to three servers over one
// caller socket, echoes on all at once, and checks the socket is left open.
func TestDialPacketSharedSocket(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var conns []net.Conn
	for i := range 3 {
		ln := listenEcho(t, WithCrypt([]string{"aes", "aes-128-gcm", "null"}[i]))
		c, err := DialPacket(context.Background(), pc, ln.Addr(), WithCrypt([]string{"aes", "aes-128-gcm", "null"}[i]))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := DialPacket(context.Background(), pc, ln.Addr()); err == nil {
			t.Fatal("a second session to the same server on the same socket was accepted")
		}
	}
	errs := make(chan error, len(conns))
	for i, c := range conns {
		payload := randomBytes(t, 256<<10+i)
		go func() { errs <- echoCheck(c, payload) }()
	}
	for range conns {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range conns {
		if c.LocalAddr().String() != pc.LocalAddr().String() {
			t.Fatalf("stream's local address %v, want the caller's socket %v", c.LocalAddr(), pc.LocalAddr())
		}
		_ = c.Close()
	}
	// The sessions close once the servers acknowledged their ends.
	deadline := time.Now().Add(testTimeout)
	for packet.Shared(pc) {
		if time.Now().After(deadline) {
			t.Fatal("the closed streams' sessions still read the caller's socket")
		}
		time.Sleep(5 * time.Millisecond)
	}
	checkUsable(t, pc)
}

// TestListenPacket serves on a caller's socket and leaves it open.
func TestListenPacket(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ln, err := ListenPacket(pc, WithCrypt("aes-128-gcm"), WithFEC(4, 2))
	if err != nil {
		t.Fatal(err)
	}
	e := startEcho(t, ln)
	c, err := Dial(ln.Addr().String(), WithCrypt("aes-128-gcm"))
	if err != nil {
		t.Fatal(err)
	}
	echoRoundTrip(t, c, randomBytes(t, 512<<10))
	st := ln.Stats()
	if len(st.PerSession) != 1 || st.PerSession[0].DatagramsIn == 0 || st.PerSession[0].FECGroupsSent == 0 {
		t.Fatalf("per-session stats not kept: %+v", st.PerSession)
	}
	_ = c.Close()
	e.stop()
	checkUsable(t, pc)
}

// TestDialPacketNoServer fails with ErrNoResponse and leaves the socket open.
func TestDialPacketNoServer(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	silent, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	_, err = DialPacket(context.Background(), pc, silent.LocalAddr(), WithDialTimeout(300*time.Millisecond))
	if !errors.Is(err, ErrNoResponse) {
		t.Fatalf("err %v, want ErrNoResponse", err)
	}
	checkUsable(t, pc)
}

// TestClientSessionStats checks the per-session counters a Client reports,
// and that the process-wide SNMP figures follow the packet layer.
func TestClientSessionStats(t *testing.T) {
	ln := listenEcho(t, WithFEC(4, 2))
	before := ReadSNMP()
	cl, err := NewClient(ln.Addr().String(), WithFEC(4, 2))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c, err := cl.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoRoundTrip(t, c, randomBytes(t, 256<<10))
	st := cl.Stats()
	if len(st.PerSession) != 1 {
		t.Fatalf("%d sessions in the stats, want 1", len(st.PerSession))
	}
	s := st.PerSession[0]
	if s.Remote.String() != ln.Addr().String() || s.Streams != 1 || s.Conv == 0 {
		t.Fatalf("identity: %+v", s)
	}
	if s.DatagramsOut == 0 || s.BytesOut < 256<<10 || s.DatagramsIn == 0 || s.SegmentsSent == 0 ||
		s.AcksReceived == 0 || s.RTTSamples == 0 || s.FECGroupsSent == 0 || s.FECParitySent == 0 {
		t.Fatalf("counters not kept: %+v", s)
	}
	waitFor(t, "every segment acknowledged", func() bool { return cl.Stats().PerSession[0].Unacked == 0 })
	d := ReadSNMP().Sub(before)
	if d.OutPkts < s.DatagramsOut || d.OutBytes < s.BytesOut {
		t.Fatalf("SNMP OutPkts %d OutBytes %d below the session's %d and %d", d.OutPkts, d.OutBytes, s.DatagramsOut, s.BytesOut)
	}
}
