package packet

import (
	"net"
	"sync"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// maxBatch bounds the datagrams of one sendmmsg call.
const maxBatch = 64

// maxTxQueue bounds the datagrams waiting for the sender; beyond it the
// sender is behind the socket and datagrams are dropped (and counted).
const maxTxQueue = 4096

// batchWriter is what sends several datagrams in one system call:
// golang.org/x/net's WriteBatch (sendmmsg on Linux, one datagram per call
// elsewhere).
type batchWriter interface {
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// txItem is one sealed datagram waiting to be sent.
type txItem struct {
	buf []byte // a pool buffer
	p   *Peer
	dst *dest
}

// txQueue sends a Conn's datagrams in batches. A sender goroutine runs only
// while the queue holds datagrams: the first datagram of a burst starts it,
// and the datagrams that arrive while it sends go out together in its next
// system call. With no batch writer (a caller's socket that is not a
// *net.UDPConn) datagrams go out one WriteTo at a time, synchronously.
type txQueue struct {
	c       *Conn
	bw      batchWriter
	mu      sync.Mutex
	q       []txItem
	spare   []txItem
	running bool
	closed  bool
	wg      sync.WaitGroup
	msgs    []ipv4.Message
}

func (t *txQueue) init(c *Conn) {
	t.c = c
	if c.udp == nil {
		return
	}
	if la, ok := c.udp.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() == nil && !la.IP.IsUnspecified() {
		t.bw = ipv6.NewPacketConn(c.udp)
	} else {
		t.bw = ipv4.NewPacketConn(c.udp)
	}
}

// send queues a copy of d for p's current address, or, with no batch
// writer, sends it at once from the caller's goroutine.
func (t *txQueue) send(p *Peer, d []byte) {
	if t.bw == nil {
		p.writeNow(d, p.dst.Load())
		return
	}
	b := append(t.c.pool.get(), d...)
	t.mu.Lock()
	if t.closed || len(t.q) >= maxTxQueue {
		t.mu.Unlock()
		t.c.pool.put(b)
		p.st.QueueDrops.Add(1)
		return
	}
	t.q = append(t.q, txItem{buf: b, p: p, dst: p.dst.Load()})
	start := !t.running
	t.running = true
	if start {
		t.wg.Add(1)
	}
	t.mu.Unlock()
	if start {
		go t.run()
	}
}

// run sends until the queue is empty.
func (t *txQueue) run() {
	defer t.wg.Done()
	for {
		t.mu.Lock()
		if len(t.q) == 0 {
			t.running = false
			t.mu.Unlock()
			return
		}
		batch := t.q
		t.q, t.spare = t.spare[:0], nil
		t.mu.Unlock()
		for i := 0; i < len(batch); i += maxBatch {
			part := batch[i:min(i+maxBatch, len(batch))]
			t.write(part)
			for j := range part {
				t.c.pool.put(part[j].buf)
				part[j] = txItem{}
			}
		}
		t.mu.Lock()
		t.spare = batch[:0]
		t.mu.Unlock()
	}
}

// write sends a batch of at most maxBatch datagrams.
func (t *txQueue) write(items []txItem) {
	if t.msgs == nil {
		t.msgs = make([]ipv4.Message, maxBatch)
		for i := range t.msgs {
			t.msgs[i].Buffers = make([][]byte, 1)
		}
	}
	ms := t.msgs[:len(items)]
	for i, it := range items {
		ms[i].Buffers[0] = it.buf
		ms[i].Addr = it.dst.ua
	}
	for sent := 0; sent < len(ms); {
		n, err := t.bw.WriteBatch(ms[sent:], 0)
		if err != nil {
			// Count the one that failed and go on with the rest, as
			// sendto would have failed it alone.
			items[sent].p.st.SendErrors.Add(1)
			sent++
			continue
		}
		for _, it := range items[sent : sent+n] {
			it.p.st.DatagramsOut.Add(1)
			it.p.st.BytesOut.Add(uint64(len(it.buf)))
			totals.outPkts.Add(1)
			totals.outBytes.Add(uint64(len(it.buf)))
		}
		sent += n
	}
	for i := range ms {
		ms[i].Buffers[0], ms[i].Addr = nil, nil
	}
}

// close refuses new datagrams and waits until the sender has sent what was
// queued (kcp-go's last flush before it closes its session is in there).
func (t *txQueue) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.wg.Wait()
}
