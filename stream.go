package kcptun

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xtaci/smux"
)

// Stream is one reliable, ordered, bidirectional byte stream: a smux stream
// over a KCP session. It implements net.Conn; deadlines work as on a TCP
// connection, a timeout matches os.ErrDeadlineExceeded and satisfies
// net.Error's Timeout, and use after Close matches net.ErrClosed. LocalAddr and
// RemoteAddr are the UDP addresses of the session.
//
// Write owns its bytes: when it returns (n, err), the first n bytes of p will
// be delivered (unless the session dies) and none after them, and p is not
// used after Write returns. It copies p into the stream's own buffers, at most
// two smux frames ahead of what smux has taken; a deadline or Close interrupts
// only the wait for such a buffer, never a frame half handed over.
//
// Dial, Client.Dial and Listener.Accept return *Stream as a net.Conn.
type Stream struct {
	st     *smux.Stream
	sess   *session
	local  net.Addr
	remote net.Addr
	owner  streamOwner   // the Client, the Listener or dialOwner
	read   atomic.Uint32 // bytes handed to the user, as smux v2 counts them

	done     chan struct{} // closed by Close: wakes every blocked call
	wdl      deadline      // the write deadline; smux never sees one
	wmu      sync.Mutex    // one Write at a time, so that each stays contiguous
	state    sync.Mutex    // guards the fields below
	closed   atomic.Bool   // set by Close, under state
	wclosed  bool          // set by CloseWrite or Close
	w        *writer       // started by the first Write or by Close
	closedAt time.Time
	force    *time.Timer // ends a finish that takes longer than lingerTimeout
}

func newStream(st *smux.Stream, sess *session, owner streamOwner) *Stream {
	sess.streamOpened()
	return &Stream{st: st, sess: sess, local: sess.kcp.LocalAddr(), remote: sess.kcp.RemoteAddr(),
		owner: owner, done: make(chan struct{})}
}

// streamOwner is the one owner of a Stream: the Client or the Listener that
// handed it out over a shared session, or dialOwner for a stream from Dial,
// which has a session of its own.
type streamOwner interface {
	// ownsSession reports whether the stream's session is the stream's
	// alone: Close then delivers the stream's bytes and closes the session.
	ownsSession() bool
	// streamClosing is called once per Stream, when Close starts finishing
	// it; streamReleased follows once it has finished.
	streamClosing()
	// streamReleased is called once per Stream, when it has finished.
	streamReleased()
}

// finishingStreams counts an owner's streams that were closed but whose
// writer has not yet handed their last bytes to smux. Close on a stream
// whose session is dying but not yet closed returns before its writer ends;
// the owner's Close, having closed every session (which makes such writers
// end at once), waits for them, so that its Stats count no stream afterwards.
type finishingStreams struct {
	mu   sync.Mutex
	n    int
	none *sync.Cond // signalled when n drops to 0
}

func (f *finishingStreams) add() {
	f.mu.Lock()
	f.n++
	f.mu.Unlock()
}

func (f *finishingStreams) done() {
	f.mu.Lock()
	f.n--
	if f.n == 0 && f.none != nil {
		f.none.Broadcast()
	}
	f.mu.Unlock()
}

// wait returns once no closed stream is still finishing.
func (f *finishingStreams) wait() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.none == nil {
		f.none = sync.NewCond(&f.mu)
	}
	for f.n > 0 {
		f.none.Wait()
	}
}

// dialOwner owns the streams of Dial and DialPacket: each stream closes its
// own session, so there is nothing to count.
type dialOwner struct{}

func (dialOwner) ownsSession() bool { return true }
func (dialOwner) streamClosing()    {}
func (dialOwner) streamReleased()   {}

// lingerTimeout bounds how long a closed Dial stream keeps its session open
// to deliver what KCP has not seen acknowledged yet, and how long a closed
// stream of a shared session may take to hand its last buffered bytes to smux.
const lingerTimeout = 5 * time.Second

// Read reads bytes the peer wrote. It returns io.EOF once the peer closed its
// side and every byte before that was read.
func (s *Stream) Read(p []byte) (int, error) {
	if s.isClosed() {
		return 0, s.opError("read", net.ErrClosed)
	}
	n, err := s.st.Read(p)
	if n > 0 {
		s.consumed(n, err)
		return n, nil // an error after data is reported by the next call
	}
	return n, s.wrap("read", err)
}

