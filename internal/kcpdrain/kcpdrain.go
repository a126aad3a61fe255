// Package kcpdrain empties the accept backlog of a closed kcp-go listener.
//
// kcp-go's Listener.Close leaves the sessions still queued for AcceptKCP
// running, each with its goroutines, and until the listener's read loop has
// ended a datagram it already read can queue one more. Whoever closes a
// kcp-go listener calls Backlog after Close so that nothing it opened
// outlives it.
package kcpdrain

import (
	"errors"
	"io"
	"runtime"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"
)

// bound is a safety limit on Backlog; it is not reached in practice.
const bound = 5 * time.Second

// Backlog closes the sessions queued in ln, which must be closed already.
// It first waits for the listener's read loop to end (AcceptKCP then
// reports the socket's error rather than io.ErrClosedPipe), since until then
// a late datagram can still queue a new session. AcceptKCP picks at random
// between a queued session and an error, so the backlog is empty for
// certain (to 1 in 2^64) once errors came 64 times in a row.
func Backlog(ln *kcp.Listener) {
	deadline := time.Now().Add(bound)
	readLoopDone := false
	for misses := 0; (!readLoopDone || misses < 64) && time.Now().Before(deadline); {
		ks, err := ln.AcceptKCP()
		if err != nil {
			switch {
			case readLoopDone:
				misses++
			case !errors.Is(err, io.ErrClosedPipe):
				readLoopDone = true // count misses from here on only
			default:
				runtime.Gosched()
			}
			continue
		}
		misses = 0
		_ = ks.Close()
	}
}
