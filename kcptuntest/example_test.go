package kcptuntest_test

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/seed-fc8f924e/kcptun/kcptuntest"
)

func ExampleNewRelay() {
	// A UDP echo server stands in for the server under test.
	server, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		fmt.Println(err)
		return
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := server.ReadFromUDPAddrPort(buf)
			if err != nil {
				return // closed
			}
			_, _ = server.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	defer func() {
		server.Close()
		wg.Wait()
	}()

	// A relay in front of it, adding 10 ms each way.
	relay, err := kcptuntest.NewRelay(server.LocalAddr().String(), kcptuntest.Config{
		Up:   kcptuntest.Link{Delay: 10 * time.Millisecond},
		Down: kcptuntest.Link{Delay: 10 * time.Millisecond},
		Seed: 1,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer relay.Close()

	// The client talks to the relay instead of the server.
	client, err := net.DialUDP("udp", nil, relay.Addr())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	start := time.Now()
	if _, err := client.Write([]byte("hello through the relay")); err != nil {
		fmt.Println(err)
		return
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, err := client.Read(buf)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(buf[:n]))
	fmt.Println("round trip of 20 ms or more:", time.Since(start) >= 20*time.Millisecond)
	// Output:
	// hello through the relay
	// round trip of 20 ms or more: true
}
