// Package forward holds what the two forwarding programs, examples/client
// and examples/server, share and what has nothing to do with forwarding
// itself: the table of command-line flags and JSON configuration keys with
// their defaults and their mapping onto the SDK's options (config.go), and
// the process set-up around the forwarding: -h and -v, the log, the SNMP
// counters (--snmplog, SIGUSR1), profiling (--pprof) and the start-up lines
// (app.go). The forwarding itself (listen, accept, dial, kcptun.Pipe, the
// graceful shutdown) is written out in each program's main.go, on the SDK's
// public API only.
//
// The flags, their spellings and their defaults are those of the classic
// kcptun binaries (see docs/wire.md), so existing command lines and JSON files
// keep working.
package forward
