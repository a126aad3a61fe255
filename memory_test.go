package kcptun

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The idle-memory benchmarks measure one end of kcptun alone: the other end
// runs in a child process (this test binary, re-executed with memChildEnv
// set), so that the heap and the goroutines counted in the parent are those
// of the measured end only, kcp-go's and smux's included.
//
//	go test -run '^$' -bench 'IdleClient|IdleListener' -benchtime 1x .
//
// -idle.sessions sets how many sessions the listener benchmark holds
// (10,000 by default); -idle.clients how many the client benchmark holds.

var (
	idleListenerSessions = flag.Int("idle.sessions", 10000, "idle sessions BenchmarkIdleListener holds on one listener")
	idleClientSessions   = flag.Int("idle.clients", 200, "idle client sessions BenchmarkIdleClient holds")
	idleHeapProfile      = flag.String("idle.heapprofile", "", "write the heap profile of the idle sessions' end to this file")
)

const (
	memChildEnv  = "KCPTUN_MEMTEST_CHILD" // "listen" or "dial"
	memAddrEnv   = "KCPTUN_MEMTEST_ADDR"  // the listener a "dial" child dials
	memCountEnv  = "KCPTUN_MEMTEST_COUNT" // how many sessions a "dial" child opens
	memReadyLine = "READY"
)

// idleMessage is what every idle session's stream echoes once before it
// goes quiet.
var idleMessage = []byte("ping")

// runMemChild is the other end of the idle-memory benchmarks: TestMain runs
// it instead of the tests when this binary is their child process (role is
// memChildEnv's value). It serves until its standard input closes, then
// exits the process.
func runMemChild(role string) {
	var err error
	switch role {
	case "listen":
		err = memChildListen()
	case "dial":
		err = memChildDial()
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	_, _ = io.Copy(io.Discard, os.Stdin) // the parent closes stdin when done
	os.Exit(0)                           // no clean-up: the process ends
}

// memChildListen runs an echo listener and prints its address.
func memChildListen() error {
	ln, err := Listen("127.0.0.1:0", WithMaxSessions(1<<20))
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c) }()
		}
	}()
	fmt.Println(memReadyLine, ln.Addr())
	return nil
}

// memChildDial opens the sessions the listener benchmark measures: each a
// Dial stream of its own (one UDP socket each) that echoes one message and
// stays open.
func memChildDial() error {
	n, err := strconv.Atoi(os.Getenv(memCountEnv))
	if err != nil {
		return err
	}
	// Thousands of sessions on a busy 2-core machine: a dial that is slow to
	// be answered is given time and tried again, and one that still fails is
	// counted rather than failing the run. The clients flush every 500 ms
	// instead of every 30 ms, so that their KCP timers do not starve the
	// measured listener of CPU; what the listener holds does not depend on
	// its clients' interval.
	conns, failed := dialIdle(os.Getenv(memAddrEnv), n, 8, WithDialTimeout(time.Minute), WithNoDelay(0, 500, 2, 1))
	fmt.Println(memReadyLine, len(conns), len(failed))
	for _, err := range failed[:min(len(failed), 3)] {
		fmt.Fprintln(os.Stderr, "dial:", err)
	}
	return nil
}

// dialIdle opens n Dial streams to addr, par at a time, each echoing
// idleMessage once, and returns those that did, open, and the errors of
// those that did not. A dial the server does not answer is tried up to
// three times.
func dialIdle(addr string, n, par int, opts ...Option) ([]net.Conn, []error) {
	conns := make([]net.Conn, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := Dial(addr, opts...)
			for try := 1; try < 3 && errors.Is(err, ErrNoResponse); try++ {
				c, err = Dial(addr, opts...)
			}
			if err != nil {
				errs <- err
				return
			}
			if err := echoOnce(c); err != nil {
				_ = c.Close()
				errs <- err
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	close(errs)
	var failed []error
	for err := range errs {
		failed = append(failed, err)
	}
	ok := conns[:0]
	for _, c := range conns {
		if c != nil {
			ok = append(ok, c)
		}
	}
	return ok, failed
}

// echoOnce writes idleMessage and reads its echo.
func echoOnce(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(idleMessage); err != nil {
		return err
	}
	got := make([]byte, len(idleMessage))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != string(idleMessage) {
		return fmt.Errorf("echo %q, want %q", got, idleMessage)
	}
	return nil
}

// memChild is a running child process.
type memChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	ready string // what followed READY on its first line
}

// startMemChild starts this test binary as a child in role and waits (at
// most wait) for its READY line.
func startMemChild(b *testing.B, role string, env []string, wait time.Duration) *memChild {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), memChildEnv+"="+role), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	ch := &memChild{cmd: cmd, stdin: stdin}
	b.Cleanup(ch.stop)
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, memReadyLine+" ") || strings.HasPrefix(l, "ERROR") {
				lines <- l
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l := <-lines:
		if strings.HasPrefix(l, "ERROR") {
			b.Fatalf("child %s: %s", role, l)
		}
		ch.ready = strings.TrimPrefix(l, memReadyLine+" ")
	case <-time.After(wait):
		b.Fatalf("child %s not ready within %v", role, wait)
	}
	return ch
}

