package packet

import "sync/atomic"

// totals are process-wide sums of what every Conn counts, for kcptun's
// process-wide SNMP figures, which predate per-session counters. Like the
// shared-socket table, they are package state because the API they serve is
// process-wide.
var totals struct {
	inPkts, outPkts, inBytes, outBytes atomic.Uint64
	authFailures                       atomic.Uint64
	parityIn, recovered, unrecoverable atomic.Uint64
	fullGroups                         atomic.Uint64
	hints                              atomic.Uint64
}

// Totals is a snapshot of the process-wide sums.
type Totals struct {
	InPkts, OutPkts, InBytes, OutBytes uint64 // datagrams and their bytes
	AuthFailures                       uint64 // datagrams that failed authentication
	FECParityIn                        uint64 // parity shards received
	FECRecovered                       uint64 // data shards rebuilt
	FECUnrecoverable                   uint64 // groups that lost data for good
	FECFullGroups                      uint64 // groups that arrived with every data shard
	// TimeoutHints counts the ACK segments timeoutHint added to packets on
	// their way to kcp-go, which kcp-go counts as segments received.
	TimeoutHints uint64
}

// ProcessTotals returns the process-wide sums of every Conn's counters.
func ProcessTotals() Totals {
	return Totals{
		InPkts: totals.inPkts.Load(), OutPkts: totals.outPkts.Load(),
		InBytes: totals.inBytes.Load(), OutBytes: totals.outBytes.Load(),
		AuthFailures:     totals.authFailures.Load(),
		FECParityIn:      totals.parityIn.Load(),
		FECRecovered:     totals.recovered.Load(),
		FECUnrecoverable: totals.unrecoverable.Load(),
		FECFullGroups:    totals.fullGroups.Load(),
		TimeoutHints:     totals.hints.Load(),
	}
}
