package forward

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/seed-fc8f924e/kcptun"
)

// field reads one Config field directly, independently of the flag table.
type fieldCase struct {
	value string            // a valid, non-default value on the command line
	get   func(*Config) any // reads the field the flag must set
	want  any
}

// flagCases lists every long flag name with the field it must set.
var flagCases = map[string]fieldCase{
	"localaddr":   {"127.0.0.1:1000", func(c *Config) any { return c.Listen }, "127.0.0.1:1000"},
	"listen":      {"127.0.0.1:2000-2005", func(c *Config) any { return c.Listen }, "127.0.0.1:2000-2005"},
	"remoteaddr":  {"example.org:3000-3002", func(c *Config) any { return c.Remote }, "example.org:3000-3002"},
	"target":      {"/run/target.sock", func(c *Config) any { return c.Target }, "/run/target.sock"},
	"key":         {"s3cret", func(c *Config) any { return c.Key }, "s3cret"},
	"crypt":       {"salsa20", func(c *Config) any { return c.Crypt }, "salsa20"},
	"mode":        {"fast3", func(c *Config) any { return c.Mode }, "fast3"},
	"conn":        {"4", func(c *Config) any { return c.Conn }, 4},
	"autoexpire":  {"60", func(c *Config) any { return c.AutoExpire }, 60},
	"scavengettl": {"30", func(c *Config) any { return c.ScavengeTTL }, 30},
	"mtu":         {"1400", func(c *Config) any { return c.MTU }, 1400},
	"ratelimit":   {"1000000", func(c *Config) any { return c.RateLimit }, 1000000},
	"sndwnd":      {"256", func(c *Config) any { return c.SndWnd }, 256},
	"rcvwnd":      {"2048", func(c *Config) any { return c.RcvWnd }, 2048},
	"datashard":   {"5", func(c *Config) any { return c.DataShard }, 5},
	"parityshard": {"2", func(c *Config) any { return c.ParityShard }, 2},
	"dscp":        {"46", func(c *Config) any { return c.DSCP }, 46},
	"nocomp":      {"true", func(c *Config) any { return c.NoComp }, true},
	"acknodelay":  {"true", func(c *Config) any { return c.AckNoDelay }, true},
	"nodelay":     {"1", func(c *Config) any { return c.NoDelay }, 1},
	"interval":    {"20", func(c *Config) any { return c.Interval }, 20},
	"resend":      {"2", func(c *Config) any { return c.Resend }, 2},
	"nc":          {"1", func(c *Config) any { return c.NC }, 1},
	"sockbuf":     {"1048576", func(c *Config) any { return c.SockBuf }, 1048576},
	"smuxver":     {"1", func(c *Config) any { return c.SmuxVer }, 1},
	"smuxbuf":     {"8388608", func(c *Config) any { return c.SmuxBuf }, 8388608},
	"streambuf":   {"1048576", func(c *Config) any { return c.StreamBuf }, 1048576},
	"framesize":   {"16384", func(c *Config) any { return c.FrameSize }, 16384},
	"keepalive":   {"5", func(c *Config) any { return c.KeepAlive }, 5},
	"closewait":   {"7", func(c *Config) any { return c.CloseWait }, 7},
	"snmplog":     {"./snmp-20060102.log", func(c *Config) any { return c.SNMPLog }, "./snmp-20060102.log"},
	"snmpperiod":  {"10", func(c *Config) any { return c.SNMPPeriod }, 10},
	"log":         {"/var/log/kcptun.log", func(c *Config) any { return c.Log }, "/var/log/kcptun.log"},
	"quiet":       {"true", func(c *Config) any { return c.Quiet }, true},
	"pprof":       {"true", func(c *Config) any { return c.Pprof }, true},
	"c":           {"", nil, nil}, // covered by the config file tests
	"v":           {"true", func(c *Config) any { return c.Version }, true},
}

// wantFlags is every spelling each program must accept (besides -h).
var wantFlags = map[Role][]string{
	Client: {"l", "localaddr", "r", "remoteaddr", "key", "crypt", "mode", "conn", "autoexpire", "scavengettl",
		"mtu", "ratelimit", "sndwnd", "rcvwnd", "datashard", "ds", "parityshard", "ps", "dscp", "nocomp",
		"acknodelay", "nodelay", "interval", "resend", "nc", "sockbuf", "smuxver", "smuxbuf", "framesize",
		"streambuf", "keepalive", "closewait", "snmplog", "snmpperiod", "log", "quiet", "pprof", "c", "v", "version"},
	Server: {"l", "listen", "t", "target", "key", "crypt", "mode",
		"mtu", "ratelimit", "sndwnd", "rcvwnd", "datashard", "ds", "parityshard", "ps", "dscp", "nocomp",
		"acknodelay", "nodelay", "interval", "resend", "nc", "sockbuf", "smuxver", "smuxbuf", "framesize",
		"streambuf", "keepalive", "closewait", "snmplog", "snmpperiod", "log", "quiet", "pprof", "c", "v", "version"},
}

