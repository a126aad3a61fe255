package forward

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/seed-fc8f924e/kcptun"
)

// Role says which of the two programs a Config belongs to.
type Role int

// The two forwarding programs.
const (
	// Client is examples/client: TCP in, KCP out.
	Client Role = 1 << iota
	// Server is examples/server: KCP in, TCP out.
	Server
)

const bothRoles = Client | Server

// String returns "client" or "server".
func (r Role) String() string {
	switch r {
	case Client:
		return "client"
	case Server:
		return "server"
	}
	return "Role(" + strconv.Itoa(int(r)) + ")"
}

// keyEnv is the environment variable that supplies --key when the flag is
// not given.
const keyEnv = "KCPTUN_KEY"

// maxSeconds bounds every setting given in seconds, so that converting it
// to a time.Duration cannot overflow.
const maxSeconds = 1<<31 - 1 // about 68 years; fits a 32-bit int

// Config holds every setting of one forwarding program, as parsed from the
// command line and an optional JSON file. The field comments give the flag
// that fills each field; see the flag table in this file for defaults.
type Config struct {
	Role Role

	Listen string // client -l/--localaddr (TCP address or unix path); server -l/--listen (UDP, host:min-max allowed)
	Remote string // client -r/--remoteaddr: the server's UDP address, host:min-max allowed
	Target string // server -t/--target: TCP address or unix socket path

	Key         string // --key, or the KCPTUN_KEY environment variable
	Crypt       string // --crypt
	Mode        string // --mode: normal, fast, fast2, fast3 or manual
	Conn        int    // --conn (client)
	AutoExpire  int    // --autoexpire, seconds (client)
	ScavengeTTL int    // --scavengettl, seconds (client)
	MTU         int    // --mtu
	RateLimit   int    // --ratelimit, bytes per second
	SndWnd      int    // --sndwnd, packets
	RcvWnd      int    // --rcvwnd, packets
	DataShard   int    // --datashard/--ds
	ParityShard int    // --parityshard/--ps
	DSCP        int    // --dscp
	NoComp      bool   // --nocomp
	AckNoDelay  bool   // --acknodelay
	NoDelay     int    // --nodelay (manual mode)
	Interval    int    // --interval, ms (manual mode)
	Resend      int    // --resend (manual mode)
	NC          int    // --nc (manual mode)
	SockBuf     int    // --sockbuf, bytes
	SmuxVer     int    // --smuxver
	SmuxBuf     int    // --smuxbuf, bytes
	StreamBuf   int    // --streambuf, bytes
	FrameSize   int    // --framesize, bytes
	KeepAlive   int    // --keepalive, seconds
	CloseWait   int    // --closewait, seconds
	SNMPLog     string // --snmplog: CSV file name, passed through Go's time format
	SNMPPeriod  int    // --snmpperiod, seconds
	Log         string // --log: log file (default stderr)
	Quiet       bool   // --quiet: no per-connection lines
	Pprof       bool   // --pprof: net/http/pprof on pprofAddr(role)

	ConfigFile string // -c: JSON file whose keys override the flags
	Version    bool   // -v/--version: print the version and exit

	// KeySource tells where Key came from: "default", "flag", "env" or
	// "config".
	KeySource string

	// SmuxVerSet and NoCompSet record that --smuxver and --nocomp were given
	// (as a flag or a JSON key): the setting is then pinned. Unset, the
	// server answers every client in kind and the client follows its server.
	SmuxVerSet bool
	NoCompSet  bool
	// SndWndSet, RcvWndSet and FECSet record that --sndwnd, --rcvwnd and
	// --datashard/--parityshard were given: those parts are then pinned.
	// Unset, each session sizes its windows and picks its FEC shape itself.
	SndWndSet, RcvWndSet, FECSet bool
	// SmuxBufSet records that --smuxbuf or --streambuf was given: both
	// buffers are then pinned at SmuxBuf and StreamBuf. Unset, the SDK's
	// adaptive buffers apply (kcptun.AdaptiveSmuxBuffer).
	SmuxBufSet bool
	// ConnSet records that --conn was given: the client then keeps exactly
	// Conn sessions. Unset, it keeps one and opens a side session for the
	// connections that arrive while that one is busy (kcptun.Client).
	ConnSet bool
}

