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

	// used by the sender goroutine only
	bufs  [][]byte // a batch's datagrams, to encipher them
	msgs  []ipv4.Message
	first []int // index in the batch of each message's first datagram
	segs  []int // datagrams in each message
	oob   []byte
	gso   bool // segmentation offload not refused yet
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

// send queues b, a datagram from cipher.sealForQueue in a buffer from the
// Conn's pool that belongs to the queue from here on, for p's current
// address; with no batch writer it sends it at once from the caller's
// goroutine.
func (t *txQueue) send(p *Peer, b []byte) {
	if t.bw == nil {
		t.c.cip.encipherQueuedOne(b)
		p.writeNow(b, p.dst.Load())
		t.c.pool.put(b)
		return
	}
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
		if t.c.cip.batch != nil {
			for _, it := range batch {
				t.bufs = append(t.bufs, it.buf)
			}
			t.c.cip.encipherQueued(t.bufs)
			clear(t.bufs)
			t.bufs = t.bufs[:0]
		}
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

// write sends a batch of at most maxBatch datagrams. Where the kernel does
// segmentation offload, runs of equal-sized datagrams to one address go as
// one message each; the first refusal turns it off for the Conn.
func (t *txQueue) write(items []txItem) {
	if t.msgs == nil {
		t.gso = gsoSupported
	}
	if len(t.msgs) < len(items) {
		// Sized by the largest batch so far, so that a peer that only ever
		// sends a few datagrams at a time (an idle session) keeps little.
		n := min(max(2*len(t.msgs), len(items), 4), maxBatch)
		t.msgs = make([]ipv4.Message, n)
		t.first = make([]int, n)
		t.segs = make([]int, n)
		t.oob = make([]byte, n*gsoCmsgSpace)
	}
	nm := 0
	for i := 0; i < len(items); {
		segs := 1
		if t.gso {
			size, total := len(items[i].buf), len(items[i].buf)
			for i+segs < len(items) && segs < gsoMaxSegments {
				next := items[i+segs]
				if next.dst != items[i].dst || len(next.buf) > size || total+len(next.buf) > gsoMaxBytes {
					break
				}
				segs++
				total += len(next.buf)
				if len(next.buf) < size {
					break // only the last datagram may be shorter
				}
			}
		}
		m := &t.msgs[nm]
		m.Buffers = m.Buffers[:0]
		for _, it := range items[i : i+segs] {
			m.Buffers = append(m.Buffers, it.buf)
		}
		m.Addr = items[i].dst.ua
		m.OOB = nil
		if segs > 1 {
			m.OOB = putGSO(t.oob[nm*gsoCmsgSpace:], len(items[i].buf))
		}
		t.first[nm], t.segs[nm] = i, segs
		nm++
		i += segs
	}
	ms := t.msgs[:nm]
	for sent := 0; sent < nm; {
		n, err := t.bw.WriteBatch(ms[sent:], 0)
		if err != nil {
			if t.segs[sent] > 1 {
				// Whatever the reason (EINVAL, EIO, EMSGSIZE, EOPNOTSUPP...),
				// send the rest one datagram per message from now on, so
				// that a kernel that cannot segment costs one failed call.
				t.gso = false
				rest := items[t.first[sent]:]
				t.clearMsgs(ms)
				t.write(rest)
				return
			}
			// Count the datagrams that failed and go on with the rest,
			// as sendto would have failed them alone.
			for _, it := range items[t.first[sent] : t.first[sent]+t.segs[sent]] {
				it.p.st.SendErrors.Add(1)
			}
			sent++
			continue
		}
		for k := sent; k < sent+n; k++ {
			for _, it := range items[t.first[k] : t.first[k]+t.segs[k]] {
				it.p.st.DatagramsOut.Add(1)
				it.p.st.BytesOut.Add(uint64(len(it.buf)))
				totals.outPkts.Add(1)
				totals.outBytes.Add(uint64(len(it.buf)))
			}
		}
		sent += n
	}
	t.clearMsgs(ms)
}

// clearMsgs drops the references a batch held.
func (t *txQueue) clearMsgs(ms []ipv4.Message) {
	for i := range ms {
		clear(ms[i].Buffers)
		ms[i].Buffers, ms[i].Addr, ms[i].OOB = ms[i].Buffers[:0], nil, nil
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
