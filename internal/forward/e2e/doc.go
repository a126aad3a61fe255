// Package e2e tests the forwarding programs, examples/client and
// examples/server, as processes: it builds both once, runs them on
// 127.0.0.1 with real sockets, and checks what arrives at a TCP target
// behind them. It also replays the golden wire captures of the classic
// kcptun client against examples/server, and holds BenchmarkForward, which
// measures throughput, peak memory and CPU time of the two processes.
//
// The package has no code outside its tests.
package e2e