// markGiven records that the setting called name (a flag, an alias or a
// JSON key) was given explicitly, for the settings that adapt unless given.
func (c *Config) markGiven(name string) {
	switch name {
	case "smuxver":
		c.SmuxVerSet = true
	case "nocomp":
		c.NoCompSet = true
	case "sndwnd":
		c.SndWndSet = true
	case "rcvwnd":
		c.RcvWndSet = true
	case "datashard", "ds", "parityshard", "ps":
		c.FECSet = true
	case "smuxbuf", "streambuf":
		c.SmuxBufSet = true
	case "conn":
		c.ConnSet = true
	}
}

// setting is one row of the flag table: one flag with its aliases, the JSON
// key that sets the same field, its default per role and the SDK option
// that checks it.
type setting struct {
	name      string   // long name; also the JSON key
	aliases   []string // other spellings, e.g. "l" or "ds"
	roles     Role     // programs that have it
	def       any      // default: string, int or bool
	serverDef any      // the server's default when it differs; nil otherwise
	usage     string
	sdk       string // the kcptun Option whose errors point at this flag
	noJSON    bool   // not a JSON key (-c, -v)
	field     func(*Config) any
}

// settings is the flag table shared by both programs: every flag, alias,
// default and JSON key in one place.
var settings = []setting{
	{name: "localaddr", aliases: []string{"l"}, roles: Client, def: ":12948",
		usage: "local listen address (host:port, or a unix socket path containing '/')",
		field: func(c *Config) any { return &c.Listen }},
	{name: "listen", aliases: []string{"l"}, roles: Server, def: ":29900",
		usage: "UDP listen address; host:min-max listens on every port of the range",
		field: func(c *Config) any { return &c.Listen }},
	{name: "remoteaddr", aliases: []string{"r"}, roles: Client, def: "vps:29900",
		usage: "kcptun server address; host:min-max picks a random port per session",
		field: func(c *Config) any { return &c.Remote }},
	{name: "target", aliases: []string{"t"}, roles: Server, def: "127.0.0.1:12948",
		usage: "target address (host:port, or a unix socket path containing '/')",
		field: func(c *Config) any { return &c.Target }},
	{name: "key", roles: bothRoles, def: kcptun.DefaultKey, sdk: "WithKey",
		usage: "pre-shared secret between client and server (default from $" + keyEnv + ")",
		field: func(c *Config) any { return &c.Key }},
	{name: "crypt", roles: bothRoles, def: kcptun.DefaultCrypt, sdk: "WithCrypt",
		usage: "aes, aes-128, aes-192, aes-128-gcm, salsa20, blowfish, twofish, cast5, 3des, tea, xtea, sm4, xor, none, null",
		field: func(c *Config) any { return &c.Crypt }},
	{name: "mode", roles: bothRoles, def: "fast", sdk: "WithMode",
		usage: "profiles: normal, fast, fast2, fast3, manual (uses --nodelay --interval --resend --nc); default, as the old binaries run it, is manual",
		field: func(c *Config) any { return &c.Mode }},
	{name: "conn", roles: Client, def: 1, sdk: "WithConns",
		usage: "number of KCP sessions to the server; unset, 1 plus a side session for connections that arrive while it is busy",
		field: func(c *Config) any { return &c.Conn }},
	{name: "autoexpire", roles: Client, def: 0, sdk: "WithAutoExpire",
		usage: "seconds before a session stops taking new streams; 0 never",
		field: func(c *Config) any { return &c.AutoExpire }},
	{name: "scavengettl", roles: Client, def: 600, sdk: "WithScavengeTTL",
		usage: "seconds an expired session may keep serving its streams",
		field: func(c *Config) any { return &c.ScavengeTTL }},
	{name: "mtu", roles: bothRoles, def: kcptun.DefaultMTU, sdk: "WithMTU",
		usage: "largest UDP payload in bytes",
		field: func(c *Config) any { return &c.MTU }},
	{name: "ratelimit", roles: bothRoles, def: 0, sdk: "WithRateLimit",
		usage: "sending rate cap per session in bytes per second; 0 off",
		field: func(c *Config) any { return &c.RateLimit }},
	{name: "sndwnd", roles: bothRoles, def: 128, serverDef: 1024, sdk: "WithWindow",
		usage: "send window in packets",
		field: func(c *Config) any { return &c.SndWnd }},
	{name: "rcvwnd", roles: bothRoles, def: 512, serverDef: 1024, sdk: "WithWindow",
		usage: "receive window in packets",
		field: func(c *Config) any { return &c.RcvWnd }},
	{name: "datashard", aliases: []string{"ds"}, roles: bothRoles, def: kcptun.DefaultDataShards, sdk: "WithFEC",
		usage: "FEC data shards; 0 turns FEC off",
		field: func(c *Config) any { return &c.DataShard }},
	{name: "parityshard", aliases: []string{"ps"}, roles: bothRoles, def: kcptun.DefaultParityShards, sdk: "WithFEC",
		usage: "FEC parity shards; 0 turns FEC off",
		field: func(c *Config) any { return &c.ParityShard }},
	{name: "dscp", roles: bothRoles, def: 0, sdk: "WithDSCP",
		usage: "DSCP value of outgoing datagrams (0..63)",
		field: func(c *Config) any { return &c.DSCP }},
	{name: "nocomp", roles: bothRoles, def: false, sdk: "WithCompression",
		usage: "turn snappy compression off; unset, the server answers each client in kind and the client follows its server",
		field: func(c *Config) any { return &c.NoComp }},
	{name: "acknodelay", roles: bothRoles, def: false, sdk: "WithACKNoDelay",
		usage: "send ACKs at once",
		field: func(c *Config) any { return &c.AckNoDelay }},
	{name: "nodelay", roles: bothRoles, def: 0, sdk: "WithNoDelay",
		usage: "manual mode: KCP nodelay (0 or 1)",
		field: func(c *Config) any { return &c.NoDelay }},
	{name: "interval", roles: bothRoles, def: 50, sdk: "WithNoDelay",
		usage: "manual mode: KCP interval in ms",
		field: func(c *Config) any { return &c.Interval }},
	{name: "resend", roles: bothRoles, def: 0, sdk: "WithNoDelay",
		usage: "manual mode: fast retransmit after this many skipping ACKs; 0 off",
		field: func(c *Config) any { return &c.Resend }},
	{name: "nc", roles: bothRoles, def: 0, sdk: "WithNoDelay",
		usage: "manual mode: 1 turns congestion control off",
		field: func(c *Config) any { return &c.NC }},
	{name: "sockbuf", roles: bothRoles, def: kcptun.DefaultSockBuf, sdk: "WithSockBuf",
		usage: "UDP socket buffer size in bytes",
		field: func(c *Config) any { return &c.SockBuf }},
	{name: "smuxver", roles: bothRoles, def: kcptun.DefaultSmuxVersion, sdk: "WithSmuxVersion",
		usage: "smux version, 1 or 2; unset, the server answers each client in kind and the client follows its server (starting with 2)",
		field: func(c *Config) any { return &c.SmuxVer }},
	{name: "smuxbuf", roles: bothRoles, def: kcptun.DefaultSmuxBuffer, sdk: "WithSmuxBuffer",
		usage: "smux receive buffer per session in bytes",
		field: func(c *Config) any { return &c.SmuxBuf }},
	{name: "streambuf", roles: bothRoles, def: kcptun.DefaultStreamBuffer, sdk: "WithSmuxBuffer",
		usage: "smux receive buffer per stream in bytes",
		field: func(c *Config) any { return &c.StreamBuf }},
	{name: "framesize", roles: bothRoles, def: kcptun.DefaultFrameSize, sdk: "WithFrameSize",
		usage: "smux largest frame in bytes",
		field: func(c *Config) any { return &c.FrameSize }},
	{name: "keepalive", roles: bothRoles, def: int(kcptun.DefaultKeepAlive / time.Second), sdk: "WithKeepAlive",
		usage: "seconds between smux keepalives (at most 30)",
		field: func(c *Config) any { return &c.KeepAlive }},
	{name: "closewait", roles: bothRoles, def: 0, serverDef: 30,
		usage: "seconds to let the other direction finish after one ends; 0 closes both at once",
		field: func(c *Config) any { return &c.CloseWait }},
	{name: "snmplog", roles: bothRoles, def: "",
		usage: "append SNMP counters as CSV to this file, e.g. ./snmp-20060102.log",
		field: func(c *Config) any { return &c.SNMPLog }},
	{name: "snmpperiod", roles: bothRoles, def: 60,
		usage: "seconds between SNMP rows",
		field: func(c *Config) any { return &c.SNMPPeriod }},
	{name: "log", roles: bothRoles, def: "",
		usage: "append the log to this file instead of stderr",
		field: func(c *Config) any { return &c.Log }},
	{name: "quiet", roles: bothRoles, def: false,
		usage: "no per-connection open and close lines",
		field: func(c *Config) any { return &c.Quiet }},
	{name: "pprof", roles: bothRoles, def: false,
		usage: "serve net/http/pprof on 127.0.0.1 (client :6060, server :6061)",
		field: func(c *Config) any { return &c.Pprof }},
	{name: "c", roles: bothRoles, def: "", noJSON: true,
		usage: "JSON config file; its keys (long flag names without dashes) override flags",
		field: func(c *Config) any { return &c.ConfigFile }},
	{name: "v", aliases: []string{"version"}, roles: bothRoles, def: false, noJSON: true,
		usage: "print the version and exit",
		field: func(c *Config) any { return &c.Version }},
}

