package kcpdrain

import (
	"testing"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"
	"go.uber.org/goleak"

	"github.com/seed-fc8f924e/kcptun/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// TestBacklogClosesQueuedSessions queues sessions in a kcp-go listener that
// nobody accepts, closes it and drains it: no session's goroutine may
// outlive Backlog. (Without Backlog the queued sessions keep running.)
func TestBacklogClosesQueuedSessions(t *testing.T) {
	ln, err := kcp.ListenWithOptions("127.0.0.1:0", nil, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var clients []*kcp.UDPSession
	for range 3 {
		c, err := kcp.DialWithOptions(ln.Addr().String(), nil, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
	}
	// A client's bytes are acknowledged once the listener has opened its
	// session: then all three are queued. One is accepted and closed
	// here, the other two stay queued.
	deadline := time.Now().Add(10 * time.Second)
	for _, c := range clients {
		// kcp-go's RTT estimate stays 0 after an ACK that came back within
		// the millisecond, but its RTO then leaves the initial 200 ms.
		for c.GetSRTT() == 0 && c.GetRTO() == 200 { // no ACK yet
			if time.Now().After(deadline) {
				t.Fatal("the listener did not acknowledge every client's bytes in 10 s")
			}
			time.Sleep(5 * time.Millisecond) // polling kcp-go's state; no result depends on it
		}
	}
	_ = ln.SetDeadline(deadline)
	first, err := ln.AcceptKCP()
	if err != nil {
		t.Fatal(err)
	}
	_ = first.Close()
	for _, c := range clients {
		_ = c.Close()
	}
	_ = ln.Close()
	Backlog(ln)
	goleak.VerifyNone(t, leakcheck.Options()...)
}