func noEnv(string) string { return "" }

func TestDefaultsAreTheBinaries(t *testing.T) {
	common := map[string]any{
		"Key": "it's a secrect", "Crypt": "aes", "Mode": "fast", "MTU": 1350, "RateLimit": 0,
		"DataShard": 10, "ParityShard": 3, "DSCP": 0, "NoComp": false, "AckNoDelay": false,
		"NoDelay": 0, "Interval": 50, "Resend": 0, "NC": 0, "SockBuf": 4194304, "SmuxVer": 2,
		"SmuxBuf": 4194304, "StreamBuf": 2097152, "FrameSize": 8192, "KeepAlive": 10,
		"SNMPLog": "", "SNMPPeriod": 60, "Log": "", "Quiet": false, "Pprof": false,
	}
	perRole := map[Role]map[string]any{
		Client: {"Listen": ":12948", "Remote": "vps:29900", "Conn": 1, "AutoExpire": 0, "ScavengeTTL": 600,
			"SndWnd": 128, "RcvWnd": 512, "CloseWait": 0},
		Server: {"Listen": ":29900", "Target": "127.0.0.1:12948", "SndWnd": 1024, "RcvWnd": 1024, "CloseWait": 30},
	}
	for role, extra := range perRole {
		c, err := parse(role, nil, noEnv)
		if err != nil {
			t.Fatalf("%v: parse(no flags): %v", role, err)
		}
		v := reflect.ValueOf(c).Elem()
		for _, m := range []map[string]any{common, extra} {
			for name, want := range m {
				if got := v.FieldByName(name).Interface(); got != want {
					t.Errorf("%v default %s = %v, want %v", role, name, got, want)
				}
			}
		}
		if c.KeySource != "default" {
			t.Errorf("%v KeySource = %q, want default", role, c.KeySource)
		}
	}
}

func TestEverySpellingOfEveryFlag(t *testing.T) {
	for role, names := range wantFlags {
		for _, name := range names {
			long := name
			for _, s := range settingsFor(role) {
				if s.name == name || contains(s.aliases, name) {
					long = s.name
				}
			}
			fc, ok := flagCases[long]
			if !ok {
				t.Fatalf("%v: no test case for --%s", role, long)
			}
			if fc.get == nil {
				continue
			}
			for _, dashes := range []string{"-", "--"} {
				args := []string{dashes + name + "=" + fc.value}
				if fc.value == "true" {
					args = []string{dashes + name}
				}
				c, err := parse(role, args, noEnv)
				if err != nil {
					t.Errorf("%v %v: %v", role, args, err)
					continue
				}
				if got := fc.get(c); got != fc.want {
					t.Errorf("%v %v: field = %v, want %v", role, args, got, fc.want)
				}
			}
			// The space-separated form as well.
			if fc.value != "true" {
				c, err := parse(role, []string{"--" + name, fc.value}, noEnv)
				if err != nil || fc.get(c) != fc.want {
					t.Errorf("%v --%s %s: got %v, %v", role, name, fc.value, c, err)
				}
			}
		}
	}
}

