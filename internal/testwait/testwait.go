// Package testwait holds the polling helper that the tests of several
// packages of this module share.
package testwait

import (
	"testing"
	"time"
)

// For polls cond every few milliseconds until it holds, and fails t if it
// does not within timeout. It is for conditions that only a background
// goroutine can make true; what names the condition in the failure.
func For(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
