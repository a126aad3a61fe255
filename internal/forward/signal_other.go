//go:build !unix

package forward

import "os"

// notifyUSR1 returns nil: there is no SIGUSR1 here.
func notifyUSR1() chan os.Signal { return nil }
