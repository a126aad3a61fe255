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
// Dial, Client.Dial and Listener.Accept return *Stream as a net.Conn.
type Stream struct {
	st      *smux.Stream
	sess    *session
	local   net.Addr
	remote  net.Addr
	release func() // runs once, after the stream is closed
	linger  bool   // Close lets the peer take the end of the stream first
	closed  atomic.Bool
	wclosed atomic.Bool   // CloseWrite was called
	read    atomic.Uint32 // bytes handed to the user, as smux v2 counts them
	once    sync.Once
}

func newStream(st *smux.Stream, sess *session, release func()) *Stream {
	sess.streamOpened()
	return &Stream{st: st, sess: sess, local: sess.kcp.LocalAddr(), remote: sess.kcp.RemoteAddr(), release: release}
}

// lingerTimeout bounds how long a closed Dial stream keeps its session open
// for the peer to take the end of the stream.
const lingerTimeout = 5 * time.Second

// lingering counts Dial streams whose sessions are still lingering after Close.
var lingering sync.WaitGroup

// Read reads bytes the peer wrote. It returns io.EOF once the peer closed its
// side and every byte before that was read.
func (s *Stream) Read(p []byte) (int, error) {
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
// window would never reopen, so it is sent again here.
func (s *Stream) consumed(n int, err error) {
	total := s.read.Add(uint32(n))
	if err != nil && s.sess.version == 2 && !s.closed.Load() {
		_ = s.sess.sendWindowUpdate(s.st.ID(), total)
	}
}

// Write writes p to the stream. It blocks while the peer's window is full.
func (s *Stream) Write(p []byte) (int, error) {
	if s.wclosed.Load() {
		return 0, s.wrap("write", io.ErrClosedPipe)
	}
	n, err := s.st.Write(p)
	return n, s.wrap("write", err)
}

// WriteTo copies the stream into w until the peer closes its side, without an
// intermediate buffer; io.Copy uses it. It returns nil at the end of the stream.
func (s *Stream) WriteTo(w io.Writer) (int64, error) {
	n, err := s.st.WriteTo(w)
	if n > 0 {
		s.read.Add(uint32(n))
	}
	if err == io.EOF {
		err = nil
	}
	if err != nil && n > 0 && s.sess.version == 2 && !s.closed.Load() {
		_ = s.sess.sendWindowUpdate(s.st.ID(), s.read.Load())
	}
	return n, s.wrap("read", err)
}

// CloseWrite sends the end of the stream to the peer (a half-close, like
// TCP's shutdown of the write side); reading goes on until the peer's end,
// and no byte the peer sent is dropped. Later writes fail. Call it after the
// last Write has returned.
func (s *Stream) CloseWrite() error {
	if !s.wclosed.CompareAndSwap(false, true) {
		return nil
	}
	return s.wrap("close", s.sess.sendFIN(s.st.ID()))
}

// Close closes the stream in both directions and releases what it holds.
// Close after the first returns an error that matches net.ErrClosed.
//
// A stream from Dial owns its session: Close sends the end of the stream at
// once and returns, and the session and its socket stay open in the
// background until the peer closes its side as well, or for at most 5 s, so
// that the last bytes written are not lost with the session.
func (s *Stream) Close() error {
	first := false
	var err error
	s.once.Do(func() {
		first = true
		s.closed.Store(true)
		if s.linger {
			err = s.closeLingering()
			return
		}
		err = s.finish()
	})
	if !first {
		return s.opError("close", net.ErrClosed)
	}
	if err == nil || errors.Is(err, io.ErrClosedPipe) {
		// A session that is gone already leaves the stream closed all the same.
		return nil
	}
	return s.opError("close", err)
}

// closeLingering ends a stream whose session closes with it. Closing a KCP
// session drops what it has not sent yet, so the stream sends its end first
// and the session stays open, in the background, until the peer has closed
// its side too (proof that everything before arrived) or lingerTimeout passes.
func (s *Stream) closeLingering() error {
	var err error
	if s.wclosed.CompareAndSwap(false, true) {
		err = s.sess.sendFIN(s.st.ID())
	}
	if err != nil {
		_ = s.finish()
		return err
	}
	lingering.Add(1)
	go func() {
		defer lingering.Done()
		_ = s.st.SetReadDeadline(time.Now().Add(lingerTimeout))
		_, _ = io.Copy(io.Discard, s.st)
		_ = s.finish()
	}()
	return nil
}

// finish closes the smux stream and releases the session.
func (s *Stream) finish() error {
	err := s.st.Close()
	s.sess.streamClosed()
	if s.release != nil {
		s.release()
	}
	return err
}

// LocalAddr returns the local UDP address of the stream's session.
func (s *Stream) LocalAddr() net.Addr { return s.local }

// RemoteAddr returns the peer's UDP address.
func (s *Stream) RemoteAddr() net.Addr { return s.remote }

// SetDeadline sets the read and write deadlines. A zero time clears them.
func (s *Stream) SetDeadline(t time.Time) error { return s.st.SetDeadline(t) }

// SetReadDeadline sets the read deadline. A zero time clears it.
func (s *Stream) SetReadDeadline(t time.Time) error { return s.st.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline. A zero time clears it.
func (s *Stream) SetWriteDeadline(t time.Time) error { return s.st.SetWriteDeadline(t) }

// ID returns the smux stream identifier, unique within its session.
func (s *Stream) ID() uint32 { return s.st.ID() }

// wrap turns smux's errors into the standard library's: io.EOF stays as it
// is, timeouts become os.ErrDeadlineExceeded, use after Close net.ErrClosed.
func (s *Stream) wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case s.closed.Load():
		return s.opError(op, net.ErrClosed)
	case err == io.EOF:
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return s.opError(op, os.ErrDeadlineExceeded)
	}
	if errors.Is(err, io.ErrClosedPipe) {
		return s.opError(op, ErrSessionClosed)
	}
	return s.opError(op, err)
}

func (s *Stream) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "kcp", Source: s.local, Addr: s.remote, Err: err}
}

// ErrSessionClosed reports an operation on a stream whose session has ended
// (the peer went away, the keepalive timed out, or the Client or Listener that
// owns it was closed), or a write after CloseWrite.
var ErrSessionClosed = errors.New("kcptun: session closed")
