package kcptun

import (
	"fmt"
	"strings"
)

// Mode selects a KCP timing profile: how eagerly KCP retransmits and how
// often it flushes. Modes are local to one end; the two ends need not agree.
type Mode int

// The mode profiles of the kcptun binaries, as (nodelay, interval ms, resend, nc):
// normal 0,40,2,1; fast 0,30,2,1; fast2 1,20,2,1; fast3 1,10,2,1. ModeManual uses
// the four values given to WithNoDelay.
const (
	// ModeFast is the default profile (0, 30 ms, 2, 1).
	ModeFast Mode = iota
	// ModeNormal is the most conservative profile (0, 40 ms, 2, 1).
	ModeNormal
	// ModeFast2 turns on KCP's no-delay retransmission (1, 20 ms, 2, 1).
	ModeFast2
	// ModeFast3 is the most aggressive profile (1, 10 ms, 2, 1).
	ModeFast3
	// ModeManual uses the values given to WithNoDelay; its defaults are the
	// binaries' hidden defaults (0, 50 ms, 0, 0).
	ModeManual
)

// noDelay holds KCP's four timing parameters.
type noDelay struct {
	NoDelay, Interval, Resend, NC int
}

var modeNames = [...]string{
	ModeFast:   "fast",
	ModeNormal: "normal",
	ModeFast2:  "fast2",
	ModeFast3:  "fast3",
	ModeManual: "manual",
}

var modeProfiles = [...]noDelay{
	ModeFast:   {0, 30, 2, 1},
	ModeNormal: {0, 40, 2, 1},
	ModeFast2:  {1, 20, 2, 1},
	ModeFast3:  {1, 10, 2, 1},
	ModeManual: {0, 50, 0, 0},
}

// String returns the mode's name as the kcptun binaries spell it ("fast2").
func (m Mode) String() string {
	if m >= 0 && int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

func (m Mode) valid() bool { return m >= 0 && int(m) < len(modeNames) }

// ParseMode returns the Mode named by s: "normal", "fast", "fast2", "fast3" or
// "manual", case-insensitively. Any other name is an error that wraps
// ErrInvalidOption.
func ParseMode(s string) (Mode, error) {
	name := strings.ToLower(strings.TrimSpace(s))
	for m, n := range modeNames {
		if n == name {
			return Mode(m), nil
		}
	}
	return 0, &OptionError{Option: "mode", Value: s, Reason: "want one of normal, fast, fast2, fast3, manual"}
}
