package kcptun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// PipeConfig says how Pipe ends a joined pair of connections. The zero value
// closes both as soon as either direction ends, as the classic kcptun
// binaries do.
type PipeConfig struct {
	// CloseWait bounds how long one direction may go on after the other
	// ended cleanly (its reader saw the end of the stream); when it passes,
	// both connections are closed. Zero closes both as soon as either
	// direction ends. The kcptun binaries call it closewait and default to
	// 0 on the client and 30 s on the server.
	CloseWait time.Duration

	// HalfCloseStreams lets Pipe pass the end of a direction on to a *Stream
	// (CloseWrite) when CloseWait is positive. Other connections that have a
	// CloseWrite method (*net.TCPConn, *net.UnixConn) are always half-closed,
	// since TCP and unix sockets go on delivering the other direction.
	//
	// A peer built on smux older than v1.5.54 (kcptun releases of 2025 among
	// them) cannot write after it received the end of a stream, so a reply
	// still to come would be lost. Leave it false when the peer may be such
	// a release and a half-closed request waits for its reply (the
	// forwarding client does); CloseWait then bounds the wait instead. Set it
	// when the side that ended has nothing more to ask for (the forwarding
	// server sets it, so that a client learns at once that its target
	// ended).
	HalfCloseStreams bool
}

// Pipe joins two connections, as a proxy does: it copies a to b and b to a
// until both directions have ended, then closes a and b and returns the
// number of bytes copied each way. Pipe owns a and b from the call on.
//
// When one direction ends cleanly and cfg.CloseWait is positive, Pipe passes
// the end on (it half-closes the writing side where cfg allows, see
// PipeConfig) and gives the other direction at most CloseWait to finish.
// Otherwise, or when a read or a write fails, both connections are closed at
// once. Cancelling ctx closes both as well. Pipe starts two goroutines and
// waits for both before it returns.
//
// The error is nil when both directions ended cleanly or CloseWait ran out.
// Otherwise it wraps ctx's error when ctx ended first, or else the first
// error that ended a direction (a reset, a dead session). Errors that
// closing the connections causes are not reported.
func Pipe(ctx context.Context, a, b net.Conn, cfg PipeConfig) (aToB, bToA int64, err error) {
	ends := make(chan pipeEnd, 2)
	go func() {
		n, err := pipeCopy(b, a)
		ends <- pipeEnd{aToB: true, n: n, err: err}
	}()
	go func() {
		n, err := pipeCopy(a, b)
		ends <- pipeEnd{aToB: false, n: n, err: err}
	}()

	closed := false
	closeBoth := func() {
		if !closed {
			closed = true
			_ = a.Close()
			_ = b.Close()
		}
	}
	var wait *time.Timer // runs while one direction has ended and the other may finish
	var timeout <-chan time.Time
	done := ctx.Done()
	for pending := 2; pending > 0; {
		select {
		case e := <-ends:
			pending--
			if e.aToB {
				aToB = e.n
			} else {
				bToA = e.n
			}
			switch {
			case closed:
				// Pipe ended this direction itself; its error says nothing.
			case e.err != nil:
				err = e.err
				closeBoth()
			case pending == 0:
				// Both directions ended cleanly.
			case cfg.CloseWait <= 0:
				closeBoth()
			default:
				dst := b
				if !e.aToB {
					dst = a
				}
				if halfClose(dst, cfg) == nil {
					wait = time.NewTimer(cfg.CloseWait)
					timeout = wait.C
				} else {
					closeBoth()
				}
			}
		case <-timeout:
			closeBoth()
		case <-done:
			done = nil
			if !closed {
				err = ctx.Err()
				closeBoth()
			}
		}
	}
	if wait != nil {
		wait.Stop()
	}
	closeBoth()
	if err != nil {
		err = fmt.Errorf("kcptun: pipe: %w", err)
	}
	return aToB, bToA, err
}

// pipeEnd is how one direction of a Pipe ended.
type pipeEnd struct {
	aToB bool // the direction: a to b, or b to a
	n    int64
	err  error // nil at the end of the source
}

// halfClose passes the end of a direction on to dst, where cfg allows.
func halfClose(dst net.Conn, cfg PipeConfig) error {
	if _, ok := dst.(*Stream); ok && !cfg.HalfCloseStreams {
		return nil
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// pipeBufferSize is the size of the pooled buffers Pipe copies through: as
// large as smux's largest frame, so that one read can fill a frame and a
// 64 KiB read costs one system call where the classic binaries' 4 KiB
// buffers cost sixteen. Measured on loopback (BenchmarkPipeUp), 32 KiB and
// above cut the forwarding client's CPU time per byte by about a quarter
// against 4 KiB; larger buffers gain nothing more and cost memory per open
// connection.
const pipeBufferSize = 64 << 10

// pipeBuffers holds the copy buffers of Pipe, shared by every Pipe of the
// process so that a steady stream of short connections allocates nothing.
var pipeBuffers = sync.Pool{New: func() any {
	b := make([]byte, pipeBufferSize)
	return &b
}}

// pipeCopy copies src into dst until src ends, and returns nil at the end of
// src. A *Stream hands its received frames straight to dst (WriteTo), with
// no copy in between; anything else goes through a pooled buffer, not
// through io.ReaderFrom or io.WriterTo, whose fallbacks in the net package
// allocate small buffers on every call.
func pipeCopy(dst io.Writer, src io.Reader) (int64, error) {
	if s, ok := src.(*Stream); ok {
		return s.WriteTo(dst)
	}
	bp := pipeBuffers.Get().(*[]byte)
	defer pipeBuffers.Put(bp)
	buf := *bp
	var written int64
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			written += int64(nw)
			if werr != nil {
				return written, werr
			}
			if nw != nr {
				return written, io.ErrShortWrite
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				return written, nil
			}
			return written, rerr
		}
	}
}