// settingsFor returns the table rows that role has, in table order.
func settingsFor(role Role) []*setting {
	var out []*setting
	for i := range settings {
		if settings[i].roles&role != 0 {
			out = append(out, &settings[i])
		}
	}
	return out
}

func (s *setting) defaultFor(role Role) any {
	if role == Server && s.serverDef != nil {
		return s.serverDef
	}
	return s.def
}

// defaults returns a Config holding role's defaults, the kcptun binaries'
// defaults.
func defaults(role Role) *Config {
	c := &Config{Role: role, KeySource: "default"}
	for _, s := range settingsFor(role) {
		switch p := s.field(c).(type) {
		case *string:
			*p = s.defaultFor(role).(string)
		case *int:
			*p = s.defaultFor(role).(int)
		case *bool:
			*p = s.defaultFor(role).(bool)
		}
	}
	return c
}

// parse parses args (the command line without the program name) for role.
// Defaults come first, then KCPTUN_KEY (looked up with getenv) if --key is
// not given, then the flags, then the -c JSON file, whose keys win. The
// result is checked with validate. parse returns flag.ErrHelp for -h; every
// other error is one line that names the flag or key at fault.
func parse(role Role, args []string, getenv func(string) string) (*Config, error) {
	c := defaults(role)
	fs := flag.NewFlagSet(role.String(), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	for _, s := range settingsFor(role) {
		for _, name := range append([]string{s.name}, s.aliases...) {
			switch p := s.field(c).(type) {
			case *string:
				fs.StringVar(p, name, *p, s.usage)
			case *int:
				fs.IntVar(p, name, *p, s.usage)
			case *bool:
				fs.BoolVar(p, name, *p, s.usage)
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, flag.ErrHelp
		}
		if strings.HasSuffix(err.Error(), "not defined: -"+tuncrypt) {
			return nil, errTuncrypt
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags take the form -name value or --name=value)", fs.Arg(0))
	}
	keySet := false
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "key":
			keySet = true
		default:
			c.markGiven(f.Name)
		}
	})
	switch {
	case keySet:
		c.KeySource = "flag"
	case getenv != nil && getenv(keyEnv) != "":
		c.Key = getenv(keyEnv)
		c.KeySource = "env"
	}
	if c.Version {
		return c, nil
	}
	if c.ConfigFile != "" {
		if err := c.loadJSON(c.ConfigFile); err != nil {
			return nil, err
		}
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// loadJSON overrides c's fields with the keys of the JSON object in path.
// An unknown key or a value of the wrong type is an error naming the key.
func (c *Config) loadJSON(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&obj); err != nil {
		return fmt.Errorf("config file %s: not a JSON object: %w", path, err)
	}
	if obj == nil {
		return fmt.Errorf("config file %s: want a JSON object", path)
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		raw := obj[k]
		if k == "tcp" {
			// The classic binaries' TCP emulation switch: accepted when off,
			// so their JSON files keep working.
			var on bool
			if err := json.Unmarshal(raw, &on); err != nil || on {
				return fmt.Errorf("config file %s: key %q: TCP emulation is not supported; remove the key or set it to false", path, k)
			}
			continue
		}
		if k == tuncrypt {
			return fmt.Errorf("config file %s: key %q: %w", path, k, errTuncrypt)
		}
		s := lookupJSON(c.Role, k)
		if s == nil {
			if other := lookupJSON(bothRoles&^c.Role, k); other != nil {
				return fmt.Errorf("config file %s: unknown key %q: it is a %s setting, not a %s one", path, k, (bothRoles &^ c.Role), c.Role)
			}
			return fmt.Errorf("config file %s: unknown key %q", path, k)
		}
		p := s.field(c)
		if err := json.Unmarshal(raw, p); err != nil {
			want := map[string]string{"*string": "a string", "*int": "an integer", "*bool": "true or false"}[fmt.Sprintf("%T", p)]
			return fmt.Errorf("config file %s: key %q: want %s, got %s", path, k, want, bytes.TrimSpace(raw))
		}
		switch k {
		case "key":
			c.KeySource = "config"
		default:
			c.markGiven(k)
		}
	}
	return nil
}

