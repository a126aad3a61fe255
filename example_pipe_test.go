package kcptun_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"time"

	"github.com/seed-fc8f924e/kcptun"
)

// ExamplePipe forwards every stream a Listener accepts to a TCP service, as
// the forwarding server in examples/server does.
func ExamplePipe() {
	// The TCP service: it reads a request to its end and answers it in upper
	// case.
	svc, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Close()
	go func() {
		c, err := svc.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req, _ := io.ReadAll(c)
		_, _ = c.Write(bytes.ToUpper(req))
	}()

	// The forwarder: each stream is joined to a new connection to the
	// service. With a CloseWait, the end of the request reaches the service
	// and the answer still comes back.
	ln, err := kcptun.Listen("127.0.0.1:0", kcptun.WithKey("example"))
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	forwarded := make(chan string, 1)
	go func() {
		st, err := ln.Accept()
		if err != nil {
			return
		}
		c, err := net.Dial("tcp", svc.Addr().String())
		if err != nil {
			st.Close()
			return
		}
		up, down, err := kcptun.Pipe(context.Background(), st, c,
			kcptun.PipeConfig{CloseWait: 30 * time.Second, HalfCloseStreams: true})
		forwarded <- fmt.Sprintf("forwarded %d bytes up, %d down, err %v", up, down, err)
	}()

	// A client sends a request, ends its side and reads the answer.
	conn, err := kcptun.Dial(ln.Addr().String(), kcptun.WithKey("example"))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "hello")
	if err := conn.(*kcptun.Stream).CloseWrite(); err != nil {
		log.Fatal(err)
	}
	answer, err := io.ReadAll(conn)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(answer))
	fmt.Println(<-forwarded)
	// Output:
	// HELLO
	// forwarded 5 bytes up, 5 down, err <nil>
}