// consumed counts n bytes read. smux v2 tells the peer how much was read with
// a window update sent under the read deadline; when the deadline cut that
// send short (err is then the timeout), the update is lost and the peer's
// window would never reopen, so it is sent again here. smux may still send
// its own copy later, behind newer totals: updateGuard drops it.
func (s *Stream) consumed(n int, err error) {
	total := s.read.Add(uint32(n))
	if err != nil && s.sess.version == 2 && !s.isClosed() {
		_ = s.sess.sendWindowUpdate(s.st.ID(), total)
	}
}

// WriteTo copies the stream into w until the peer closes its side, without an
// intermediate buffer; io.Copy uses it. It returns nil at the end of the stream.
func (s *Stream) WriteTo(w io.Writer) (int64, error) {
	if s.isClosed() {
		return 0, s.opError("read", net.ErrClosed)
	}
	n, err := s.st.WriteTo(w)
	if n > 0 {
		s.read.Add(uint32(n))
	}
	if err == io.EOF {
		err = nil
	}
	if err != nil && n > 0 && s.sess.version == 2 && !s.isClosed() {
		_ = s.sess.sendWindowUpdate(s.st.ID(), s.read.Load())
	}
	return n, s.wrap("read", err)
}

// Write writes p to the stream. It blocks while the stream's buffers are full
// (the peer's window or KCP's send window is), until the write deadline or
// Close. See Stream for what the returned count promises.
func (s *Stream) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.state.Lock()
	closed, wclosed := s.closed.Load(), s.wclosed
	w := s.w
	if w == nil && !closed && !wclosed {
		w = s.startWriter()
	}
	s.state.Unlock()
	switch {
	case closed:
		return 0, s.opError("write", net.ErrClosed)
	case wclosed:
		return 0, s.opError("write", ErrSessionClosed)
	}
	n := 0
	for len(p) > 0 {
		if s.wdl.expired() {
			return n, s.opError("write", os.ErrDeadlineExceeded)
		}
		select {
		case <-w.free:
		case <-s.done:
			return n, s.opError("write", net.ErrClosed)
		case <-s.wdl.wait():
			return n, s.opError("write", os.ErrDeadlineExceeded)
		case <-w.failed:
			return n, s.wrap("write", w.err)
		}
		// The buffer comes from the session's pool only now, so that an
		// idle stream holds none.
		b := s.sess.writeBuf(len(p))
		c := copy(*b, p)
		// Under state, so that a concurrent Close or CloseWrite queues its
		// end after it, never before.
		s.state.Lock()
		if s.closed.Load() || s.wclosed {
			err := ErrSessionClosed
			if s.closed.Load() {
				err = net.ErrClosed
			}
			s.state.Unlock()
			s.sess.putWriteBuf(b)
			w.free <- struct{}{}
			return n, s.opError("write", err)
		}
		w.work <- chunk{buf: b, n: c}
		s.state.Unlock()
		n += c
		p = p[c:]
	}
	return n, nil
}

// startWriter starts the goroutine that hands the stream's chunks to smux.
// s.state must be held.
func (s *Stream) startWriter() *writer {
	w := &writer{
		free:   make(chan struct{}, writerBuffers),
		work:   make(chan chunk, writerBuffers+2), // room for every buffer and both ends
		failed: make(chan struct{}),
		exited: make(chan struct{}),
	}
	for range writerBuffers {
		w.free <- struct{}{}
	}
	s.w = w
	go s.runWriter(w)
	return w
}

// writerBuffers is how many smux frames a Stream buffers ahead of smux. The
// buffers come from the session's pool for as long as they hold bytes, so a
// stream that is not writing holds none. With three, a writer that keeps up
// has the next chunk queued while it hands one to smux, which lets the
// transport leave KCP's flush to the next (kcpConn.writeVec).
const writerBuffers = 3

// writer is the goroutine of a Stream that hands its chunks to smux, so that
// smux's own write, which keeps using the slice it was given and cannot be
// interrupted cleanly, never runs on a caller's time or buffer.
type writer struct {
	free   chan struct{} // one token per buffer a Write may fill
	work   chan chunk    // filled buffers, then the end markers, in order
	failed chan struct{} // closed when smux refused a frame; err says why
	err    error
	exited chan struct{} // closed when the goroutine has ended
	gone   bool          // it ended before Close, with its session; under Stream.state
}

// chunk is a filled buffer, or an end marker.
type chunk struct {
	buf  *[]byte
	n    int
	fin  bool // CloseWrite: send the end of the stream
	last bool // Close: the stream is finished
}

