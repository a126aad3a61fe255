package kcptuntest

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkRelayThroughput pushes 1350-byte datagrams, the size of a full
// KCP segment, through a relay between one client and one target, keeping
// at most a window of datagrams in flight so that no socket buffer
// overflows, and reports what arrived. The sending and receiving ends batch
// their system calls as kcp-go does (sendmmsg, recvmmsg) where the relay
// does, without segmentation offload. "up" runs go from the client to the
// target, "down" runs from the target to the client; "no-relay" sends
// straight from one end to the other, for comparison.
func BenchmarkRelayThroughput(b *testing.B) {
	lossy := Link{Loss: 0.01, Delay: 2 * time.Millisecond, Jitter: 500 * time.Microsecond}
	for _, bc := range []struct {
		name string
		link Link
		mode benchMode
	}{
		{"perfect/up", Link{}, benchUp},
		{"perfect/down", Link{}, benchDown},
		{"lossy-delayed/up", lossy, benchUp},
		{"lossy-delayed/down", lossy, benchDown},
		{"no-relay", Link{}, benchDirect},
	} {
		b.Run(bc.name, func(b *testing.B) { benchThroughput(b, bc.link, bc.mode) })
	}
}

type benchMode int

const (
	benchUp benchMode = iota
	benchDown
	benchDirect
)

func benchThroughput(b *testing.B, link Link, mode benchMode) {
	const (
		size   = 1350
		window = 2048 // datagrams: 2.7 MB, within the 4 MiB socket buffers
		batch  = 64
	)
	targetConn, err := net.ListenUDP("udp", &net.UDPAddr{IP: loopback})
	if err != nil {
		b.Fatal(err)
	}
	targetSock, err := newSock(targetConn)
	if err != nil {
		b.Fatal(err)
	}
	defer targetConn.Close()
	cfg := Config{Seed: 1, ListenAddr: net.JoinHostPort(loopback.String(), "0")}
	if mode == benchDown {
		cfg.Down = link
	} else {
		cfg.Up = link
	}
	relay, err := NewRelay(targetConn.LocalAddr().String(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer relay.Close()
	to := relay.Addr()
	if mode == benchDirect {
		to = targetConn.LocalAddr().(*net.UDPAddr)
	}
	clientConn, err := net.DialUDP("udp", nil, to)
	if err != nil {
		b.Fatal(err)
	}
	defer clientConn.Close()
	clientSock, err := newSock(clientConn)
	if err != nil {
		b.Fatal(err)
	}

	// from sends, rx receives; for the Down direction the target learns
	// the relay's upstream address from a first datagram of the client.
	from, rx, dest := clientSock, targetSock, (*client)(nil)
	if mode == benchDown {
		if _, err := clientConn.Write([]byte("hello")); err != nil {
			b.Fatal(err)
		}
		br := newBatchReader(targetSock, true, 1)
		if _, err := br.read(); err != nil {
			b.Fatal(err)
		}
		from, rx = targetSock, clientSock
		dest = &client{addr: br.source(0), name: br.name(0)}
	}
	from.noGSO.Store(true) // kcp-go sends plain datagrams, not GSO runs

	var received atomic.Int64
	notify := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		br := newBatchReader(rx, false, batch)
		for {
			n, err := br.read()
			if err != nil {
				return
			}
			received.Add(int64(n))
			select {
			case notify <- struct{}{}:
			default:
			}
		}
	}()
	defer func() {
		rx.conn.Close()
		wg.Wait()
	}()

	dir := func() LinkStats {
		if mode == benchDown {
			return relay.Stats().Down
		}
		return relay.Stats().Up
	}
	// wait blocks until at most limit datagrams are in flight, or the flow
	// has stalled for a second (datagrams lost in a socket buffer).
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var lost int64
	wait := func(sent, limit int64) {
		stalled := time.Now()
		for {
			if sent-received.Load()-lost <= limit {
				return
			}
			st := dir()
			if lost = int64(st.DroppedLoss + st.DroppedQueue); sent-received.Load()-lost <= limit {
				return
			}
			if time.Since(stalled) > time.Second {
				b.Logf("flow stalled with %d datagrams in flight", sent-received.Load()-lost)
				lost = sent - received.Load()
				return
			}
			timer.Reset(time.Millisecond)
			select {
			case <-notify:
			case <-timer.C:
			}
		}
	}

	msg := make([]byte, size)
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = msg
	}
	var w batchWriter
	b.ResetTimer()
	start := time.Now()
	for sent := 0; sent < b.N; {
		k := min(batch, b.N-sent)
		wait(int64(sent), window-int64(k))
		n, _, _, err := w.write(from, dest, bufs[:k])
		if err != nil {
			b.Fatal(err)
		}
		sent += n
	}
	wait(int64(b.N), 0)
	elapsed := time.Since(start).Seconds()
	b.StopTimer()

	got := float64(received.Load())
	b.ReportMetric(got*size/elapsed/1e6, "MB/s")
	b.ReportMetric(got/elapsed, "pkts/s")
	b.ReportMetric(100*(1-got/float64(b.N)), "%lost")
}