func lookupJSON(role Role, key string) *setting {
	for _, s := range settingsFor(role) {
		if s.name == key && !s.noJSON {
			return s
		}
	}
	return nil
}

// validate checks what the SDK does not: addresses, the mode's name and the
// settings in seconds. The SDK checks the rest when the client or listener
// is created; optionError turns those errors into flag names.
func (c *Config) validate() error {
	switch c.Role {
	case Client:
		if err := checkLocalAddr("localaddr", c.Listen, true); err != nil {
			return err
		}
		if err := checkUDPAddr("remoteaddr", c.Remote, false); err != nil {
			return err
		}
	case Server:
		if err := checkUDPAddr("listen", c.Listen, true); err != nil {
			return err
		}
		if err := checkLocalAddr("target", c.Target, false); err != nil {
			return err
		}
	default:
		return fmt.Errorf("forward: unknown role %d", c.Role)
	}
	if _, err := c.sdkMode(); err != nil {
		return fmt.Errorf("invalid --mode %q: want normal, fast, fast2, fast3, manual or default", c.Mode)
	}
	type secs struct {
		name     string
		v, least int
	}
	check := []secs{{"closewait", c.CloseWait, 0}, {"snmpperiod", c.SNMPPeriod, 1}, {"keepalive", c.KeepAlive, 1}}
	if c.Role == Client {
		check = append(check, secs{"autoexpire", c.AutoExpire, 0}, secs{"scavengettl", c.ScavengeTTL, 0})
	}
	for _, s := range check {
		if s.v < s.least || s.v > maxSeconds {
			return fmt.Errorf("invalid --%s %d: want %d..%d seconds", s.name, s.v, s.least, maxSeconds)
		}
	}
	return nil
}