// runWriter hands chunks to smux in order until the stream is closed.
func (s *Stream) runWriter(w *writer) {
	defer close(w.exited)
	var (
		failed  bool
		finSent bool
		marks   uint64 // the transport's write count after the last user bytes
	)
	fail := func(err error) {
		if !failed {
			failed = true
			w.err = err
			close(w.failed)
		}
	}
	die := s.st.GetDieCh()
	for {
		var c chunk
		select {
		case c = <-w.work:
		case <-die:
			// The session ended. Unless Close has queued the end (then it is
			// finished in order, every write failing at once), the stream's
			// Close finishes it without the writer.
			fail(io.ErrClosedPipe)
			s.state.Lock()
			if !s.closed.Load() {
				w.gone = true
				s.state.Unlock()
				return
			}
			s.state.Unlock()
			die = nil
			continue
		}
		switch {
		case c.buf != nil:
			if !failed {
				if len(w.work) > 0 {
					// What is queued behind this chunk (data or an end)
					// writes next.
					s.sess.base.moreFollows()
				}
				_, err := s.st.Write((*c.buf)[:c.n])
				if err != nil {
					fail(err)
				} else {
					marks = s.sess.base.writes.Load()
				}
			}
			s.sess.putWriteBuf(c.buf)
			w.free <- struct{}{}
		case c.fin:
			if !failed && !finSent {
				finSent = true
				_ = s.sess.sendFIN(s.st.ID())
			}
		case c.last:
			s.finish(marks)
			return
		}
	}
}

// CloseWrite sends the end of the stream to the peer (a half-close, like
// TCP's shutdown of the write side) after every byte written before; reading
// goes on until the peer's end, and no byte the peer sent is dropped. Later
// writes fail. It returns at once.
func (s *Stream) CloseWrite() error {
	s.state.Lock()
	defer s.state.Unlock()
	if s.closed.Load() {
		return s.opError("close", net.ErrClosed)
	}
	if s.wclosed {
		return nil
	}
	s.wclosed = true
	if s.w == nil {
		s.startWriter()
	}
	s.w.work <- chunk{fin: true}
	return nil
}

// Close closes the stream in both directions. Every Read and Write blocked on
// it returns at once with an error that matches net.ErrClosed, as does every
// later call, Close included.
//
// Bytes already written are still delivered, in the background: the end of
// the stream follows them. A stream from Dial owns its session and closes it
// once KCP has seen all of the stream's bytes acknowledged (at most 5 s after
// Close, if the peer never acknowledges them); when everything was already
// acknowledged, within about one round trip.
func (s *Stream) Close() error {
	s.state.Lock()
	if s.closed.Load() {
		s.state.Unlock()
		return s.opError("close", net.ErrClosed)
	}
	s.closed.Store(true)
	s.wclosed = true
	s.closedAt = time.Now()
	s.sess.guard.forget(s.st.ID())
	s.owner.streamClosing()
	close(s.done)
	// Whatever the writer is stuck on (a peer that stopped reading), the
	// stream and a Dial stream's session end lingerTimeout after Close.
	s.force = time.AfterFunc(lingerTimeout, func() {
		if s.owner.ownsSession() {
			s.sess.close()
		} else {
			_ = s.st.Close()
		}
	})
	// Wake a Read blocked in smux; Read reports net.ErrClosed from now on.
	_ = s.st.SetReadDeadline(time.Unix(1, 0))
	w := s.w
	if w == nil {
		w = s.startWriter()
	}
	if w.gone {
		s.state.Unlock()
		s.finish(0) // the session is gone: nothing left to deliver or wait for
		return nil
	}
	w.work <- chunk{last: true}
	s.state.Unlock()
	select {
	case <-s.st.GetDieCh():
		// The session is gone: every chunk fails at once, so the writer
		// finishes promptly, and Close returns with the stream released
		// (the owner's Stats no longer count it).
		<-w.exited
	default:
	}
	return nil
}

// finish runs on the writer once every chunk was handed to smux: it closes the
// smux stream (which sends its end after them) and releases the stream; a Dial
// stream then waits for KCP to deliver and closes its session.
func (s *Stream) finish(marks uint64) {
	s.state.Lock()
	closedAt := s.closedAt
	s.state.Unlock()
	if s.owner.ownsSession() {
		s.lingerThenClose(closedAt, marks)
	} else {
		_ = s.st.Close()
	}
	s.force.Stop()
	s.sess.streamClosed()
	s.owner.streamReleased()
}

