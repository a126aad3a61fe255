package kcptuntest

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkRelayThroughput pushes 1350-byte datagrams, the size of a full
// KCP segment, from one client through the Up direction of a relay into a
// sink, keeping at most a window of datagrams in flight so that no socket
// buffer overflows, and reports what reached the sink. Client and sink
// batch their system calls as kcp-go does (sendmmsg, recvmmsg) where the
// relay does, though without segmentation offload.
func BenchmarkRelayThroughput(b *testing.B) {
	for _, bc := range []struct {
		name string
		link Link
	}{
		{"perfect", Link{}},
		{"lossy-delayed", Link{
			Loss:   0.01,
			Delay:  2 * time.Millisecond,
			Jitter: 500 * time.Microsecond,
		}},
	} {
		b.Run(bc.name, func(b *testing.B) { benchThroughput(b, bc.link) })
	}
}

func benchThroughput(b *testing.B, link Link) {
	const (
		size   = 1350
		window = 2048 // datagrams: 2.7 MB, within the 4 MiB socket buffers
		batch  = 64
	)
	sinkConn, err := net.ListenUDP("udp", &net.UDPAddr{IP: loopback})
	if err != nil {
		b.Fatal(err)
	}
	sink, err := newSock(sinkConn)
	if err != nil {
		b.Fatal(err)
	}
	relay, err := NewRelay(sinkConn.LocalAddr().String(), Config{
		Up:         link,
		Seed:       1,
		ListenAddr: net.JoinHostPort(loopback.String(), "0"),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer relay.Close()
	clientConn, err := net.DialUDP("udp", nil, relay.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer clientConn.Close()
	client, err := newSock(clientConn)
	if err != nil {
		b.Fatal(err)
	}
	client.noGSO.Store(true) // kcp-go sends plain datagrams, not GSO runs

	var received atomic.Int64
	notify := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		br := newBatchReader(sink, false, batch)
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
		sinkConn.Close()
		wg.Wait()
	}()

	dropped := func() int64 {
		st := relay.Stats().Up
		return int64(st.DroppedLoss + st.DroppedQueue)
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
			if lost = dropped(); sent-received.Load()-lost <= limit {
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
		n, _, _, err := w.write(client, nil, bufs[:k])
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
