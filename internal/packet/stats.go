package packet

import "sync/atomic"

// Stats are the counters of one peer (one KCP session). Every field is
// updated atomically by the packet path and may be read at any time without
// a lock; Snapshot copies them.
type Stats struct {
	DatagramsIn  atomic.Uint64 // datagrams received that authenticated
	BytesIn      atomic.Uint64 // their UDP payload bytes
	DatagramsOut atomic.Uint64 // datagrams sent, parity included
	BytesOut     atomic.Uint64 // their UDP payload bytes

	SegmentsOut    atomic.Uint64 // KCP data (PUSH) segments sent, first sends and re-sends
	SegmentsResent atomic.Uint64 // PUSH segments sent again with an sn sent before
	SegmentsIn     atomic.Uint64 // KCP segments received, of any command
	AcksIn         atomic.Uint64 // ACK segments received
	RTTSamples     atomic.Uint64 // RTT samples taken from the ts echoed in ACKs
	RTTLastMs      atomic.Uint64 // the latest sample, in milliseconds
	RTTMinMs       atomic.Uint64 // the smallest sample (0 before the first)
	RTTSumMs       atomic.Uint64 // sum of all samples, for a mean

	// SegmentsResentAgain counts the PUSH segments this end sent again by
	// itself, their re-send by KCP lost as well (an adaptive peer's
	// resendLost); SegmentsResent counts them too.
	SegmentsResentAgain atomic.Uint64
	// AcksRepeated counts the ACK segments this end repeated, of data that
	// arrived above a hole (an adaptive peer's withRepeatedAcks).
	AcksRepeated atomic.Uint64

	FECGroupsOut       atomic.Uint64 // FEC groups completed with parity sent
	FECParityOut       atomic.Uint64 // parity shards sent
	FECParityIn        atomic.Uint64 // parity shards received
	FECRecovered       atomic.Uint64 // data shards rebuilt from parity
	FECGroupsRecovered atomic.Uint64 // groups in which data shards were rebuilt
	FECUnrecoverable   atomic.Uint64 // groups that lost data and could not be rebuilt
	FECDataExpected    atomic.Uint64 // data shards the sender sent, counted once 1024 later seqids arrived (proved shape only)
	FECDataLost        atomic.Uint64 // of those, how many had not arrived by then
	FECShapeChanges    atomic.Uint64 // times the sender's FEC shape was re-detected

	QueueDrops  atomic.Uint64 // datagrams dropped because a queue of ours was full
	Migrations  atomic.Uint64 // times the peer moved to a new address
	StaleMoves  atomic.Uint64 // datagrams from another address refused as not newer
	SendErrors  atomic.Uint64 // datagrams the socket refused to send
	sndNext     atomic.Uint32 // 1 + highest PUSH sn sent
	dataSent    atomic.Uint64 // bytes of PUSH data sent at least once
	rcvUna      atomic.Uint32 // highest una the peer reported
	sentAny     atomic.Bool
	rttMinValid atomic.Bool
}

// Unacked returns how many KCP segments this end has sent that the peer has
// not yet acknowledged cumulatively (its una).
func (s *Stats) Unacked() uint32 {
	d := int32(s.sndNext.Load() - s.rcvUna.Load())
	if d < 0 {
		return 0
	}
	return uint32(d)
}

// DataSent returns how many bytes of KCP data this end has sent at least
// once (re-sends not counted). Once it equals what was written to KCP, KCP
// holds nothing it has not sent.
func (s *Stats) DataSent() uint64 { return s.dataSent.Load() }

// Snapshot is a copy of Stats at one moment.
type Snapshot struct {
	DatagramsIn, BytesIn, DatagramsOut, BytesOut          uint64
	SegmentsOut, SegmentsResent, SegmentsIn, AcksIn       uint64
	RTTSamples, RTTLastMs, RTTMinMs, RTTSumMs             uint64
	FECGroupsOut, FECParityOut, FECParityIn, FECRecovered uint64
	FECGroupsRecovered, FECUnrecoverable                  uint64
	FECDataExpected, FECDataLost, FECShapeChanges         uint64
	QueueDrops, Migrations, StaleMoves, SendErrors        uint64
	SegmentsResentAgain, AcksRepeated                     uint64
	Unacked                                               uint32
}

// Snapshot copies the counters.
func (s *Stats) Snapshot() Snapshot {
	return Snapshot{
		DatagramsIn: s.DatagramsIn.Load(), BytesIn: s.BytesIn.Load(),
		DatagramsOut: s.DatagramsOut.Load(), BytesOut: s.BytesOut.Load(),
		SegmentsOut: s.SegmentsOut.Load(), SegmentsResent: s.SegmentsResent.Load(),
		SegmentsIn: s.SegmentsIn.Load(), AcksIn: s.AcksIn.Load(),
		RTTSamples: s.RTTSamples.Load(), RTTLastMs: s.RTTLastMs.Load(),
		RTTMinMs: s.RTTMinMs.Load(), RTTSumMs: s.RTTSumMs.Load(),
		FECGroupsOut: s.FECGroupsOut.Load(), FECParityOut: s.FECParityOut.Load(),
		FECParityIn: s.FECParityIn.Load(), FECRecovered: s.FECRecovered.Load(),
		FECGroupsRecovered: s.FECGroupsRecovered.Load(), FECUnrecoverable: s.FECUnrecoverable.Load(),
		FECDataExpected: s.FECDataExpected.Load(), FECDataLost: s.FECDataLost.Load(),
		FECShapeChanges: s.FECShapeChanges.Load(),
		QueueDrops:      s.QueueDrops.Load(), Migrations: s.Migrations.Load(),
		StaleMoves: s.StaleMoves.Load(), SendErrors: s.SendErrors.Load(),
		SegmentsResentAgain: s.SegmentsResentAgain.Load(), AcksRepeated: s.AcksRepeated.Load(),
		Unacked: s.Unacked(),
	}
}

// rtt records one RTT sample.
func (s *Stats) rtt(ms uint64) {
	s.RTTSamples.Add(1)
	s.RTTLastMs.Store(ms)
	s.RTTSumMs.Add(ms)
	if !s.rttMinValid.Load() || ms < s.RTTMinMs.Load() {
		s.RTTMinMs.Store(ms)
		s.rttMinValid.Store(true)
	}
}
