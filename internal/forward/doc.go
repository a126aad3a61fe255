// Package forward holds what the two forwarding programs, examples/client
// and examples/server, share: the table of command-line flags and JSON
// configuration keys with their defaults and their mapping onto the SDK's
// options (config.go), the copy loop that joins a TCP connection to a
// stream (pipe.go), local addresses that may be unix socket paths
// (addr.go), and the process set-up around them: logging, SNMP counters,
// profiling and version reporting (app.go).
//
// The flags, their spellings and their defaults are those of the classic
// kcptun binaries (see docs/wire.md), so existing command lines and JSON files
// keep working.
package forward
