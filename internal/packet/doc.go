// Package packet is kcptun's packet layer: everything between a UDP socket
// and kcp-go's KCP state machine.
//
// kcp-go sessions run on a Conn with no cipher and no FEC of their own, so
// they exchange bare KCP segments with it. A Conn seals what they send (FEC
// data and parity shards, then the crypto header: a 16-byte nonce and CRC-32
// enciphered with the block cipher, or AES-GCM) and opens what arrives
// (authentication, Reed-Solomon recovery), byte for byte as kcp-go's own
// packet layer does on the wire. Because it sees every plaintext KCP segment
// both ways, it keeps per-peer counters (Stats), paces each peer's datagrams
// through a bounded queue whose rate can change at run time, changes the FEC
// shape at a group boundary, and, on a server, moves a session whose client
// changed address (when the cipher authenticates).
//
// The package owns no goroutine that runs while a peer is idle: reading
// happens in the goroutine kcp-go runs on the Conn (ReadFrom), sealing and
// sending in kcp-go's packet workers (WriteTo; a process-wide pool, where
// one worker at a time handles a session's datagrams), and a paced queue
// drains from a timer only while it holds datagrams.
package packet
