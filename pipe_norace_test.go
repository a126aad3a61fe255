//go:build !race

package kcptun

// raceDetector is false: the tests run without the race detector.
const raceDetector = false
