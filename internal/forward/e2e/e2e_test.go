//go:build unix

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/seed-fc8f924e/kcptun/internal/wire"
)

const testKey = "e2e-key"

// TestEcho sends 4 MiB through client and server to an echo target and
// back, for ciphers, compression on and off, both smux versions and the
// manual mode.
func TestEcho(t *testing.T) {
	cases := []struct {
		name string
		args []string
	}{
		{"aes", nil},
		{"aes-128-gcm", []string{"-crypt", "aes-128-gcm"}},
		{"salsa20", []string{"--crypt", "salsa20"}},
		{"null-nocomp", []string{"-crypt", "null", "-nocomp"}},
		{"aes-nocomp-smux1", []string{"--nocomp", "--smuxver", "1"}},
		{"comp-smux1", []string{"-smuxver", "1"}},
		{"nocomp-smux2-nofec", []string{"-nocomp", "-smuxver", "2", "--ds", "0", "--ps", "0"}},
		{"manual", []string{"-mode", "manual", "-nodelay", "1", "-interval", "10", "-resend", "2", "-nc", "1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			echo := startEcho(t, "tcp", "127.0.0.1:0")
			args := append([]string{"--key", testKey}, tc.args...)
			_, saddr := startServer(t, echo.addr(), args...)
			_, caddr := startClient(t, saddr, args...)
			echoThrough(t, "tcp", caddr, 4<<20)
		})
	}
}

// TestConnAutoExpire runs three sessions that expire after a second, and
// checks through SIGUSR1's counters that expired sessions were replaced.
func TestConnAutoExpire(t *testing.T) {
	t.Parallel()
	echo := startEcho(t, "tcp", "127.0.0.1:0")
	server, saddr := startServer(t, echo.addr())
	client, caddr := startClient(t, saddr, "-conn", "3", "-autoexpire", "1", "-scavengettl", "2")
	start := time.Now()
	rounds := 0
	for ; rounds < 100 && (rounds < 3 || time.Since(start) < 2500*time.Millisecond); rounds++ {
		var wg sync.WaitGroup
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				echoThrough(t, "tcp", caddr, 128<<10)
			}()
		}
		wg.Wait()
	}
	if got := echo.accepted(); got != 3*rounds {
		t.Errorf("target accepted %d connections, want %d", got, 3*rounds)
	}
	client.signal(syscall.SIGUSR1)
	m := client.waitLog(`msg=snmp .*ActiveOpens=(\d+)`, 5*time.Second)
	if n, _ := strconv.Atoi(m[1]); n <= 3 {
		t.Errorf("client opened %d sessions in %v with -conn 3 -autoexpire 1; want more than 3", n, time.Since(start))
	}
	// Each open session gets a line of its own, with the controller's state,
	// and the expired ones were summarised as they closed.
	client.waitLog(`msg=session session.remote=\S+ .*session.mode=\S+ .*session.fec=\d+\+\d+`, 5*time.Second)
	client.waitLog(`msg="kcptun: session closed" .*session.remote=\S+ .*session.bytes_in=[1-9]`, 5*time.Second)
	server.signal(syscall.SIGUSR1)
	m = server.waitLog(`msg=snmp .*PassiveOpens=(\d+)`, 5*time.Second)
	if n, _ := strconv.Atoi(m[1]); n <= 3 {
		t.Errorf("server accepted %d sessions; want more than 3", n)
	}
}

// TestPortRanges listens on three ports and dials a random one of them per
// session.
func TestPortRanges(t *testing.T) {
	t.Parallel()
	echo := startEcho(t, "tcp", "127.0.0.1:0")
	base := 0
	for range 20 {
		base = freeUDPRange(t, 3)
		p := start(t, serverBin, "-l", fmt.Sprintf("127.0.0.1:%d-%d", base, base+2), "-t", echo.addr())
		p.waitLog(`msg=listening|exited`, 10*time.Second)
		if strings.Contains(p.out.String(), "ports=3") {
			break
		}
		base = 0 // a port was taken meanwhile: try another range
	}
	if base == 0 {
		t.Fatal("could not listen on a free port range")
	}
	remote := fmt.Sprintf("127.0.0.1:%d-%d", base, base+2)
	_, caddr := startClient(t, remote, "-conn", "3")
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			echoThrough(t, "tcp", caddr, 256<<10)
		}()
	}
	wg.Wait()
}

