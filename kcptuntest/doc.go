// Package kcptuntest provides a userspace UDP link emulator for tests and
// benchmarks of KCP-over-UDP tunnels, in the spirit of net/http/httptest.
//
// A Relay stands between UDP clients and a target UDP server. Clients send
// to Relay.Addr instead of to the server. For every client source address
// the relay opens an upstream socket of its own and forwards that client's
// datagrams to the target from it, so the target sees one distinct source
// address per client, as kcp-go servers expect: they key sessions by source
// address. Whatever the target sends back to an upstream socket goes back to
// the client that owns it, from the relay's listening address.
//
//	relay, err := kcptuntest.NewRelay(serverAddr, kcptuntest.Config{
//		Up:   kcptuntest.Link{Loss: 0.05, Delay: 20 * time.Millisecond},
//		Down: kcptuntest.Link{Loss: 0.05, Delay: 20 * time.Millisecond},
//		Seed: 1,
//	})
//	if err != nil { ... }
//	defer relay.Close()
//	// point the client at relay.Addr() instead of serverAddr
//
// The two directions are impaired independently: Config.Up for datagrams
// from a client to the target, Config.Down for datagrams from the target to
// a client. The zero Link is a perfect link, and Relay.SetLinks changes the
// links of a running relay, for instance to 100 % loss and back to emulate a
// path that dies and comes back. Relay.Rebind moves every client to a new
// upstream port, as a NAT that rebinds does.
//
// # Model
//
// Each direction is a pipeline. Every datagram entering it goes through
// these stages in this order:
//
//  1. Loss. The datagram is dropped with probability Link.Loss, each
//     datagram independently, or, when Link.Burst is set, according to a
//     two-state Gilbert-Elliott chain that makes losses come in bursts.
//  2. Duplication. With probability Link.Duplicate the datagram is copied.
//     The original and the copy go through the remaining stages one after
//     the other, independently.
//  3. Bandwidth. When Link.Bandwidth is set, each copy is serialised at
//     that many bits per second through a drop-tail FIFO holding at most
//     Link.QueueBytes bytes; a copy that does not fit is dropped. A copy
//     leaves this stage when its last bit has been transmitted. When
//     Link.Shared is set, its Bottleneck replaces Bandwidth and QueueBytes,
//     and the copies of every direction sharing it wait in its one queue.
//  4. Delay and jitter. A copy is then delayed by Link.Delay plus a value
//     drawn uniformly from [-Link.Jitter, +Link.Jitter], clamped at zero.
//     As with Linux netem, jitter larger than the spacing of datagrams
//     reorders them.
//  5. Reordering. With probability Link.Reorder a copy is held back until
//     Link.ReorderDistance later copies of the same direction have been
//     scheduled (default 1), and is delivered right after the last of them,
//     so that they overtake it. A held copy that does not see that many
//     successors within ReorderTimeout of its normal delivery time is
//     delivered then, unreordered.
//
// Delivery means writing the datagram to the next hop's socket; what the
// kernel does with it afterwards is not the relay's concern. Counts of what
// happened at each stage are in Relay.Stats.
//
// # Randomness
//
// All random choices come from math/rand/v2 PCG generators seeded from
// Config.Seed. Each direction, and within it each stage (loss, duplication,
// jitter, reordering), has a generator of its own. Whatever the settings,
// and whatever becomes of a datagram afterwards, the loss and duplication
// generators draw the same number of values for every datagram, and the
// jitter and reordering generators for every copy, so the loss decision for
// the i-th datagram of a direction depends only on the seed, the direction
// and the loss settings: not on timing, on the other impairments, or on the
// other direction's traffic. The same seed and
// settings give the same set of dropped datagrams, and for a given seed a
// higher Loss drops a superset of the datagrams a lower one drops. With
// several clients the order in which their datagrams reach the relay, and
// so which of them gets which decision, is up to the operating system.
//
// # Implementation and limits
//
// The relay runs one goroutine reading its listening socket, one per
// upstream socket, and one scheduler per direction that keeps the datagrams
// in flight in a time-ordered heap (container/heap) and sleeps on a single
// timer; no goroutine or timer is started per datagram. A direction whose
// link has no Delay, Jitter, Bandwidth or Reorder forwards each datagram
// straight from the goroutine that read it (the fast path), once any
// datagrams still queued from earlier settings have gone.
//
// On Linux the relay reads and writes datagrams in batches, with
// golang.org/x/net's ipv4 and ipv6 ReadBatch and WriteBatch (recvmmsg and
// sendmmsg), and hands runs of equal-sized datagrams for one destination
// to the kernel as one, with UDP generic segmentation offload, falling
// back to single datagrams on a socket that refuses it. The receiver still
// gets separate datagrams unless it enabled UDP_GRO, in which case it gets
// them coalesced as it asked. Elsewhere, and under the race detector (which
// makes batched reads slow), the relay makes one system call per datagram.
// Every socket asks for 4 MiB send and receive buffers, which the kernel
// may cap (net.core.rmem_max, net.core.wmem_max).
//
// Memory is bounded. Datagram buffers are pooled. The datagrams in flight
// in one direction (bandwidth queue, delay line and held-back datagrams
// together) take at most MaxInFlightBytes of buffer space; a datagram that
// would exceed it is dropped and counted as a queue drop. Read buffers
// take 64 KiB per datagram of a batch, and batches grow only while reads
// fill them: up to 64 datagrams for the listening socket and 16 for each
// upstream socket. At most Config.MaxClients upstream sockets are opened
// (DefaultMaxClients when zero); datagrams from further clients are dropped
// and counted in Stats.DroppedClients. Upstream sockets live until Close:
// there is no idle expiry.
//
// Upstream sockets are connected to the target, so the target must reply
// from the address the relay sends to, as kcp-go servers do; the kernel
// discards datagrams from other sources, as a NAT with port-dependent
// filtering would.
//
// Delays are realised with Go timers, which never fire early but can fire
// late, by up to about a millisecond on an otherwise idle process, so use
// delays of a few milliseconds or more and assert lower bounds on latency.
package kcptuntest
