package forward

import (
	"context"
	"time"

	"github.com/seed-fc8f924e/kcptun"
)

// Drain bounds how long a program waits, after its last connection ended,
// for KCP to deliver what it still holds before closing its sessions.
const Drain = 2 * time.Second

// DrainKCP waits until KCP has nothing left to send or to see acknowledged,
// or until ctx ends; it reports whether KCP drained. Closing a KCP session
// drops what it has not delivered yet (the last bytes of a connection,
// the end of a stream), so the programs call it before closing their
// Client or Listener on the way out.
//
// The SDK does not expose per-session send queues, so this watches kcp-go's
// process-wide gauges (kcptun.SNMP's RingBufferSndQueue and
// RingBufferSndBuffer), which each session refreshes on every flush: they
// must read zero for 100 ms in a row, several flush intervals of every
// mode profile.
func DrainKCP(ctx context.Context) bool {
	const (
		poll     = 5 * time.Millisecond
		quietFor = 100 * time.Millisecond
	)
	t := time.NewTicker(poll)
	defer t.Stop()
	var quietSince time.Time
	for {
		s := kcptun.ReadSNMP()
		switch {
		case s.RingBufferSndQueue+s.RingBufferSndBuffer != 0:
			quietSince = time.Time{}
		case quietSince.IsZero():
			quietSince = time.Now()
		case time.Since(quietSince) >= quietFor:
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}
