//go:build unix

package forward

import (
	"os"
	"os/signal"
	"syscall"
)

// notifyUSR1 returns a channel that receives SIGUSR1.
func notifyUSR1() chan os.Signal {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR1)
	return c
}