// stop ends the child: closing its standard input makes it exit.
func (c *memChild) stop() {
	_ = c.stdin.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

// memSnapshot is the measured end's memory at one moment.
type memSnapshot struct {
	heap  uint64 // live heap after full collections (HeapAlloc)
	stack uint64 // goroutine stacks (StackInuse)
	rss   uint64 // resident set of the process, from /proc (0 elsewhere)
	gs    map[string]int
}

// snapshot measures the process after full collections.
func snapshot() memSnapshot {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC() // the second collection frees what the first one's finalizers released
	runtime.ReadMemStats(&ms)
	return memSnapshot{heap: ms.HeapAlloc, stack: ms.StackInuse, rss: residentBytes(), gs: goroutineOwners()}
}

// residentBytes returns the process's resident set size, or 0 where /proc
// does not tell.
func residentBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}

// goroutineOwners counts the goroutines by whose code started them: kcp-go,
// smux, the SDK (this module's non-test code), or other (the runtime, the
// testing package, the benchmark itself).
func goroutineOwners() map[string]int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	owners := map[string]int{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		owners[goroutineOwner(g)]++
	}
	return owners
}

// goroutineOwner classifies one goroutine of a runtime.Stack dump by the
// function it was started with: the last frame above its "created by" line.
func goroutineOwner(g string) string {
	lines := strings.Split(strings.TrimSpace(g), "\n")
	entry := ""
	for i := 1; i < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(l, "created by ") {
			break
		}
		if !strings.HasPrefix(l, "\t") {
			entry = l
		}
	}
	switch {
	case strings.HasPrefix(entry, "github.com/xtaci/kcp-go/"):
		return "kcp-go"
	case strings.HasPrefix(entry, "github.com/xtaci/smux."):
		return "smux"
	case strings.HasPrefix(entry, "github.com/seed-fc8f924e/kcptun") &&
		!strings.Contains(entry, "Benchmark") && !strings.Contains(entry, "dialIdle") && !strings.Contains(entry, "Test"):
		return "sdk"
	}
	return "other"
}

