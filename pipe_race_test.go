//go:build race

package kcptun

// raceDetector is true when the tests run with the race detector, under
// which sync.Pool drops items on purpose.
const raceDetector = true
