package forward

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/seed-fc8f924e/kcptun"
	"github.com/seed-fc8f924e/kcptun/internal/crypt"
)

// App is what both programs run beside forwarding: the parsed settings, the
// log (--log or stderr), the SNMP CSV log (--snmplog), the SIGUSR1 handler
// that logs the counters, and the pprof server (--pprof).
type App struct {
	Config *Config      // the parsed settings
	Log    *slog.Logger // where everything is logged, --log or stderr
	// Sessions, when set before Start, returns the program's open KCP
	// sessions; SIGUSR1 logs one line for each after the counters.
	Sessions func() []kcptun.SessionStats

	stderr  io.Writer
	logFile *os.File
	usr1    chan os.Signal // SIGUSR1, caught from Setup on; nil where there is none
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup // every goroutine Start started
	pprof   *http.Server
}

// Setup parses args, the command line of role's program without the program
// name, answers -h and -v, opens the log and starts catching SIGUSR1. When
// it returns a nil App the program exits at once with status code (0 after
// -h or -v, 2 after a bad flag, reported in one line on stderr); otherwise
// the program calls Start once it is ready and Close before exiting.
func Setup(role Role, args []string, stdout, stderr io.Writer) (app *App, code int) {
	cfg, err := parse(role, args, os.Getenv)
	switch {
	case errors.Is(err, flag.ErrHelp):
		usage(stdout, role)
		return nil, 0
	case err != nil:
		fmt.Fprintf(stderr, "%s: %s\n", role, oneLine(err))
		return nil, 2
	case cfg.Version:
		fmt.Fprintf(stdout, "kcptun %s %s\n", role, programVersion())
		return nil, 0
	}
	a := &App{Config: cfg, stderr: stderr}
	w := stderr
	if cfg.Log != "" {
		f, err := os.OpenFile(cfg.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			fmt.Fprintf(stderr, "%s: --log: %s\n", role, oneLine(err))
			return nil, 2
		}
		a.logFile = f
		w = f
	}
	a.Log = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a.ctx, a.cancel = context.WithCancel(context.Background())
	// Catch SIGUSR1 at once: its default action would end the process.
	a.usr1 = notifyUSR1()
	return a, 0
}

// Fail reports err, the reason the program cannot start, and returns the
// exit status: 2 for a bad setting, reported as one line on stderr that
// names the flags at fault; 1 for anything else, logged and reported on
// stderr.
func (a *App) Fail(err error) int {
	role := a.Config.Role
	if errors.Is(err, kcptun.ErrInvalidOption) {
		fmt.Fprintf(a.stderr, "%s: %s\n", role, oneLine(a.Config.optionError(err)))
		return 2
	}
	a.Log.Error("cannot start", "err", err)
	if a.logFile != nil {
		fmt.Fprintf(a.stderr, "%s: %s\n", role, oneLine(err))
	}
	return 1
}

// oneLine returns err's message on one line.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

// Start logs the version and the effective settings (never the key), warns
// about the default key and about ciphers that do not authenticate packets
// or do not hide the payload, and starts what the settings ask for: the SNMP
// CSV log, the SIGUSR1 handler and the pprof server.
func (a *App) Start() {
	c := a.Config
	a.Log.Info(c.Role.String()+" starting", "version", programVersion())
	a.Log.Info("settings", c.logAttrs()...)
	if c.Key == kcptun.DefaultKey {
		a.Log.Warn("using the default key: anyone can talk to this tunnel; set --key (or " + keyEnv + ") to the same secret on both ends")
	}
	switch {
	case !crypt.Confidential(c.Crypt):
		a.Log.Warn("cipher does not hide the payload: anyone on the path can read it", "crypt", c.Crypt)
	case !crypt.Authenticated(c.Crypt):
		a.Log.Warn("cipher does not authenticate packets (only aes-128-gcm does): forged packets are caught by a CRC only", "crypt", c.Crypt)
	}
	if c.SNMPLog != "" {
		a.wg.Go(func() {
			err := kcptun.LogSNMP(a.ctx, c.SNMPLog, time.Duration(c.SNMPPeriod)*time.Second)
			if err != nil && !errors.Is(err, context.Canceled) {
				a.Log.Warn("snmp log stopped", "file", c.SNMPLog, "err", err)
			}
		})
	}
	if a.usr1 != nil {
		a.wg.Go(func() {
			for {
				select {
				case <-a.usr1:
					a.logSNMP()
				case <-a.ctx.Done():
					return
				}
			}
		})
	}
	if c.Pprof {
		a.startPprof()
	}
}

// logSNMP logs the SDK's counters on one line, as SIGUSR1 asks, then a
// line for each open session when the program said how to list them.
func (a *App) logSNMP() {
	h, r := kcptun.Header(), kcptun.ReadSNMP().Row()
	attrs := make([]any, 0, len(h)-1)
	for i := 1; i < len(h) && i < len(r); i++ { // skip the Unix time column
		attrs = append(attrs, slog.String(h[i], r[i]))
	}
	a.Log.Info("snmp", attrs...)
	if a.Sessions != nil {
		for _, st := range a.Sessions() {
			a.Log.Info("session", "session", st)
		}
	}
}

// pprofAddr returns where --pprof serves net/http/pprof: loopback only,
// port 6060 for the client and 6061 for the server, so that both programs
// can profile on one host.
func pprofAddr(role Role) string {
	if role == Server {
		return "127.0.0.1:6061"
	}
	return "127.0.0.1:6060"
}

func (a *App) startPprof() {
	addr := pprofAddr(a.Config.Role)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		a.Log.Warn("pprof not started", "err", err)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	a.pprof = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	a.Log.Info("pprof serving", "url", "http://"+addr+"/debug/pprof/")
	a.wg.Go(func() {
		if err := a.pprof.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.Log.Warn("pprof stopped", "err", err)
		}
	})
}

// Close stops what Start started, waits for it, and closes the log file.
func (a *App) Close() {
	a.cancel()
	if a.usr1 != nil {
		signal.Stop(a.usr1)
	}
	if a.pprof != nil {
		_ = a.pprof.Close()
	}
	a.wg.Wait()
	if a.logFile != nil {
		_ = a.logFile.Close()
	}
}

// version is set at link time with
// -ldflags "-X github.com/seed-fc8f924e/kcptun/internal/forward.version=v1.2.3".
var version string

// programVersion returns the program's version: the link-time version if
// set, else the module version and VCS revision recorded in the build.
func programVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v += " " + rev + dirty
	}
	return v + " " + bi.GoVersion
}
