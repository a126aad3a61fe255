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
	"syscall"
	"time"

	"github.com/seed-fc8f924e/kcptun"
	"github.com/seed-fc8f924e/kcptun/internal/crypt"
)

// ShutdownTimeout is how long a program lets open connections finish after
// SIGINT or SIGTERM before it closes them.
const ShutdownTimeout = 5 * time.Second

// PprofAddr returns where --pprof serves net/http/pprof: loopback only,
// port 6060 for the client and 6061 for the server, so that both programs
// can profile on one host.
func PprofAddr(role Role) string {
	if role == Server {
		return "127.0.0.1:6061"
	}
	return "127.0.0.1:6060"
}

// version is set at link time with
// -ldflags "-X github.com/seed-fc8f924e/kcptun/internal/forward.version=v1.2.3".
var version string

// Version returns the program's version: the link-time version if set,
// else the module version and VCS revision recorded in the build.
func Version() string {
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

// App is what both programs set up around forwarding: the logger, the
// SNMP CSV log, the SIGUSR1 handler and the pprof server. Close stops all
// of them.
type App struct {
	Name   string       // program name used in log lines
	Config *Config      // the parsed settings
	Log    *slog.Logger // where everything is logged, --log or stderr

	logFile *os.File
	usr1    chan os.Signal // SIGUSR1, caught from NewApp on; nil where there is none
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	pprof   *http.Server
}

// NewApp opens the log (cfg.Log, or stderr) for the program name and
// starts catching SIGUSR1. Call Start once the program is listening, and
// Close before exiting.
func NewApp(name string, cfg *Config, stderr io.Writer) (*App, error) {
	a := &App{Name: name, Config: cfg}
	w := stderr
	if cfg.Log != "" {
		f, err := os.OpenFile(cfg.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, fmt.Errorf("--log: %w", err)
		}
		a.logFile = f
		w = f
	}
	a.Log = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a.ctx, a.cancel = context.WithCancel(context.Background())
	// Catch SIGUSR1 at once: its default action would end the process.
	a.usr1 = notifyUSR1()
	return a, nil
}

// LogStart logs the version and the effective settings (never the key),
// and warns about the default key and about ciphers that do not
// authenticate packets or do not hide the payload.
func (a *App) LogStart() {
	c := a.Config
	a.Log.Info(a.Name+" starting", "version", Version())
	a.Log.Info("settings", c.Settings()...)
	if c.Key == kcptun.DefaultKey {
		a.Log.Warn("using the default key: anyone can talk to this tunnel; set --key (or " + KeyEnv + ") to the same secret on both ends")
	}
	switch {
	case !crypt.Confidential(c.Crypt):
		a.Log.Warn("cipher does not hide the payload: anyone on the path can read it", "crypt", c.Crypt)
	case !crypt.Authenticated(c.Crypt):
		a.Log.Warn("cipher does not authenticate packets (only aes-128-gcm does): forged packets are caught by a CRC only", "crypt", c.Crypt)
	}
}

// Start starts what runs beside forwarding, as the settings ask: the SNMP
// CSV log (--snmplog), the SIGUSR1 handler that logs the counters, and the
// pprof server (--pprof).
func (a *App) Start() {
	c := a.Config
	if c.SNMPLog != "" {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			err := kcptun.LogSNMP(a.ctx, c.SNMPLog, time.Duration(c.SNMPPeriod)*time.Second)
			if err != nil && !errors.Is(err, context.Canceled) {
				a.Log.Warn("snmp log stopped", "file", c.SNMPLog, "err", err)
			}
		}()
	}
	if a.usr1 != nil {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			for {
				select {
				case <-a.usr1:
					a.LogSNMP()
				case <-a.ctx.Done():
					return
				}
			}
		}()
	}
	if c.Pprof {
		a.startPprof()
	}
}

// LogSNMP logs the SDK's counters on one line, as SIGUSR1 does.
func (a *App) LogSNMP() {
	h, r := kcptun.Header(), kcptun.ReadSNMP().Row()
	attrs := make([]any, 0, len(h)-1)
	for i := 1; i < len(h) && i < len(r); i++ { // skip the Unix time column
		attrs = append(attrs, slog.String(h[i], r[i]))
	}
	a.Log.Info("snmp", attrs...)
}

func (a *App) startPprof() {
	addr := PprofAddr(a.Config.Role)
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
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.pprof.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.Log.Warn("pprof stopped", "err", err)
		}
	}()
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

// Fail writes err to w as the program's single error line, e.g.
// "client: invalid --mtu 20: want 48..1500 with this cipher and FEC".
func Fail(w io.Writer, name string, err error) {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	fmt.Fprintf(w, "%s: %s\n", name, msg)
}

// Boot does what both programs do first: it parses the command line of a
// program of the given role, answers -h and -v, starts listening for SIGINT
// and SIGTERM on sigs, and builds the App. When app is nil the program exits
// with code at once; otherwise the caller must signal.Stop(sigs) and Close
// the app when it ends.
func Boot(role Role, name string, args []string, stdout, stderr io.Writer, sigs chan<- os.Signal) (app *App, code int) {
	cfg, err := Parse(role, args, os.Getenv)
	switch {
	case errors.Is(err, flag.ErrHelp):
		Usage(stdout, role, name)
		return nil, 0
	case err != nil:
		Fail(stderr, name, err)
		return nil, 2
	case cfg.Version:
		fmt.Fprintf(stdout, "kcptun %s %s\n", name, Version())
		return nil, 0
	}
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	app, err = NewApp(name, cfg, stderr)
	if err != nil {
		signal.Stop(sigs)
		Fail(stderr, name, err)
		return nil, 2
	}
	return app, 0
}