// checkUDPAddr checks a "host:port" or "host:min-max" UDP address; a
// listen address may also use port 0, any free port.
func checkUDPAddr(flagName, addr string, listen bool) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid --%s %q: want host:port or host:min-max", flagName, addr)
	}
	lo, hi, ok := strings.Cut(port, "-")
	if !ok {
		hi = lo
	}
	l, err1 := strconv.Atoi(lo)
	h, err2 := strconv.Atoi(hi)
	if listen && !ok && l == 0 && err1 == nil {
		return nil
	}
	if err1 != nil || err2 != nil || l < 1 || h > math.MaxUint16 || l > h {
		return fmt.Errorf("invalid --%s %q: want a port or a range min-max within 1-65535", flagName, addr)
	}
	return nil
}

// checkLocalAddr checks a TCP "host:port" or a unix socket path.
func checkLocalAddr(flagName, addr string, listen bool) error {
	if Network(addr) == "unix" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	least := 1
	if listen {
		least = 0
	}
	if p, perr := strconv.Atoi(port); err != nil || perr != nil || p < least || p > math.MaxUint16 {
		return fmt.Errorf("invalid --%s %q: want host:port or a unix socket path containing '/'", flagName, addr)
	}
	return nil
}

// tuncrypt is a flag of some old releases that this program does not take.
const tuncrypt = "tuncrypt"

