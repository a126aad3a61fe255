package forward

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seed-fc8f924e/kcptun"
)

// TestModeDefault checks that --mode default, which old configurations use,
// runs as the binaries run it: manual mode with the manual values.
func TestModeDefault(t *testing.T) {
	for _, args := range [][]string{{"--mode", "default"}, {"-mode", "DEFAULT", "--interval", "20"}} {
		c, err := parse(Server, args, noEnv)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if m, err := c.sdkMode(); err != nil || m != kcptun.ModeManual {
			t.Errorf("%v: mode %v, %v; want manual", args, m, err)
		}
		ln, err := kcptun.Listen("127.0.0.1:0", c.Options(nil)...)
		if err != nil {
			t.Fatalf("%v: the SDK refused it: %v", args, err)
		}
		_ = ln.Close()
		found := false
		for _, a := range c.logAttrs() {
			if a, ok := a.(interface{ String() string }); ok && strings.HasPrefix(a.String(), "interval=") {
				found = true
			}
		}
		if !found {
			t.Errorf("%v: the manual values are not among the logged settings", args)
		}
	}
	if _, err := parse(Server, []string{"--mode", "turbo"}, noEnv); err == nil {
		t.Error("--mode turbo accepted")
	}
}

// TestTuncryptNamesCrypt checks that --tuncrypt, as a flag or a JSON key,
// is refused with its replacement named.
func TestTuncryptNamesCrypt(t *testing.T) {
	for _, args := range [][]string{{"--tuncrypt", "aes"}, {"-tuncrypt=aes"}} {
		_, err := parse(Client, args, noEnv)
		if !errors.Is(err, errTuncrypt) || !strings.Contains(err.Error(), "--crypt") {
			t.Errorf("%v: %v, want it to name --crypt", args, err)
		}
	}
	path := filepath.Join(t.TempDir(), "c.json")
	if err := os.WriteFile(path, []byte(`{"tuncrypt": "aes"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := parse(Server, []string{"-c", path}, noEnv); !errors.Is(err, errTuncrypt) {
		t.Errorf("JSON key tuncrypt: %v, want the --crypt hint", err)
	}
}

// TestSmuxSettingsPinOnlyWhenGiven checks that --smuxver and --nocomp pin
// the setting only when given, by flag or JSON key.
func TestSmuxSettingsPinOnlyWhenGiven(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	if err := os.WriteFile(path, []byte(`{"smuxver": 1, "nocomp": false}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args              []string
		wantVer, wantComp bool
	}{
		{nil, false, false},
		{[]string{"--smuxver", "2"}, true, false},
		{[]string{"--nocomp"}, false, true},
		{[]string{"-c", path}, true, true},
	}
	for _, tc := range cases {
		c, err := parse(Client, tc.args, noEnv)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if c.SmuxVerSet != tc.wantVer || c.NoCompSet != tc.wantComp {
			t.Errorf("%v: pinned smuxver=%v nocomp=%v, want %v %v", tc.args, c.SmuxVerSet, c.NoCompSet, tc.wantVer, tc.wantComp)
		}
		if n := len(c.Options(nil)); n != len(defaults(Client).Options(nil))+btoi(tc.wantVer)+btoi(tc.wantComp) {
			t.Errorf("%v: %d options", tc.args, n)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestAdaptivePartsPinOnlyWhenGiven checks that windows, FEC, smux's
// buffers and the client's pool size are pinned only by the flags or JSON
// keys that set them, so that a
// forwarding program run without them adapts as the SDK does.
func TestAdaptivePartsPinOnlyWhenGiven(t *testing.T) {
	base := len(defaults(Client).Options(nil))
	path := filepath.Join(t.TempDir(), "c.json")
	if err := os.WriteFile(path, []byte(`{"parityshard": 2}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args                     []string
		snd, rcv, fec, buf, conn bool
	}{
		{nil, false, false, false, false, false},
		{[]string{"--sndwnd", "256"}, true, false, false, false, false},
		{[]string{"-rcvwnd=2048", "-ds", "4"}, false, true, true, false, false},
		{[]string{"-c", path}, false, false, true, false, false},
		{[]string{"-streambuf", "1048576"}, false, false, false, true, false},
		{[]string{"--smuxbuf=8388608"}, false, false, false, true, false},
		{[]string{"--conn", "1"}, false, false, false, false, true},
	}
	for _, tc := range cases {
		c, err := parse(Client, tc.args, noEnv)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if c.SndWndSet != tc.snd || c.RcvWndSet != tc.rcv || c.FECSet != tc.fec || c.SmuxBufSet != tc.buf || c.ConnSet != tc.conn {
			t.Errorf("%v: pinned snd %v rcv %v fec %v buffers %v conn %v, want %v %v %v %v %v", tc.args,
				c.SndWndSet, c.RcvWndSet, c.FECSet, c.SmuxBufSet, c.ConnSet, tc.snd, tc.rcv, tc.fec, tc.buf, tc.conn)
		}
		if n, want := len(c.Options(nil)), base+btoi(tc.snd || tc.rcv)+btoi(tc.fec)+btoi(tc.buf)+btoi(tc.conn); n != want {
			t.Errorf("%v: %d options, want %d", tc.args, n, want)
		}
	}
}
