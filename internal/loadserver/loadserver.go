// Package loadserver is the far end of the demo's and the benchmarks'
// connections: the first byte a client sends selects what the server does
// with the rest of the connection, count it (ModeSink) or echo it (ModeEcho).
package loadserver

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The modes a client selects with its first byte.
const (
	ModeSink byte = 'S' // count every byte until EOF
	ModeEcho byte = 'E' // echo every byte until EOF
)

// Server accepts connections from a listener and serves each.
type Server struct {
	ln       net.Listener
	received atomic.Int64 // bytes taken by sink connections
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closed   bool
}

// Start serves ln until Close.
func Start(ln net.Listener) *Server {
	s := &Server{ln: ln, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.accept()
	return s
}

// Received returns how many bytes sink connections have taken so far.
func (s *Server) Received() int64 { return s.received.Load() }

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.isClosed() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue // an accept deadline, not an end
			}
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(c)
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// serve runs the protocol on c until the peer or Close ends it.
func (s *Server) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		_ = c.Close()
	}()
	var mode [1]byte
	if _, err := io.ReadFull(c, mode[:]); err != nil {
		return
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		switch {
		case mode[0] == ModeSink:
			s.received.Add(int64(n))
		case n > 0 && mode[0] == ModeEcho:
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Close stops accepting, closes every connection and waits for the
// goroutines to end.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	_ = s.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
	s.wg.Wait()
}

// Dial opens a connection with dial, bounded by timeout, and selects mode.
func Dial(ctx context.Context, dial func(context.Context) (net.Conn, error), mode byte, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{mode}); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}
