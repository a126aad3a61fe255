package kcptun

import (
	"io"
	"sync"

	"github.com/seed-fc8f924e/kcptun/internal/smuxwire"
)

// updateGuard is the transport smux writes to: it passes every frame on and
// keeps the smux v2 window updates of each stream from going backwards.
//
// A window update carries the total the reader has consumed, and the peer
// takes the latest one it receives as the truth. smux sends a stream's
// update under the stream's read deadline; when the deadline cuts the send
// short, smux may still have the frame queued, while Stream.Read sends the
// update again at once, straight to the transport (Stream.consumed). A
// reader that then emptied its buffer quickly sent its newer totals ahead of
// smux's queued one, the peer took the older total last, saw its window
// full, and the transfer stopped for good: nothing was left to read, so
// nothing sent another update. The guard drops an update whose total is
// below one already sent for the stream; the newer one stands.
type updateGuard struct {
	io.ReadWriteCloser
	vw vectorWriter // the transport's vectored write; nil when it has none

	mu   sync.Mutex
	sent map[uint32]uint32 // per stream id, the largest consumed total sent
}

func newUpdateGuard(tr io.ReadWriteCloser) *updateGuard {
	g := &updateGuard{ReadWriteCloser: tr}
	g.vw, _ = tr.(vectorWriter)
	return g
}

// Write passes p on, unless it is a stale window update.
func (g *updateGuard) Write(p []byte) (int, error) {
	if len(p) == smuxwire.HeaderSize+smuxwire.UpdateSize {
		if sid, consumed, ok := smuxwire.ParseWindowUpdate(p[:smuxwire.HeaderSize], p[smuxwire.HeaderSize:]); ok {
			return g.writeUpdate(sid, consumed, len(p), func() (int, error) { return g.ReadWriteCloser.Write(p) })
		}
	}
	return g.ReadWriteCloser.Write(p)
}

// WriteBuffers passes v on as one write (smux hands a frame's header and
// body as two slices), unless it is a stale window update.
func (g *updateGuard) WriteBuffers(v [][]byte) (int, error) {
	if len(v) == 2 {
		if sid, consumed, ok := smuxwire.ParseWindowUpdate(v[0], v[1]); ok {
			return g.writeUpdate(sid, consumed, len(v[0])+len(v[1]), func() (int, error) { return g.writeVec(v) })
		}
	}
	return g.writeVec(v)
}

func (g *updateGuard) writeVec(v [][]byte) (int, error) {
	if g.vw == nil {
		return writeEach(g.ReadWriteCloser, v)
	}
	return g.vw.WriteBuffers(v)
}

// writeUpdate writes the update of stream sid to consumed with write, or
// reports n bytes written and drops it when a larger total went out before.
// The check and the write happen under one lock, so that two updates of a
// stream reach the transport in the order of their totals.
func (g *updateGuard) writeUpdate(sid, consumed uint32, n int, write func() (int, error)) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if last, ok := g.sent[sid]; ok && int32(consumed-last) < 0 { // totals wrap at 4 GiB
		return n, nil
	}
	if g.sent == nil {
		g.sent = make(map[uint32]uint32)
	}
	g.sent[sid] = consumed
	return write()
}

// forget drops what the guard knows of stream sid, once the stream is
// closed and reads (which send its updates) have stopped.
func (g *updateGuard) forget(sid uint32) {
	g.mu.Lock()
	delete(g.sent, sid)
	g.mu.Unlock()
}
