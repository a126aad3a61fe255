package forward

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seed-fc8f924e/kcptun"
)

func TestSetupExitsEarly(t *testing.T) {
	for _, tc := range []struct {
		args        []string
		code        int
		out, errout string // prefixes of stdout and stderr
	}{
		{[]string{"-h"}, 0, "Usage: server [flags]", ""},
		{[]string{"-v"}, 0, "kcptun server ", ""},
		{[]string{"--mtu", "abc"}, 2, "", `server: invalid value "abc" for flag -mtu`},
		{[]string{"--log", filepath.Join(t.TempDir(), "missing", "x.log")}, 2, "", "server: --log: open "},
	} {
		var out, errout strings.Builder
		app, code := Setup(Server, tc.args, &out, &errout)
		if app != nil {
			app.Close()
			t.Errorf("%v: Setup returned an App", tc.args)
		}
		if code != tc.code || !strings.HasPrefix(out.String(), tc.out) || !strings.HasPrefix(errout.String(), tc.errout) ||
			strings.Count(errout.String(), "\n") > 1 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %d, %q..., %q...",
				tc.args, code, out.String(), errout.String(), tc.code, tc.out, tc.errout)
		}
	}
}

func TestFail(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "x.log")
	var out, errout strings.Builder
	app, code := Setup(Client, []string{"--mtu", "20", "--log", logFile}, &out, &errout)
	if app == nil {
		t.Fatalf("Setup: exit %d, %s", code, errout.String())
	}
	defer app.Close()

	// A bad setting the SDK refuses: one line naming the flag, status 2.
	_, err := kcptun.NewClient(app.Config.Remote, app.Config.Options(nil)...)
	if !errors.Is(err, kcptun.ErrInvalidOption) {
		t.Fatalf("NewClient: %v, want an invalid option", err)
	}
	if code := app.Fail(err); code != 2 || !strings.HasPrefix(errout.String(), "client: invalid --mtu 20: ") ||
		strings.Count(errout.String(), "\n") != 1 {
		t.Errorf("Fail(option error): exit %d, stderr %q", code, errout.String())
	}

	// Anything else: status 1, and the reason on stderr as well as in the log.
	errout.Reset()
	if code := app.Fail(errors.New("listen tcp: address in use")); code != 1 ||
		errout.String() != "client: listen tcp: address in use\n" {
		t.Errorf("Fail(other error): exit %d, stderr %q", code, errout.String())
	}
}
