// Package leakcheck ends a test binary with a goroutine-leak check
// (go.uber.org/goleak) that knows the two goroutines kcp-go starts from its
// init and keeps for the life of the process: its timer scheduler, shared by
// every session. Every other goroutine a test leaves behind fails the run.
package leakcheck

import (
	"testing"

	"go.uber.org/goleak"
)

// Options returns the goleak options that ignore kcp-go's process-lifetime
// goroutines, for tests that call goleak themselves.
func Options() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/xtaci/kcp-go/v5.(*TimedSched).sched"),
		goleak.IgnoreAnyFunction("github.com/xtaci/kcp-go/v5.(*TimedSched).prepend"),
	}
}

// Main runs the tests of m and, if they passed, fails the run when a
// goroutine outlives them. Call it from TestMain.
func Main(m *testing.M) { goleak.VerifyTestMain(m, Options()...) }
