package kcptun

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestCipherDiagnosis dials Listeners with clients that use another cipher:
// the dial fails, no session gets through, and the Listener names the
// client's cipher (or says that none decodes, for another key).
func TestCipherDiagnosis(t *testing.T) {
	cases := []struct {
		server, client string
		clientKey      string
		want           []string
	}{
		{"aes-128-gcm", "aes", "", []string{"uses cipher aes, this end aes-128-gcm", "releases before 2025-12 take aes-128-gcm as aes"}},
		{"null", "aes", "", []string{"uses cipher aes, this end null", "releases before mid-2022 take null as aes"}},
		{"aes", "salsa20", "", []string{"uses cipher salsa20, this end aes"}},
		{"sm4", "aes-128-gcm", "", []string{"uses cipher aes-128-gcm, this end sm4"}},
		{"aes", "null", "", []string{"uses cipher null, this end aes"}},
		{"aes", "aes", "another key", []string{"decode with no other cipher", "another key"}},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s<-%s", tc.server, tc.client), func(t *testing.T) {
			t.Parallel()
			rec := &logRecorder{}
			ln := listenEcho(t, WithCrypt(tc.server), WithLogger(slog.New(rec)))
			key := DefaultKey
			if tc.clientKey != "" {
				key = tc.clientKey
			}
			c, err := Dial(ln.Addr().String(), WithCrypt(tc.client), WithKey(key), WithDialTimeout(4*time.Second))
			if err == nil {
				_ = c.Close()
				t.Fatal("a client with another cipher or key got a stream")
			}
			if !errors.Is(err, ErrNoResponse) {
				t.Fatalf("Dial: %v, want ErrNoResponse", err)
			}
			if n := rec.count(slog.LevelWarn, tc.want...); n != 1 {
				t.Errorf("%d warnings with %q, want 1; log:\n%s", n, strings.Join(tc.want, " ... "), rec.dump())
			}
			if st := ln.Stats(); st.TotalSessions != 0 || st.SmuxV1Sessions+st.SmuxV2Sessions != 0 {
				t.Errorf("Stats %+v: a mismatched session got through", st)
			}
		})
	}
}

func TestDiagnoseCipherRejectsNoise(t *testing.T) {
	pass := make([]byte, 32)
	for i := range 50 {
		d := randomBytes(t, 20+i*7)
		if name, ok := diagnoseCipher(pass, "aes", d); ok {
			t.Fatalf("random %d bytes decode as %s", len(d), name)
		}
	}
}

func TestLogLimiter(t *testing.T) {
	var l logLimiter
	now := time.Now()
	if !l.allow("a", now) || l.allow("a", now.Add(59*time.Second)) || !l.allow("b", now) {
		t.Fatal("want the first event per key, then nothing for a minute")
	}
	if !l.allow("a", now.Add(time.Minute)) {
		t.Fatal("want an event again after a minute")
	}
}

// TestWatchedSocketKeepsSettings checks that the socket wrapper still takes
// the DSCP and buffer sizes kcp-go's listener sets through it.
func TestWatchedSocketKeepsSettings(t *testing.T) {
	rec := &logRecorder{}
	ln := listenEcho(t, WithDSCP(46), WithSockBuf(1<<20), WithLogger(slog.New(rec)))
	if n := rec.count(slog.LevelWarn, "cannot set"); n != 0 {
		t.Fatalf("socket settings refused:\n%s", rec.dump())
	}
	c, err := Dial(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoRoundTrip(t, c, []byte("through the watched socket"))
}