func TestRoleOnlyFlags(t *testing.T) {
	for _, args := range [][]string{{"--conn", "2"}, {"--autoexpire", "5"}, {"--scavengettl", "5"}, {"-r", "x:1"}, {"--localaddr", ":1"}} {
		if _, err := parse(Server, args, noEnv); err == nil {
			t.Errorf("server accepted client flag %v", args)
		}
	}
	for _, args := range [][]string{{"-t", "x:1"}, {"--target", "x:1"}, {"--listen", ":1"}} {
		if _, err := parse(Client, args, noEnv); err == nil {
			t.Errorf("client accepted server flag %v", args)
		}
	}
	// Every table row is tested, and the flag sets are exactly wantFlags.
	for role, names := range wantFlags {
		var got []string
		for _, s := range settingsFor(role) {
			got = append(got, s.name)
			got = append(got, s.aliases...)
		}
		if !sameSet(got, names) {
			t.Errorf("%v flags = %v, want %v", role, got, names)
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	for _, arg := range []string{"-h", "--h", "-help", "--help"} {
		if _, err := parse(Client, []string{arg}, noEnv); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s: err = %v, want flag.ErrHelp", arg, err)
		}
	}
	// -v wins over everything else, even a missing config file.
	c, err := parse(Server, []string{"-v", "-c", "/nonexistent.json"}, noEnv)
	if err != nil || !c.Version {
		t.Errorf("-v: %v, %v", c, err)
	}
	var b strings.Builder
	for _, role := range []Role{Client, Server} {
		b.Reset()
		usage(&b, role)
		for _, name := range wantFlags[role] {
			spelled := "--" + name
			if len(name) == 1 {
				spelled = "-" + name
			}
			if !strings.Contains(b.String(), spelled) {
				t.Errorf("%v usage lacks %s:\n%s", role, spelled, b.String())
			}
		}
	}
}

func TestKeyFromEnvironment(t *testing.T) {
	env := func(k string) string {
		if k == keyEnv {
			return "from-env"
		}
		return ""
	}
	c, err := parse(Client, nil, env)
	if err != nil || c.Key != "from-env" || c.KeySource != "env" {
		t.Errorf("no --key: key %q from %q (%v), want from-env from env", c.Key, c.KeySource, err)
	}
	c, err = parse(Client, []string{"--key", "from-flag"}, env)
	if err != nil || c.Key != "from-flag" || c.KeySource != "flag" {
		t.Errorf("--key: key %q from %q (%v), want from-flag from flag", c.Key, c.KeySource, err)
	}
	// An explicitly empty --key is still the flag's.
	c, err = parse(Server, []string{"--key="}, env)
	if err != nil || c.Key != "" || c.KeySource != "flag" {
		t.Errorf("--key=: key %q from %q (%v), want empty from flag", c.Key, c.KeySource, err)
	}
	path := writeFile(t, `{"key": "from-file"}`)
	c, err = parse(Server, []string{"--key", "from-flag", "-c", path}, env)
	if err != nil || c.Key != "from-file" || c.KeySource != "config" {
		t.Errorf("-c: key %q from %q (%v), want from-file from config", c.Key, c.KeySource, err)
	}
}

func TestConfigFileOverridesFlags(t *testing.T) {
	path := writeFile(t, `{
		"localaddr": "127.0.0.1:4000", "remoteaddr": "10.0.0.1:5000-5010", "crypt": "salsa20",
		"nocomp": true, "datashard": 0, "parityshard": 0, "mode": "manual", "nodelay": 1,
		"interval": 10, "resend": 2, "nc": 1, "conn": 3, "smuxver": 1, "quiet": true, "tcp": false
	}`)
	c, err := parse(Client, []string{"-c", path, "-crypt", "xor", "-mtu", "1200", "--ds", "7", "--conn", "9"}, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"Listen": "127.0.0.1:4000", "Remote": "10.0.0.1:5000-5010", "Crypt": "salsa20", "NoComp": true,
		"DataShard": 0, "ParityShard": 0, "Mode": "manual", "NoDelay": 1, "Interval": 10, "Resend": 2,
		"NC": 1, "Conn": 3, "SmuxVer": 1, "Quiet": true,
		"MTU": 1200, // from the flag: the file does not set it
	}
	v := reflect.ValueOf(c).Elem()
	for name, w := range want {
		if got := v.FieldByName(name).Interface(); got != w {
			t.Errorf("%s = %v, want %v", name, got, w)
		}
	}
	// Every JSON key of each role is accepted.
	for _, role := range []Role{Client, Server} {
		var keys []string
		for _, s := range settingsFor(role) {
			if !s.noJSON {
				keys = append(keys, s.name)
			}
		}
		c := defaults(role)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%q: %s", k, jsonValue(c, k)))
		}
		path := writeFile(t, "{"+strings.Join(parts, ",")+"}")
		if _, err := parse(role, []string{"-c", path}, noEnv); err != nil {
			t.Errorf("%v: a file with every key: %v", role, err)
		}
	}
}

// jsonValue is the JSON form of a default value.
func jsonValue(c *Config, key string) string {
	for _, s := range settingsFor(c.Role) {
		if s.name == key {
			switch p := s.field(c).(type) {
			case *string:
				return fmt.Sprintf("%q", *p)
			case *int:
				return fmt.Sprint(*p)
			case *bool:
				return fmt.Sprint(*p)
			}
		}
	}
	return "null"
}