// errTuncrypt names the replacement of --tuncrypt.
var errTuncrypt = errors.New("--tuncrypt is not supported: it was replaced by --crypt; give --crypt the same cipher name on both ends")

// sdkMode returns the SDK mode --mode names. "default" is no profile of the
// binaries: they run any name they do not know with the manual values
// (--nodelay, --interval, --resend, --nc; 0,50,0,0 unless given), and so does
// this program for that one name, which old configurations use.
func (c *Config) sdkMode() (kcptun.Mode, error) {
	if strings.EqualFold(strings.TrimSpace(c.Mode), "default") {
		return kcptun.ModeManual, nil
	}
	return kcptun.ParseMode(c.Mode)
}

// Options returns the SDK options that carry c's settings, logging to
// logger.
func (c *Config) Options(logger *slog.Logger) []kcptun.Option {
	mode, _ := c.sdkMode() // Validate checked it
	opts := []kcptun.Option{
		kcptun.WithKey(c.Key),
		kcptun.WithCrypt(c.Crypt),
		kcptun.WithMode(mode),
	}
	if mode == kcptun.ModeManual {
		opts = append(opts, kcptun.WithNoDelay(c.NoDelay, c.Interval, c.Resend, c.NC))
	}
	opts = append(opts,
		kcptun.WithMTU(c.MTU),
		kcptun.WithDSCP(c.DSCP),
		kcptun.WithACKNoDelay(c.AckNoDelay),
		kcptun.WithRateLimit(c.RateLimit),
		kcptun.WithSockBuf(c.SockBuf),
		kcptun.WithFrameSize(c.FrameSize),
		kcptun.WithKeepAlive(time.Duration(c.KeepAlive)*time.Second),
	)
	// Unless given, windows and FEC adapt per session (a window of 0 stays
	// adaptive), smux's buffers are the SDK's adaptive ones, and
	// compression and the smux version follow the other end.
	if c.SndWndSet || c.RcvWndSet {
		snd, rcv := 0, 0
		if c.SndWndSet {
			snd = c.SndWnd
		}
		if c.RcvWndSet {
			rcv = c.RcvWnd
		}
		opts = append(opts, kcptun.WithWindow(snd, rcv))
	}
	if c.FECSet {
		opts = append(opts, kcptun.WithFEC(c.DataShard, c.ParityShard))
	}
	if c.SmuxBufSet {
		opts = append(opts, kcptun.WithSmuxBuffer(c.SmuxBuf, c.StreamBuf))
	}
	if c.NoCompSet {
		opts = append(opts, kcptun.WithCompression(!c.NoComp))
	}
	if c.SmuxVerSet {
		opts = append(opts, kcptun.WithSmuxVersion(c.SmuxVer))
	}
	if c.Role == Client && c.ConnSet {
		opts = append(opts, kcptun.WithConns(c.Conn))
	}
	if c.Role == Client {
		opts = append(opts,
			kcptun.WithAutoExpire(time.Duration(c.AutoExpire)*time.Second),
			kcptun.WithScavengeTTL(time.Duration(c.ScavengeTTL)*time.Second),
		)
	}
	if logger != nil {
		opts = append(opts, kcptun.WithLogger(logger))
	}
	return opts
}

