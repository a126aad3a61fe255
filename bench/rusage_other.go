//go:build !unix

package bench

// cpuSeconds is not measured on this platform.
func cpuSeconds() float64 { return 0 }

// peakRSSMiB is not measured on this platform.
func peakRSSMiB() float64 { return 0 }
