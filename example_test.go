package kcptun_test

import (
	"fmt"
	"io"
	"log"

	"github.com/seed-fc8f924e/kcptun"
)

// echoOnce serves one stream: it echoes what it reads until EOF.
func echoOnce(ln *kcptun.Listener) {
	c, err := ln.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = io.Copy(c, c)
}

// ExampleListen runs a server that echoes every stream.
func ExampleListen() {
	ln, err := kcptun.Listen("127.0.0.1:0", kcptun.WithKey("example"))
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go echoOnce(ln)

	c, err := kcptun.Dial(ln.Addr().String(), kcptun.WithKey("example"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "ping")
	reply := make([]byte, 4)
	if _, err := io.ReadFull(c, reply); err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(reply))
	// Output: ping
}

// ExampleDial opens one stream on a session of its own, as a TCP client
// would open a connection.
func ExampleDial() {
	ln, err := kcptun.Listen("127.0.0.1:0", kcptun.WithKey("example"), kcptun.WithMode(kcptun.ModeFast2))
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go echoOnce(ln)

	// The modes of the two ends need not agree; key, cipher, compression
	// and smux version must.
	conn, err := kcptun.Dial(ln.Addr().String(), kcptun.WithKey("example"), kcptun.WithMode(kcptun.ModeFast3))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "hello")
	buf := make([]byte, 5)
	if _, err := io.ReadFull(conn, buf); err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(buf))
	// Output: hello
}

// ExampleNewClient multiplexes many streams over a pool of two sessions, as
// a proxy would.
func ExampleNewClient() {
	ln, err := kcptun.Listen("127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()

	client, err := kcptun.NewClient(ln.Addr().String(), kcptun.WithConns(2))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	for i := range 3 {
		stream, err := client.Dial()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Fprintf(stream, "stream %d", i)
		buf := make([]byte, 8)
		if _, err := io.ReadFull(stream, buf); err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(buf))
		stream.Close()
	}
	// Output:
	// stream 0
	// stream 1
	// stream 2
}