// optionError rewrites an error from the SDK about a bad option into one
// line that names the flags behind it and their values, e.g.
// "invalid --mtu 20: want 48..1500 with this cipher and FEC". Errors that are
// not about options come back unchanged.
func (c *Config) optionError(err error) error {
	var oe *kcptun.OptionError
	if !errors.As(err, &oe) {
		return err
	}
	var flags []string
	for _, s := range settingsFor(c.Role) {
		if s.sdk == oe.Option {
			flags = append(flags, fmt.Sprintf("--%s %s", s.name, c.valueString(s)))
		}
	}
	if len(flags) == 0 {
		return err
	}
	return fmt.Errorf("invalid %s: %s", strings.Join(flags, ", "), oe.Reason)
}

func (c *Config) valueString(s *setting) string {
	switch p := s.field(c).(type) {
	case *string:
		return strconv.Quote(*p)
	case *int:
		return strconv.Itoa(*p)
	case *bool:
		return strconv.FormatBool(*p)
	}
	return "?"
}

// logAttrs returns the effective settings as log attributes, one per flag,
// in table order. The key is never included; its source is.
func (c *Config) logAttrs() []any {
	var attrs []any
	for _, s := range settingsFor(c.Role) {
		switch s.name {
		case "key":
			attrs = append(attrs, slog.String("key", "(from "+c.KeySource+")"))
			continue
		case "v":
			continue
		case "c":
			if c.ConfigFile == "" {
				continue
			}
		case "nodelay", "interval", "resend", "nc":
			if m, _ := c.sdkMode(); m != kcptun.ModeManual {
				continue
			}
		}
		switch {
		case s.name == "smuxver" && !c.SmuxVerSet, s.name == "nocomp" && !c.NoCompSet,
			s.name == "sndwnd" && !c.SndWndSet, s.name == "rcvwnd" && !c.RcvWndSet,
			(s.name == "datashard" || s.name == "parityshard") && !c.FECSet,
			(s.name == "smuxbuf" || s.name == "streambuf") && !c.SmuxBufSet,
			s.name == "conn" && !c.ConnSet:
			attrs = append(attrs, slog.String(s.name, "auto"))
			continue
		}
		attrs = append(attrs, slog.Any(s.name, deref(s.field(c))))
	}
	return attrs
}

func deref(p any) any {
	switch p := p.(type) {
	case *string:
		return *p
	case *int:
		return *p
	case *bool:
		return *p
	}
	return nil
}

// usage writes the flag list of role's program to w, with every alias and
// default.
func usage(w io.Writer, role Role) {
	fmt.Fprintf(w, "Usage: %s [flags]\n\n", role)
	switch role {
	case Client:
		fmt.Fprintf(w, "Forwards every TCP connection accepted on --localaddr as a stream to the kcptun server at --remoteaddr.\n\n")
	case Server:
		fmt.Fprintf(w, "Accepts kcptun streams on --listen and forwards each to the TCP target at --target.\n\n")
	}
	fmt.Fprintf(w, "Flags (each may be written -name or --name):\n")
	for _, s := range settingsFor(role) {
		names := make([]string, 0, 1+len(s.aliases))
		for _, n := range slices.Concat(s.aliases, []string{s.name}) {
			if len(n) == 1 {
				names = append(names, "-"+n)
			} else {
				names = append(names, "--"+n)
			}
		}
		kind := ""
		switch s.def.(type) {
		case string:
			kind = " string"
		case int:
			kind = " int"
		}
		def := ""
		switch v := s.defaultFor(role).(type) {
		case string:
			if v != "" && s.name != "key" {
				def = fmt.Sprintf(" (default %q)", v)
			}
		case int:
			def = fmt.Sprintf(" (default %d)", v)
		}
		fmt.Fprintf(w, "  %s%s\n    \t%s%s\n", strings.Join(names, ", "), kind, s.usage, def)
	}
	fmt.Fprintf(w, "  -h, --help\n    \tshow this help\n")
}

// Network returns the network of a local address, the client's --localaddr
// or the server's --target: "unix" for a unix socket path (an address with a
// path separator, as in "/run/kcptun.sock" or "./kcptun.sock"), "tcp" for a
// host:port.
func Network(addr string) string {
	if strings.ContainsAny(addr, `/\`) {
		return "unix"
	}
	return "tcp"
}
