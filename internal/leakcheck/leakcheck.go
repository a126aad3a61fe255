// Package leakcheck ends a test binary with a goroutine-leak check
// (go.uber.org/goleak) that knows the goroutines kcp-go keeps for the life of
// the process, shared by every session: its timer scheduler's (started from
// its init) and its pool of packet post-processing workers (started with the
// first session). Every other goroutine a test leaves behind fails the run.
package leakcheck

import (
	"testing"

	"go.uber.org/goleak"
)

// Options returns the goleak options that ignore kcp-go's process-lifetime
// goroutines, for tests that call goleak themselves.
func Options() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/xtaci/kcp-go/v5.(*TimedSched).run"),
		goleak.IgnoreAnyFunction("github.com/xtaci/kcp-go/v5.postProcessWorker"),
	}
}

// Main runs the tests of m and, if they passed, fails the run when a
// goroutine outlives them. Call it from TestMain.
func Main(m *testing.M) { goleak.VerifyTestMain(m, Options()...) }