// lingerThenClose ends a Dial stream: closing a KCP session drops what it has
// not delivered, so the session stays until KCP has seen every segment
// acknowledged. The user's bytes get up to lingerTimeout; the frames the SDK
// wrote after them (the end of the stream, a window update) only a short grace
// once the user's bytes are in, since a peer that has gone never acknowledges
// them.
func (s *Stream) lingerThenClose(start time.Time, marks uint64) {
	defer s.sess.close()
	deadline := start.Add(lingerTimeout)
	// The end of the stream, sent through smux after every chunk.
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_ = s.st.Close()
	}()
	select {
	case <-closed:
	case <-time.After(time.Until(deadline)):
		return
	}
	ours := int(min(s.sess.base.writes.Load()-marks, 64))
	if !s.sess.waitUnacked(ours, deadline) {
		return
	}
	if g := time.Now().Add(s.sess.flushGrace()); g.Before(deadline) {
		deadline = g
	}
	s.sess.waitUnacked(0, deadline)
}

func (s *Stream) isClosed() bool { return s.closed.Load() }

// LocalAddr returns the local UDP address of the stream's session.
func (s *Stream) LocalAddr() net.Addr { return s.local }

// RemoteAddr returns the peer's UDP address. On a listener's stream it is
// the address the peer sends from now: after the session migrated (see
// Listen), it is the new address, not the one the session was opened from.
func (s *Stream) RemoteAddr() net.Addr {
	if p := s.sess.peer; p != nil && s.sess.server {
		if a := p.RemoteAddr(); a != nil {
			return a
		}
	}
	return s.remote
}

// SetDeadline sets the read and write deadlines. A zero time clears them.
func (s *Stream) SetDeadline(t time.Time) error {
	if err := s.SetReadDeadline(t); err != nil {
		return err
	}
	return s.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline. A zero time clears it.
func (s *Stream) SetReadDeadline(t time.Time) error {
	s.state.Lock()
	defer s.state.Unlock()
	if s.closed.Load() {
		return s.opError("set", net.ErrClosed)
	}
	return s.st.SetReadDeadline(t)
}

// SetWriteDeadline sets the write deadline. A zero time clears it.
func (s *Stream) SetWriteDeadline(t time.Time) error {
	if s.isClosed() {
		return s.opError("set", net.ErrClosed)
	}
	s.wdl.set(t)
	return nil
}

// ID returns the smux stream identifier, unique within its session.
func (s *Stream) ID() uint32 { return s.st.ID() }

// wrap turns smux's errors into the standard library's: io.EOF stays as it
// is, timeouts become os.ErrDeadlineExceeded, use after Close net.ErrClosed.
func (s *Stream) wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case s.isClosed():
		return s.opError(op, net.ErrClosed)
	case err == io.EOF:
		if s.sess.idled.Load() {
			return s.opError(op, ErrIdleTimeout)
		}
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return s.opError(op, os.ErrDeadlineExceeded)
	}
	if errors.Is(err, io.ErrClosedPipe) {
		if s.sess.idled.Load() {
			return s.opError(op, ErrIdleTimeout)
		}
		return s.opError(op, ErrSessionClosed)
	}
	return s.opError(op, err)
}

func (s *Stream) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "kcp", Source: s.local, Addr: s.remote, Err: err}
}

// ErrSessionClosed reports an operation on a stream whose session has ended
// (the peer went away, or the Client or Listener that owns it was closed), or
// a write after CloseWrite.
var ErrSessionClosed = errors.New("kcptun: session closed")

// ErrIdleTimeout reports an operation on a stream whose session received
// nothing for the WithIdleTimeout duration and was closed. It matches
// ErrSessionClosed as well.
var ErrIdleTimeout = idleTimeoutError{}

type idleTimeoutError struct{}

func (idleTimeoutError) Error() string { return "kcptun: session idle timeout" }

// Is makes ErrIdleTimeout match ErrSessionClosed too.
func (idleTimeoutError) Is(target error) bool { return target == ErrSessionClosed }

// deadline is a settable deadline whose expiry can be waited for, as
// net.Pipe keeps its own.
type deadline struct {
	mu    sync.Mutex
	t     time.Time
	timer *time.Timer
	ch    chan struct{} // closed when the deadline passes; nil until needed
}

// set sets the deadline; a zero time clears it.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.ch // the timer fired: wait until its callback closed the channel
	}
	d.timer = nil
	d.t = t
	if d.ch != nil {
		select {
		case <-d.ch: // fired: start afresh
			d.ch = make(chan struct{})
		default:
		}
	} else {
		d.ch = make(chan struct{})
	}
	if t.IsZero() {
		return
	}
	if dur := time.Until(t); dur > 0 {
		ch := d.ch
		d.timer = time.AfterFunc(dur, func() { close(ch) })
		return
	}
	close(d.ch)
}

// wait returns a channel closed when the deadline has passed.
func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ch == nil {
		d.ch = make(chan struct{})
	}
	return d.ch
}

// expired reports whether the deadline has passed.
func (d *deadline) expired() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.t.IsZero() && !time.Now().Before(d.t)
}