// TestUnixSockets listens on a unix socket at the client and dials one at
// the server.
func TestUnixSockets(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("", "kcptun-unix-") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	target := filepath.Join(dir, "target.sock")
	local := filepath.Join(dir, "client.sock")
	startEcho(t, "unix", target)
	_, saddr := startServer(t, target)
	// A stale socket file from an earlier run must not stop the client.
	stale, err := net.Listen("unix", local)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	p := start(t, clientBin, "-l", local, "-r", saddr)
	p.waitLog(`msg=listening addr=`+regexp.QuoteMeta(local), 10*time.Second)
	echoThrough(t, "unix", local, 1<<20)
}

// TestJSONConfig runs both programs from JSON files whose keys override the
// command line.
func TestJSONConfig(t *testing.T) {
	t.Parallel()
	echo := startEcho(t, "tcp", "127.0.0.1:0")
	dir := t.TempDir()
	common := map[string]any{"key": "json-key", "crypt": "salsa20", "nocomp": true, "smuxver": 1,
		"datashard": 4, "parityshard": 2, "mode": "fast3", "quiet": true}
	serverCfg := map[string]any{"listen": "127.0.0.1:0", "target": echo.addr(), "closewait": 5}
	for k, v := range common {
		serverCfg[k] = v
	}
	sp := start(t, serverBin, "-c", writeJSON(t, dir, "server.json", serverCfg), "-crypt", "aes", "-key", "flag-key", "-l", "127.0.0.1:1")
	saddr := sp.waitLog(serverReady, 10*time.Second)[1]
	clientCfg := map[string]any{"localaddr": "127.0.0.1:0", "remoteaddr": saddr, "conn": 2}
	for k, v := range common {
		clientCfg[k] = v
	}
	cp := start(t, clientBin, "-c", writeJSON(t, dir, "client.json", clientCfg), "--crypt", "xor", "--smuxver", "2")
	caddr := cp.waitLog(clientReady, 10*time.Second)[1]
	echoThrough(t, "tcp", caddr, 1<<20)
	for _, p := range []*proc{sp, cp} {
		if out := p.out.String(); !strings.Contains(out, "crypt=salsa20") || !strings.Contains(out, `key="(from config)"`) {
			t.Errorf("%s did not take the file's settings:\n%s", p.name, out)
		}
	}
	if strings.Contains(cp.out.String(), "stream opened") {
		t.Errorf("quiet client logged a connection:\n%s", cp.out.String())
	}
}

// TestKeyFromEnvironment gives the client its key through KCPTUN_KEY.
func TestKeyFromEnvironment(t *testing.T) {
	t.Parallel()
	echo := startEcho(t, "tcp", "127.0.0.1:0")
	_, saddr := startServer(t, echo.addr(), "--key", "env-key")
	p := startEnv(t, []string{"KCPTUN_KEY=env-key"}, clientBin, "-l", "127.0.0.1:0", "-r", saddr)
	caddr := p.waitLog(clientReady, 10*time.Second)[1]
	echoThrough(t, "tcp", caddr, 256<<10)
	if out := p.out.String(); !strings.Contains(out, `key="(from env)"`) || strings.Contains(out, "env-key") {
		t.Errorf("client log should say the key came from the environment and never show it:\n%s", out)
	}
}

// TestBadFlags checks that bad values print one line and exit with 2, and
// that -h and -v exit with 0.
func TestBadFlags(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "missing.json")
	unknown := writeJSON(t, t.TempDir(), "bad.json", map[string]any{"mtu": 1350, "colour": "blue"})
	cases := []struct {
		bin  string
		args []string
		want string
	}{
		{clientBin, []string{"-mtu", "abc"}, `client: invalid value "abc" for flag -mtu`},
		{serverBin, []string{"--mtu", "20", "-l", "127.0.0.1:0"}, "server: invalid --mtu 20: want"},
		{clientBin, []string{"--crypt", "rot13", "-r", "127.0.0.1:9"}, `client: invalid --crypt "rot13": want one of`},
		{clientBin, []string{"--smuxver", "3", "-r", "127.0.0.1:9"}, "client: invalid --smuxver 3: want 1 or 2"},
		{serverBin, []string{"--sndwnd", "-1", "-l", "127.0.0.1:0"}, "server: invalid --sndwnd -1, --rcvwnd 1024"},
		{serverBin, []string{"-t", "nowhere"}, `server: invalid --target "nowhere"`},
		{clientBin, []string{"-c", missing}, "client: config file: open " + missing},
		{serverBin, []string{"-c", unknown}, `server: config file ` + unknown + `: unknown key "colour"`},
		{serverBin, []string{"--conn", "2"}, "server: flag provided but not defined: -conn"},
	}
	for _, tc := range cases {
		out, code := run(t, nil, tc.bin, tc.args...)
		if code != 2 || !strings.HasPrefix(out, tc.want) || strings.Count(out, "\n") != 1 {
			t.Errorf("%s %v: exit %d, output %q; want exit 2 and one line starting %q",
				filepath.Base(tc.bin), tc.args, code, out, tc.want)
		}
	}
	for _, bin := range []string{clientBin, serverBin} {
		out, code := run(t, nil, bin, "-v")
		if code != 0 || !strings.HasPrefix(out, "kcptun "+filepath.Base(bin)+" ") {
			t.Errorf("%s -v: exit %d, %q", bin, code, out)
		}
		out, code = run(t, nil, bin, "--help")
		if code != 0 || !strings.Contains(out, "--datashard") || !strings.Contains(out, "-ds") {
			t.Errorf("%s --help: exit %d, %q", bin, code, out)
		}
	}
}

