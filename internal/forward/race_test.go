//go:build race

package forward

// raceEnabled is true when the tests run with the race detector, under
// which sync.Pool drops items on purpose.
const raceEnabled = true
