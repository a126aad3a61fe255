//go:build !linux

package bench

import (
	"errors"

	"github.com/seed-fc8f924e/kcptun/kcptuntest"
)

// ErrLinuxTCPUnavailable wraps every reason why the tcp-linux system cannot
// run here.
var ErrLinuxTCPUnavailable = errors.New("kernel TCP baseline unavailable: it needs Linux network namespaces and TUN devices")

// LinuxTCPAvailable reports why the tcp-linux system cannot run here.
func LinuxTCPAvailable() error { return ErrLinuxTCPUnavailable }

func newLinuxTCPTestbed(kcptuntest.Config) (*testbed, error) { return nil, ErrLinuxTCPUnavailable }
