package bench

import (
	"testing"

	"github.com/seed-fc8f924e/kcptun/internal/leakcheck"
)

// TestMain fails the run if any goroutine the tests started outlives them.
// kcp-go's process-wide timer workers, started from its init, are not ours.
func TestMain(m *testing.M) { leakcheck.Main(m) }