func TestConfigFileErrors(t *testing.T) {
	cases := []struct {
		role Role
		body string
		want string
	}{
		{Client, `{"mtu": 1350, "colour": "blue"}`, `unknown key "colour"`},
		{Client, `{"target": "127.0.0.1:1"}`, `unknown key "target": it is a server setting`},
		{Server, `{"conn": 2}`, `unknown key "conn": it is a client setting`},
		{Client, `{"c": "other.json"}`, `unknown key "c"`},
		{Client, `{"mtu": "1350"}`, `key "mtu": want an integer, got "1350"`},
		{Client, `{"mtu": 13.5}`, `key "mtu": want an integer`},
		{Client, `{"nocomp": 1}`, `key "nocomp": want true or false`},
		{Client, `{"key": 5}`, `key "key": want a string`},
		{Server, `{"tcp": true}`, `TCP emulation is not supported`},
		{Server, `[1, 2]`, `not a JSON object`},
		{Server, `{"mtu": 1350`, `not a JSON object`},
		{Server, `null`, `want a JSON object`},
		{Client, `{"mode": "turbo"}`, `invalid --mode "turbo"`},
	}
	for _, tc := range cases {
		path := writeFile(t, tc.body)
		_, err := parse(tc.role, []string{"-c", path}, noEnv)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %s: err = %v, want it to contain %q", tc.role, tc.body, err, tc.want)
		}
		checkOneLine(t, err)
	}
	_, err := parse(Client, []string{"-c", filepath.Join(t.TempDir(), "missing.json")}, noEnv)
	if err == nil || !strings.Contains(err.Error(), "missing.json") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v", err)
	}
	checkOneLine(t, err)
}

func TestBadValues(t *testing.T) {
	cases := []struct {
		role Role
		args []string
		want string
	}{
		{Client, []string{"-mtu", "abc"}, `invalid value "abc" for flag -mtu`},
		{Client, []string{"--nocomp=maybe"}, `invalid boolean value "maybe" for -nocomp`},
		{Client, []string{"--bogus"}, `flag provided but not defined: -bogus`},
		{Client, []string{"stray"}, `unexpected argument "stray"`},
		{Client, []string{"-r", "vps"}, `invalid --remoteaddr "vps"`},
		{Client, []string{"-r", "vps:0"}, `invalid --remoteaddr "vps:0"`},
		{Client, []string{"-r", "vps:10-5"}, `invalid --remoteaddr "vps:10-5"`},
		{Client, []string{"-r", "vps:1-70000"}, `invalid --remoteaddr`},
		{Client, []string{"-l", "localhost"}, `invalid --localaddr "localhost"`},
		{Client, []string{"-l", ":99999"}, `invalid --localaddr`},
		{Server, []string{"-l", ":x"}, `invalid --listen ":x"`},
		{Server, []string{"-t", "host"}, `invalid --target "host"`},
		{Server, []string{"-t", "host:0"}, `invalid --target`},
		{Server, []string{"--mode", "warp"}, `invalid --mode "warp"`},
		{Server, []string{"--closewait", "-1"}, `invalid --closewait -1`},
		{Server, []string{"--snmpperiod", "0"}, `invalid --snmpperiod 0`},
		{Server, []string{"--keepalive", "0"}, `invalid --keepalive 0`},
		{Client, []string{"--autoexpire", "-5"}, `invalid --autoexpire -5`},
		{Client, []string{"--scavengettl", "99999999999"}, `invalid --scavengettl`},
	}
	for _, tc := range cases {
		_, err := parse(tc.role, tc.args, noEnv)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: err = %v, want it to contain %q", tc.role, tc.args, err, tc.want)
		}
		checkOneLine(t, err)
	}
}