// TestMismatchIsLogged checks that settings that differ between the ends
// are not silent: the server names smux and compression mismatches, the
// client names an unanswered session (wrong key).
func TestMismatchIsLogged(t *testing.T) {
	cases := []struct {
		name                   string
		serverArgs, clientArgs []string
		serverWant, clientWant string
	}{
		{"pinned smux version", []string{"-smuxver", "2"}, []string{"-smuxver", "1"},
			"refusing client: it speaks smux v1 with compression, this listener is pinned to smux v2 with compression: run the client with -smuxver 2",
			"the server speaks smux v2 with compression, this client smux v1 with compression and the setting is pinned"},
		{"pinned compression", []string{"-nocomp"}, []string{"--nocomp=false"},
			"refusing client: it speaks smux v2 with compression, this listener is pinned to smux v2 without compression: run the client with -nocomp",
			"the server speaks smux v2 without compression, this client smux v2 with compression and the setting is pinned"},
		{"key", []string{"--key", "one"}, []string{"--key", "two"},
			"", `cannot open a stream to the server.*no response from server.*same key and cipher`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			echo := startEcho(t, "tcp", "127.0.0.1:0")
			server, saddr := startServer(t, echo.addr(), tc.serverArgs...)
			client, caddr := startClient(t, saddr, tc.clientArgs...)
			c, err := net.DialTimeout("tcp", caddr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, _ = c.Write([]byte("hello"))
			if tc.serverWant != "" {
				server.waitLog(regexp.QuoteMeta(tc.serverWant), 10*time.Second)
			}
			switch {
			case strings.HasPrefix(tc.clientWant, "the server speaks"):
				client.waitLog(regexp.QuoteMeta(tc.clientWant), 10*time.Second)
			case tc.clientWant != "":
				// The SDK gives up on an unanswered session after 10 s.
				client.waitLog(`level=WARN msg="kcptun: session dial failed".*no response from server`, 20*time.Second)
				client.waitLog(tc.clientWant, 5*time.Second)
			}
			if echo.accepted() != 0 {
				t.Errorf("the target was reached despite the mismatch")
			}
		})
	}
}

// TestGracefulShutdown sends SIGTERM while a connection is open: the
// programs stop accepting, let it finish, and exit with status 0.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	echo := startEcho(t, "tcp", "127.0.0.1:0")
	server, saddr := startServer(t, echo.addr())
	client, caddr := startClient(t, saddr)
	c, err := net.DialTimeout("tcp", caddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	roundTrip(t, c, "before")

	client.signal(syscall.SIGTERM)
	client.waitLog(`msg="shutting down" signal=terminated open=1`, 5*time.Second)
	if c2, err := net.DialTimeout("tcp", caddr, time.Second); err == nil {
		c2.Close()
		t.Errorf("the client still accepts connections after SIGTERM")
	}
	roundTrip(t, c, "during") // the open connection goes on
	server.signal(syscall.SIGTERM)
	server.waitLog(`msg="shutting down" signal=terminated open=1`, 5*time.Second)
	roundTrip(t, c, "still")
	start := time.Now()
	c.Close()
	for _, p := range []*proc{client, server} {
		st := p.wait(10 * time.Second)
		if !st.Success() {
			t.Errorf("%s exited with %v", p.name, st)
		}
	}
	if el := time.Since(start); el > 4*time.Second {
		t.Errorf("the programs took %v to exit after the last connection ended", el)
	}
}

