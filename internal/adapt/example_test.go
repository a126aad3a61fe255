package adapt_test

import (
	"fmt"
	"time"

	"github.com/seed-fc8f924e/kcptun/internal/adapt"
)

// Example shows how a packet layer drives a controller: it reports every
// datagram it sends and every ACK and loss it sees, with the time since
// the session started, and applies the outputs.
func Example() {
	c := adapt.New(adapt.Config{MSS: 1350})
	const rtt = 40 * time.Millisecond
	inflight := 0
	// A flow of 1000 packets per second whose packets are all acknowledged
	// one RTT later.
	for i := range 5000 {
		now := time.Duration(i) * time.Millisecond
		inflight += 1350
		c.OnSend(now, 1350, inflight)
		if now >= rtt {
			inflight -= 1350
			c.OnAck(now, 1350, rtt, false)
		}
	}
	st := c.State()
	data, parity := c.FEC()
	fmt.Printf("mode %v, bandwidth %d B/s, min RTT %v\n", st.Mode, st.Bandwidth, st.MinRTT)
	fmt.Printf("send window %d packets, FEC %d+%d\n", c.SendWindow(1350), data, parity)
	// Output:
	// mode probe-bw, bandwidth 1350000 B/s, min RTT 40ms
	// send window 93 packets, FEC 0+0
}
