package packet

import "sync"

// bufSize is the size of every pooled buffer: a whole datagram plus room for
// an AEAD tag, so that a shard or datagram is sealed in place.
const bufSize = MaxDatagram + 64

// bufPool recycles datagram-sized buffers. Its zero value is ready.
type bufPool struct{ p sync.Pool }

// get returns an empty buffer with capacity bufSize.
func (b *bufPool) get() []byte {
	if v, ok := b.p.Get().(*[bufSize]byte); ok {
		return v[:0]
	}
	return new([bufSize]byte)[:0]
}

// put returns a buffer obtained from get.
func (b *bufPool) put(s []byte) {
	if cap(s) < bufSize {
		return
	}
	b.p.Put((*[bufSize]byte)(s[:bufSize]))
}
