package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Paths of the programs built by TestMain.
var clientBin, serverBin string

// moduleRoot is the directory holding the module's go.mod.
var moduleRoot string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	root, err := findModuleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	moduleRoot = root
	dir, err := os.MkdirTemp("", "kcptun-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Other builds of the two programs (an older commit, the classic kcptun
	// binaries, which take the same flags) can be measured or tested instead;
	// only the programs not given are built.
	clientBin = os.Getenv("KCPTUN_E2E_CLIENT")
	serverBin = os.Getenv("KCPTUN_E2E_SERVER")
	for _, p := range []struct {
		bin  *string
		name string
	}{{&clientBin, "client"}, {&serverBin, "server"}} {
		if *p.bin != "" {
			continue
		}
		*p.bin = filepath.Join(dir, p.name)
		if err := goBuild(root, *p.bin, "./examples/"+p.name); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
	}
	return m.Run()
}

func findModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// goBuild builds pkg into out; KCPTUN_E2E_RACE=1 builds with -race.
func goBuild(root, out, pkg string) error {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		goCmd = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	args := []string{"build", "-o", out}
	if os.Getenv("KCPTUN_E2E_RACE") == "1" {
		args = append(args, "-race")
	}
	cmd := exec.Command(goCmd, append(args, pkg)...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// syncBuffer is a bytes.Buffer safe for one writer and many readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running client or server.
type proc struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	out    *syncBuffer // stdout and stderr
	exited chan struct{}
	state  *os.ProcessState
}

// start runs bin with args; the process is killed when the test ends.
func start(t testing.TB, bin string, args ...string) *proc {
	t.Helper()
	return startEnv(t, nil, bin, args...)
}

// startEnv is start with extra environment variables.
func startEnv(t testing.TB, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: filepath.Base(bin), out: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	p.cmd.Env = append(os.Environ(), env...)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if strings.Contains(p.out.String(), "WARNING: DATA RACE") || strings.Contains(p.out.String(), "panic: ") {
			t.Errorf("%s reported a data race or panicked", p.name)
		}
		if t.Failed() {
			t.Logf("%s %s output:\n%s", p.name, strings.Join(args, " "), p.out.String())
		}
	})
	return p
}

// waitLog waits until the output matches re, for at most d, and returns the
// first match's submatches.
func (p *proc) waitLog(re string, d time.Duration) []string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(d)
	poll := time.Millisecond
	for {
		if m := rx.FindStringSubmatch(p.out.String()); m != nil {
			return m
		}
		select {
		case <-p.exited:
			if m := rx.FindStringSubmatch(p.out.String()); m != nil {
				return m
			}
			p.t.Fatalf("%s exited (%v) before logging %q:\n%s", p.name, p.state, re, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s did not log %q within %v:\n%s", p.name, re, d, p.out.String())
		}
		time.Sleep(poll) // polling a log file: the only readiness signal a process gives
		poll = min(2*poll, 50*time.Millisecond)
	}
}

// wait waits for the process to exit, for at most d, and returns its status.
func (p *proc) wait(d time.Duration) *os.ProcessState {
	p.t.Helper()
	select {
	case <-p.exited:
		return p.state
	case <-time.After(d):
		p.t.Fatalf("%s did not exit within %v:\n%s", p.name, d, p.out.String())
		return nil
	}
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %s: %v", p.name, err)
	}
}

// run runs bin to completion with a bound and returns its output and exit code.
func run(t testing.TB, env []string, bin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee):
		return out.String(), ee.ExitCode()
	default:
		t.Fatalf("run %s: %v", bin, err)
		return "", -1
	}
}

// listenAddrRe matches the address in a program's "listening" line.
const (
	serverReady = `msg=listening addr=\S+ ports=\d+ first=(\S+)`
	clientReady = `msg=listening addr=(\S+)`
)

// startServer starts examples/server on a free UDP port of 127.0.0.1 and
// returns it with its address.
func startServer(t testing.TB, target string, args ...string) (*proc, string) {
	t.Helper()
	p := start(t, serverBin, append([]string{"-l", "127.0.0.1:0", "-t", target}, args...)...)
	m := p.waitLog(serverReady, 10*time.Second)
	return p, m[1]
}

// startClient starts examples/client on a free TCP port of 127.0.0.1 and
// returns it with its address.
func startClient(t testing.TB, remote string, args ...string) (*proc, string) {
	t.Helper()
	p := start(t, clientBin, append([]string{"-l", "127.0.0.1:0", "-r", remote}, args...)...)
	m := p.waitLog(clientReady, 10*time.Second)
	return p, m[1]
}

// freeUDPRange returns the first of n consecutive UDP ports of 127.0.0.1
// that were all free a moment ago.
func freeUDPRange(t testing.TB, n int) int {
	t.Helper()
	for range 100 {
		base := 20000 + rand.IntN(40000)
		var held []*net.UDPConn
		for i := range n {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: base + i})
			if err != nil {
				break
			}
			held = append(held, c)
		}
		ok := len(held) == n
		for _, c := range held {
			c.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatalf("no %d consecutive free UDP ports found", n)
	return 0
}

// echoTarget is a TCP (or unix) server that echoes every connection until
// the peer ends its side, then ends its own.
type echoTarget struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns int
}

func startEcho(t testing.TB, network, addr string) *echoTarget {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	e := &echoTarget{ln: ln}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.conns++
			e.mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
				if cw, ok := c.(interface{ CloseWrite() error }); ok {
					_ = cw.CloseWrite()
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		e.wg.Wait()
	})
	return e
}

func (e *echoTarget) addr() string { return e.ln.Addr().String() }

func (e *echoTarget) accepted() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.conns
}

// echoThrough writes size pseudo-random bytes through the client at addr and
// checks that the same bytes come back (SHA-256), within a bound.
func echoThrough(t testing.TB, network, addr string, size int) {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	data := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{byte(size), byte(size >> 8), byte(size >> 16)})
	_, _ = rng.Read(data)
	want := sha256.Sum256(data)

	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		werr <- err
	}()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(bufio.NewReaderSize(c, 64<<10), int64(size)))
	if err != nil || n != int64(size) {
		t.Fatalf("echo through %s: read %d of %d bytes: %v", addr, n, size, err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("echo through %s: write: %v", addr, err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
		t.Fatalf("echo through %s: %d bytes came back different (sha256 %x, want %x)", addr, size, got, want)
	}
}