// TestShutdownCutsStuckConnections checks that a connection that never ends
// cannot hold the server past the grace period.
func TestShutdownCutsStuckConnections(t *testing.T) {
	t.Parallel()
	echo := startEcho(t, "tcp", "127.0.0.1:0")
	server, saddr := startServer(t, echo.addr())
	_, caddr := startClient(t, saddr)
	c, err := net.DialTimeout("tcp", caddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	roundTrip(t, c, "x")
	start := time.Now()
	server.signal(syscall.SIGINT)
	st := server.wait(15 * time.Second)
	if !st.Success() {
		t.Errorf("server exited with %v", st)
	}
	if el := time.Since(start); el < 4*time.Second || el > 10*time.Second {
		t.Errorf("server exited %v after SIGINT; want about the 5 s grace period", el)
	}
	server.waitLog(`msg="closing open streams"`, time.Second)
}

// TestHalfClose checks the end of a connection at each side: when the target
// ends its side, the client's user learns at once (not after the server's
// 30 s close-wait); when the user half-closes, the whole reply still comes.
func TestHalfClose(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, saddr := startServer(t, ln.Addr().String())
	_, caddr := startClient(t, saddr, "-closewait", "10")

	t.Run("target ends first", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", caddr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(8 * time.Second))
		tc := accept(t, ln)
		defer tc.Close()
		if _, err := tc.Write([]byte("banner")); err != nil {
			t.Fatal(err)
		}
		if err := tc.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c) // ends well before the 30 s close-wait
		if err != nil || string(got) != "banner" {
			t.Fatalf("got %q, %v; want the banner and the end", got, err)
		}
		if _, err := c.Write([]byte("ack")); err != nil {
			t.Fatal(err)
		}
		_ = tc.SetDeadline(time.Now().Add(8 * time.Second))
		buf := make([]byte, 3)
		if _, err := io.ReadFull(tc, buf); err != nil || string(buf) != "ack" {
			t.Fatalf("target got %q, %v; want ack", buf, err)
		}
	})
	t.Run("user ends first", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", caddr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		tc := accept(t, ln)
		defer tc.Close()
		if _, err := c.Write([]byte("request")); err != nil {
			t.Fatal(err)
		}
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 7)
		_ = tc.SetDeadline(time.Now().Add(15 * time.Second))
		if _, err := io.ReadFull(tc, buf); err != nil {
			t.Fatal(err)
		}
		reply := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
		go func() {
			_, _ = tc.Write([]byte(reply))
			tc.Close()
		}()
		got, err := io.ReadAll(c)
		if err != nil || string(got) != reply {
			t.Fatalf("reply: got %d of %d bytes, %v", len(got), len(reply), err)
		}
	})
}

// TestLogFileSNMPAndPprof checks --log, --snmplog and --pprof.
func TestLogFileSNMPAndPprof(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	logFile := filepath.Join(dir, "server.log")
	snmpPattern := filepath.Join(dir, "snmp-20060102.log")
	echo := startEcho(t, "tcp", "127.0.0.1:0")
	p := start(t, serverBin, "-l", "127.0.0.1:0", "-t", echo.addr(), "--log", logFile,
		"--snmplog", snmpPattern, "--snmpperiod", "1", "--pprof")
	m := waitFile(t, logFile, serverReady, 10*time.Second)
	_, caddr := startClient(t, m[1])
	echoThrough(t, "tcp", caddr, 64<<10)
	waitFile(t, logFile, `msg="stream closed" .*up_bytes=65536 down_bytes=65536`, 10*time.Second)
	if out := p.out.String(); out != "" {
		t.Errorf("with --log, the server wrote to stderr: %q", out)
	}

	snmpFile := filepath.Join(dir, "snmp-"+time.Now().Format("20060102")+".log")
	m = waitFile(t, snmpFile, `(?m)^Unix,BytesSent,BytesReceived,.*\n(\d+),`, 10*time.Second)
	if n, _ := strconv.ParseInt(m[1], 10, 64); n < time.Now().Add(-time.Minute).Unix() {
		t.Errorf("snmp row time %s is not now", m[1])
	}

	pm := waitFile(t, logFile, `msg="pprof serving" url=(\S+)|msg="pprof not started"`, 10*time.Second)
	if pm[1] == "" {
		t.Skipf("pprof port taken on this host: %s", pm[0])
	}
	if !strings.HasPrefix(pm[1], "http://127.0.0.1:") {
		t.Errorf("pprof listens on %s, want loopback only", pm[1])
	}
	resp, err := http.Get(pm[1])
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s: %s", pm[1], resp.Status)
	}
}