// reportIdle reports memory and goroutines per session between two
// snapshots. heap-B/session is what the targets are about; stack and
// RSS are reported too because goroutine stacks are not heap, and because a
// large allocation that is never written (kcp-go's 2048-entry queues) counts
// in full in the heap but hardly in the resident set.
func reportIdle(b *testing.B, n int, s0, s1 memSnapshot) {
	delta := func(a, b uint64) float64 { return (float64(b) - float64(a)) / float64(n) }
	per := func(k string) float64 { return float64(s1.gs[k]-s0.gs[k]) / float64(n) }
	b.ReportMetric(delta(s0.heap, s1.heap), "heap-B/session")
	b.ReportMetric(delta(s0.stack, s1.stack), "stack-B/session")
	if s0.rss != 0 {
		b.ReportMetric(delta(s0.rss, s1.rss), "rss-B/session")
	}
	total := 0.0
	for _, k := range []string{"kcp-go", "smux", "sdk"} {
		total += per(k)
	}
	b.ReportMetric(total, "goroutines/session")
	b.ReportMetric(per("kcp-go"), "kcp-go-goroutines/session")
	b.ReportMetric(per("smux"), "smux-goroutines/session")
	b.ReportMetric(per("sdk"), "sdk-goroutines/session")
	b.ReportMetric(per("other"), "other-goroutines/session")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkIdleClient measures the client end of idle sessions alone (the
// listener runs in a child process): each session is a Dial stream that
// echoed one small message and stays open, everything included (kcp-go's,
// smux's and the SDK's heap and goroutines).
func BenchmarkIdleClient(b *testing.B) {
	n := *idleClientSessions
	child := startMemChild(b, "listen", nil, testTimeout)
	addr := child.ready
	for range b.N {
		s0 := snapshot()
		conns, failed := dialIdle(addr, n, 16)
		if len(failed) > 0 {
			for _, c := range conns {
				_ = c.Close()
			}
			b.Fatalf("%d of %d dials failed: %v", len(failed), n, failed[0])
		}
		s1 := snapshot()
		writeIdleHeapProfile(b)
		reportIdle(b, n, s0, s1)
		for _, c := range conns {
			_ = c.Close()
		}
		waitGoroutines(b, s0.gs)
	}
}

// writeIdleHeapProfile writes the heap profile -idle.heapprofile asks for.
func writeIdleHeapProfile(b *testing.B) {
	if *idleHeapProfile == "" {
		return
	}
	// The heap profile shows the heap as of the last complete collection
	// cycle but one: one more makes it match what was measured.
	runtime.GC()
	f, err := os.Create(*idleHeapProfile)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

// waitGoroutines waits until the goroutines of the sessions just closed
// have ended, so that the next measurement starts from the same state; a
// closed Dial stream keeps its session for up to lingerTimeout.
func waitGoroutines(b *testing.B, before map[string]int) {
	want := 0
	for _, v := range before {
		want += v
	}
	deadline := time.Now().Add(lingerTimeout + 10*time.Second)
	for runtime.NumGoroutine() > want+2 {
		if time.Now().After(deadline) {
			b.Fatalf("%d goroutines still running after closing the sessions, %d before", runtime.NumGoroutine(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkIdleListener measures the listener end of -idle.sessions idle
// sessions alone (the clients run in child processes, each session with a
// UDP socket of its own): every session carries one stream that echoed one
// small message and stays open. The listener's handler keeps the accepted
// streams without a goroutine of its own, so every goroutine counted is the
// SDK's, kcp-go's or smux's.
func BenchmarkIdleListener(b *testing.B) {
	n := *idleListenerSessions
	const perChild = 2500
	for range b.N {
		s0 := snapshot()
		ln, err := Listen("127.0.0.1:0", WithMaxSessions(n+16))
		if err != nil {
			b.Fatal(err)
		}
		var (
			mu   sync.Mutex
			kept []net.Conn
			wg   sync.WaitGroup
		)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]byte, len(idleMessage))
					_ = c.SetDeadline(time.Now().Add(testTimeout))
					if _, err := io.ReadFull(c, buf); err == nil {
						_, _ = c.Write(buf)
					}
					_ = c.SetDeadline(time.Time{})
					mu.Lock()
					kept = append(kept, c)
					mu.Unlock()
				}()
			}
		}()
		start := time.Now()
		var children []*memChild
		established := 0
		for left := n; left > 0; left -= perChild {
			k := min(left, perChild)
			ch := startMemChild(b, "dial", []string{
				memAddrEnv + "=" + ln.Addr().String(), memCountEnv + "=" + strconv.Itoa(k)}, 15*time.Minute)
			children = append(children, ch)
			var ok, failed int
			if _, err := fmt.Sscan(ch.ready, &ok, &failed); err != nil {
				b.Fatalf("child said %q: %v", ch.ready, err)
			}
			established += ok
		}
		setup := time.Since(start)
		// A few dials may fail on a machine this busy; many may not.
		if established < n-n/50 {
			b.Fatalf("only %d of %d sessions established", established, n)
		}
		// Every established session's handler has echoed and returned.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		for {
			mu.Lock()
			k := len(kept)
			mu.Unlock()
			if k >= established || ctx.Err() != nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		s1 := snapshot()
		// Per session of the listener's, whether its dial was completed
		// (a failed dial leaves a session until the idle timeout).
		live := ln.Stats().Sessions
		if live < established {
			b.Fatalf("listener holds %d sessions, %d were established", live, established)
		}
		writeIdleHeapProfile(b)
		reportIdle(b, live, s0, s1)
		b.ReportMetric(float64(live), "sessions")
		b.ReportMetric(setup.Seconds(), "setup-s")
		for _, c := range children {
			c.stop()
		}
		_ = ln.Close()
		wg.Wait()
	}
}
