package kcptun

import (
	"testing"
	"time"

	"github.com/seed-fc8f924e/kcptun/kcptuntest"
)

// TestLossyTransfer moves several MiB each way through the link emulator at
// 10 % loss with delay, jitter, reordering and duplication; the echo must come
// back byte for byte.
func TestLossyTransfer(t *testing.T) {
	opts := []Option{WithMode(ModeFast3), WithKey("lossy")}
	bad := kcptuntest.Link{Loss: 0.10, Delay: 5 * time.Millisecond, Jitter: 2 * time.Millisecond,
		Reorder: 0.02, Duplicate: 0.02}
	_, relay := listenEchoBehindRelay(t, kcptuntest.Config{Up: bad, Down: bad, Seed: 1}, opts...)
	c, err := Dial(relay.Addr().String(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoRoundTrip(t, c, randomBytes(t, 4<<20))
	st := relay.Stats()
	if st.Up.DroppedLoss == 0 || st.Down.DroppedLoss == 0 || st.Up.Duplicated == 0 {
		t.Errorf("the emulator dropped or duplicated nothing (%+v): the test did not test loss", st)
	}
	t.Logf("relay: up %+v down %+v", st.Up, st.Down)
}