// TestGoldenCaptures replays the client side of each golden capture of the
// classic binaries (docs/wire.md) against examples/server started with the
// capture's settings: the server must open the stream, dial the target and
// deliver the payload the binary client sent.
func TestGoldenCaptures(t *testing.T) {
	caps, err := wire.LoadCaptures(filepath.Join(moduleRoot, "testdata", "wire"))
	if err != nil {
		t.Fatalf("golden captures: %v", err)
	}
	names := map[string]bool{}
	for _, cp := range caps {
		names[cp.File] = true
	}
	for _, must := range []string{"aes_comp_smux2_fec10-3.json", "aes_nocomp_smux2_fec10-3.json"} {
		if !names[must] {
			t.Errorf("required capture missing: %s", must)
		}
	}
	for _, cp := range caps {
		t.Run(strings.TrimSuffix(cp.File, ".json"), func(t *testing.T) {
			t.Parallel()
			replayCapture(t, cp)
		})
	}
}

func replayCapture(t *testing.T, cp *wire.Capture) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	args := []string{"--key", cp.Key, "--crypt", cp.Crypt, "--smuxver", strconv.Itoa(cp.SmuxVer),
		"--datashard", strconv.Itoa(cp.DataShard), "--parityshard", strconv.Itoa(cp.ParityShard),
		"--mtu", strconv.Itoa(cp.MTU), "--mode", cp.Mode}
	if cp.NoComp {
		args = append(args, "--nocomp")
	}
	server, saddr := startServer(t, ln.Addr().String(), args...)

	udp, err := net.Dial("udp", saddr)
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	sent := 0
	for _, b := range cp.ClientDatagrams() {
		if _, err := udp.Write(b); err != nil {
			t.Fatal(err)
		}
		sent++
	}

	tc := accept(t, ln)
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(tc) // the capture ends the stream after its payload
	if err != nil || string(got) != string(cp.Payload) {
		t.Fatalf("after %d datagrams the target got %q, %v; want %q", sent, got, err, cp.Payload)
	}
	server.waitLog(`msg="stream opened" in=`+regexp.QuoteMeta(udp.LocalAddr().String())+` stream=3 `, 5*time.Second)
}

// accept waits for one connection on ln, for at most 10 s.
func accept(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	if tl, ok := ln.(*net.TCPListener); ok {
		_ = tl.SetDeadline(time.Now().Add(10 * time.Second))
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("the target was not dialed: %v", err)
	}
	return c
}

// roundTrip writes msg on c and reads it back from the echo target.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo of %q: got %q, %v", msg, buf, err)
	}
}

func writeJSON(t *testing.T, dir, name string, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitFile waits until the file's content matches re, for at most d.
func waitFile(t *testing.T, path, re string, d time.Duration) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(d)
	poll := time.Millisecond
	for {
		b, _ := os.ReadFile(path)
		if m := rx.FindStringSubmatch(string(b)); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not match %q within %v:\n%s", path, re, d, b)
		}
		time.Sleep(poll) // polling a file another process writes
		poll = min(2*poll, 50*time.Millisecond)
	}
}

// TestClientFollowsServer runs a client with no smux flags against a server
// pinned to what old releases speak: the client warns once, naming the fix,
// and its next connections get through.
func TestClientFollowsServer(t *testing.T) {
	t.Parallel()
	echo := startEcho(t, "tcp", "127.0.0.1:0")
	_, saddr := startServer(t, echo.addr(), "-smuxver", "1", "-nocomp")
	client, caddr := startClient(t, saddr)
	deadline := time.Now().Add(20 * time.Second)
	for ok := false; !ok; {
		if time.Now().After(deadline) {
			t.Fatal("no connection got through within 20 s")
		}
		c, err := net.DialTimeout("tcp", caddr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 5)
		if _, err := c.Write([]byte("hello")); err == nil {
			_, err = io.ReadFull(c, buf)
			ok = err == nil && string(buf) == "hello"
		}
		c.Close()
	}
	client.waitLog(regexp.QuoteMeta("the server speaks smux v1 without compression")+".*-smuxver 1.*-nocomp", 5*time.Second)
	if n := strings.Count(client.out.String(), "the server speaks"); n != 1 {
		t.Errorf("%d warnings about the server's format, want 1", n)
	}
}

// TestServerAnswersEveryClient runs one server with no smux flags against
// clients pinned to each smux version and compression setting at once, as
// a fleet of old releases would be.
func TestServerAnswersEveryClient(t *testing.T) {
	t.Parallel()
	echo := startEcho(t, "tcp", "127.0.0.1:0")
	_, saddr := startServer(t, echo.addr(), "--key", testKey)
	for _, args := range [][]string{{"-smuxver", "1"}, {"-smuxver", "1", "-nocomp"}, {"-nocomp"}, nil} {
		t.Run(strings.Join(append([]string{"client"}, args...), " "), func(t *testing.T) {
			t.Parallel()
			_, caddr := startClient(t, saddr, append([]string{"--key", testKey}, args...)...)
			echoThrough(t, "tcp", caddr, 1<<20)
		})
	}
}
