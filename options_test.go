package kcptun

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestOptionNotForCall gives each option that only some calls use to every
// other call: the call must fail with an OptionError that names the option
// and the call, and open nothing.
func TestOptionNotForCall(t *testing.T) {
	calls := map[string]func(...Option) error{
		"Dial": func(opts ...Option) error {
			c, err := Dial("127.0.0.1:1", opts...)
			if err == nil {
				c.Close()
			}
			return err
		},
		"NewClient": func(opts ...Option) error {
			c, err := NewClient("127.0.0.1:1", opts...)
			if err == nil {
				c.Close()
			}
			return err
		},
		"Listen": func(opts ...Option) error {
			ln, err := Listen("127.0.0.1:0", opts...)
			if err == nil {
				ln.Close()
			}
			return err
		},
	}
	cases := []struct {
		name  string
		opt   Option
		users []string
	}{
		{"WithConns", WithConns(2), []string{"NewClient"}},
		{"WithAutoExpire", WithAutoExpire(time.Minute), []string{"NewClient"}},
		{"WithScavengeTTL", WithScavengeTTL(time.Minute), []string{"NewClient"}},
		{"WithDialTimeout", WithDialTimeout(time.Second), []string{"Dial", "NewClient"}},
		{"WithMaxSessions", WithMaxSessions(8), []string{"Listen"}},
		{"WithAcceptTimeout", WithAcceptTimeout(time.Second), []string{"Listen"}},
	}
	for _, tc := range cases {
		for call, do := range calls {
			used := false
			for _, u := range tc.users {
				used = used || u == call
			}
			if used {
				continue
			}
			// Valid options first, so that only the misplaced one can fail.
			err := do(WithKey("k"), tc.opt, WithMTU(1200))
			var oe *OptionError
			if !errors.Is(err, ErrInvalidOption) || !errors.As(err, &oe) {
				t.Errorf("%s with %s: %v, want an OptionError matching ErrInvalidOption", call, tc.name, err)
				continue
			}
			if oe.Option != tc.name || oe.Call != call {
				t.Errorf("%s with %s: OptionError names option %q and call %q", call, tc.name, oe.Option, oe.Call)
			}
			msg := err.Error()
			for _, want := range append([]string{tc.name, "for " + call}, tc.users...) {
				if !strings.Contains(msg, want) {
					t.Errorf("%s with %s: %q does not say %q", call, tc.name, msg, want)
				}
			}
		}
	}
	err := calls["Dial"](WithConns(4))
	if want := "kcptun: invalid option WithConns for Dial: only NewClient uses it"; err == nil || err.Error() != want {
		t.Errorf("Dial with WithConns: %v, want %q", err, want)
	}
}

// TestOptionForItsCall gives each option that only some calls use to those
// calls, which must take it, and checks that it took effect.
func TestOptionForItsCall(t *testing.T) {
	ln, err := Listen("127.0.0.1:0", WithMaxSessions(8), WithAcceptTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if ln.cfg.maxSessions != 8 || ln.cfg.acceptTO != 5*time.Second {
		t.Errorf("Listen: maxSessions %d, accept timeout %v", ln.cfg.maxSessions, ln.cfg.acceptTO)
	}
	startEcho(t, ln)

	cl, err := NewClient(ln.Addr().String(), WithConns(2), WithAutoExpire(time.Hour),
		WithScavengeTTL(time.Minute), WithDialTimeout(testTimeout))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if c := cl.cfg; c.conns != 2 || c.autoExpire != time.Hour || c.scavengeTTL != time.Minute || c.dialTimeout != testTimeout {
		t.Errorf("NewClient: conns %d, autoexpire %v, scavenge TTL %v, dial timeout %v",
			c.conns, c.autoExpire, c.scavengeTTL, c.dialTimeout)
	}

	c, err := Dial(ln.Addr().String(), WithDialTimeout(testTimeout))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoRoundTrip(t, c, []byte("dial timeout taken"))
}

// TestSentinelText checks that the sentinel errors say what their names say.
func TestSentinelText(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{ErrSessionClosed, "session closed"},
		{ErrNoResponse, "no response"},
		{ErrInvalidOption, "invalid option"},
	} {
		if !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%q does not say %q", tc.err, tc.want)
		}
	}
}

// TestSmuxBufferDefaults checks the smux buffers each configuration gets:
// the adaptive ones without options, the binaries' with adaptation off,
// and exactly what WithSmuxBuffer gives either way.
func TestSmuxBufferDefaults(t *testing.T) {
	cases := []struct {
		name            string
		opts            []Option
		session, stream int
	}{
		{"default", nil, AdaptiveSmuxBuffer, AdaptiveStreamBuffer},
		{"adaptation off", []Option{WithAdaptive(false)}, DefaultSmuxBuffer, DefaultStreamBuffer},
		{"pinned", []Option{WithSmuxBuffer(1<<20, 1<<19)}, 1 << 20, 1 << 19},
		{"pinned, adaptation off", []Option{WithAdaptive(false), WithSmuxBuffer(1<<22, 1<<22)}, 1 << 22, 1 << 22},
	}
	for _, tc := range cases {
		for _, e := range []entry{entryDial, entryClient, entryListen} {
			c, err := newConfig(e, tc.opts)
			if err != nil {
				t.Fatalf("%s, %v: %v", tc.name, e, err)
			}
			if c.smuxBuf != tc.session || c.streamBuf != tc.stream {
				t.Errorf("%s, %v: buffers %d, %d; want %d, %d", tc.name, e, c.smuxBuf, c.streamBuf, tc.session, tc.stream)
			}
			if sc := c.smuxConfig(); sc.MaxReceiveBuffer != tc.session || sc.MaxStreamBuffer != tc.stream {
				t.Errorf("%s, %v: smux config %d, %d; want %d, %d", tc.name, e, sc.MaxReceiveBuffer, sc.MaxStreamBuffer, tc.session, tc.stream)
			}
		}
	}
}