// TestSDKErrorsNameTheFlag checks that values only the SDK can judge come
// back as one line naming the flag.
func TestSDKErrorsNameTheFlag(t *testing.T) {
	cases := []struct {
		role Role
		args []string
		want string
	}{
		{Server, []string{"--mtu", "20"}, "invalid --mtu 20: want"},
		{Server, []string{"--crypt", "rot13"}, `invalid --crypt "rot13": want one of`},
		{Server, []string{"--sndwnd", "70000"}, "invalid --sndwnd 70000, --rcvwnd 1024: want"},
		{Server, []string{"--ds", "-1"}, "invalid --datashard -1, --parityshard 3: want"},
		{Server, []string{"--dscp", "64"}, "invalid --dscp 64: want 0..63"},
		{Server, []string{"--smuxver", "3"}, "invalid --smuxver 3: want 1 or 2"},
		{Server, []string{"--streambuf", "8388608"}, "invalid --smuxbuf 4194304, --streambuf 8388608: the stream buffer"},
		{Server, []string{"--framesize", "70000"}, "invalid --framesize 70000"},
		{Server, []string{"--keepalive", "31"}, "invalid --keepalive 31"},
		{Server, []string{"--ratelimit", "-1"}, "invalid --ratelimit -1"},
		{Server, []string{"--sockbuf", "-1"}, "invalid --sockbuf -1"},
		{Server, []string{"--mode", "manual", "--interval", "5"}, "invalid --nodelay 0, --interval 5, --resend 0, --nc 0: want"},
		{Client, []string{"--conn", "0"}, "invalid --conn 0: want at least 1"},
	}
	for _, tc := range cases {
		c, err := parse(tc.role, tc.args, noEnv)
		if err != nil {
			t.Errorf("%v %v: Parse: %v (the SDK should judge this value)", tc.role, tc.args, err)
			continue
		}
		err = openWith(c)
		if err == nil {
			t.Errorf("%v %v: the SDK accepted it", tc.role, tc.args)
			continue
		}
		if !errors.Is(err, kcptun.ErrInvalidOption) {
			t.Errorf("%v %v: err = %v, want ErrInvalidOption", tc.role, tc.args, err)
		}
		got := c.optionError(err)
		if !strings.Contains(got.Error(), tc.want) {
			t.Errorf("%v %v: %v, want it to contain %q", tc.role, tc.args, got, tc.want)
		}
		checkOneLine(t, got)
	}
	// Errors that are not about options pass through.
	plain := errors.New("boom")
	if got := defaults(Client).optionError(plain); got != plain {
		t.Errorf("OptionError(plain) = %v", got)
	}
}

// TestOptionsAreValid checks that the defaults and a manual mode make a
// configuration the SDK accepts.
func TestOptionsAreValid(t *testing.T) {
	for _, args := range [][]string{nil, {"--mode", "manual", "--nodelay", "1", "--interval", "10", "--resend", "2", "--nc", "1"}} {
		for _, role := range []Role{Client, Server} {
			c, err := parse(role, args, noEnv)
			if err != nil {
				t.Fatal(err)
			}
			if err := openWith(c); err != nil {
				t.Errorf("%v %v: %v", role, args, err)
			}
		}
	}
}

func TestSettingsHideTheKey(t *testing.T) {
	c, err := parse(Client, []string{"--key", "hunter2", "--mode", "manual"}, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	s := fmt.Sprint(c.logAttrs()...)
	if strings.Contains(s, "hunter2") {
		t.Errorf("settings show the key: %s", s)
	}
	for _, want := range []string{"crypt=aes", "mtu=1350", "key=(from flag)", "interval=50", "remoteaddr=vps:29900"} {
		if !strings.Contains(s, want) {
			t.Errorf("settings lack %s: %s", want, s)
		}
	}
}

func TestNetwork(t *testing.T) {
	for addr, want := range map[string]string{
		"/run/kcptun.sock": "unix", "./k.sock": "unix", "dir/k.sock": "unix", `C:\k.sock`: "unix",
		":12948": "tcp", "127.0.0.1:80": "tcp", "[::1]:80": "tcp", "vps:29900": "tcp",
	} {
		if got := Network(addr); got != want {
			t.Errorf("Network(%q) = %q, want %q", addr, got, want)
		}
	}
}

func checkOneLine(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), "\n") {
		t.Errorf("error spans lines: %q", err)
	}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sameSet(a, b []string) bool {
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return len(a) == len(b)
}

// TestDistConfigs checks that the example JSON files in dist/ parse.
func TestDistConfigs(t *testing.T) {
	for role, file := range map[Role]string{Client: "client.json", Server: "server.json"} {
		path := filepath.Join("..", "..", "dist", file)
		c, err := parse(role, []string{"-c", path}, noEnv)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if c.Crypt != "aes-128-gcm" || c.KeySource != "config" {
			t.Errorf("%s: crypt %q, key from %q", path, c.Crypt, c.KeySource)
		}
	}
}

// openWith hands c's options to the SDK call of c's role, a Listen for a
// server and a NewClient (which dials in the background) for a client, and
// closes what it opened.
func openWith(c *Config) error {
	if c.Role == Client {
		cl, err := kcptun.NewClient("127.0.0.1:1", c.Options(nil)...)
		if err == nil {
			cl.Close()
		}
		return err
	}
	ln, err := kcptun.Listen("127.0.0.1:0", c.Options(nil)...)
	if err == nil {
		ln.Close()
	}
	return err
}
