package kcptun

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/seed-fc8f924e/kcptun/internal/packet"
)

// SessionStats are the counters of one KCP session, kept by the SDK's packet
// layer, which sees every datagram and every plaintext KCP segment of the
// session both ways. Counters run from the session's start.
type SessionStats struct {
	// Remote is the peer's UDP address now: after a migration, the new one.
	Remote net.Addr
	// Conv is the KCP conversation id.
	Conv uint32
	// Created is when the session was opened or accepted.
	Created time.Time
	// Streams is how many streams the SDK handed out on the session and
	// that are not closed yet.
	Streams int

	// DatagramsIn and BytesIn count the datagrams received from the peer
	// that authenticated, and their UDP payload bytes.
	DatagramsIn, BytesIn uint64
	// DatagramsOut and BytesOut count the datagrams sent (parity included)
	// and their UDP payload bytes.
	DatagramsOut, BytesOut uint64

	// SegmentsSent counts KCP data (PUSH) segments sent, re-sends included.
	SegmentsSent uint64
	// SegmentsResent counts PUSH segments sent again (an sn sent before).
	SegmentsResent uint64
	// SegmentsResentAgain counts the PUSH segments the SDK sent again by
	// itself because KCP's re-send of them was lost as well (adaptive
	// sessions only; see WithAdaptive). SegmentsResent counts them too.
	SegmentsResentAgain uint64
	// AcksRepeated counts the ACK segments the SDK sent a second and third
	// time, of data that arrived above a hole, so that the loss of one
	// datagram of ACKs does not make the peer re-send what arrived
	// (adaptive sessions only; see WithAdaptive).
	AcksRepeated uint64
	// SegmentsReceived counts KCP segments received, of every command.
	SegmentsReceived uint64
	// AcksReceived counts ACK segments received.
	AcksReceived uint64
	// Unacked is how many PUSH segments sent are not yet cumulatively
	// acknowledged by the peer.
	Unacked uint32

	// RTTSamples counts round-trip samples, one per datagram carrying
	// ACKs, from the send time the ACKs echo (ts).
	RTTSamples uint64
	// RTTLast, RTTMin and RTTMean describe those samples (millisecond
	// resolution; zero before the first).
	RTTLast, RTTMin, RTTMean time.Duration

	// FECGroupsSent counts FEC groups sent complete with their parity, and
	// FECParitySent their parity shards.
	FECGroupsSent, FECParitySent uint64
	// FECParityReceived counts parity shards received.
	FECParityReceived uint64
	// FECRecovered counts data shards rebuilt from parity, in
	// FECGroupsRecovered groups.
	FECRecovered, FECGroupsRecovered uint64
	// FECUnrecoverable counts groups that lost data shards FEC could not
	// rebuild (KCP retransmits them).
	FECUnrecoverable uint64
	// FECShapeChanges counts the times the peer's FEC shape was
	// re-detected.
	FECShapeChanges uint64
	// LossIn estimates the loss rate of the incoming path from the gaps in
	// the FEC sequence numbers: data shards missing / sent, each counted
	// once 1024 later sequence numbers arrived, and only once the peer's
	// FEC shape is known. It is 0 when the peer sends no FEC.
	LossIn float64

	// QueueDrops counts datagrams dropped because a queue of the packet
	// layer was full (the pacing queue, the queue of recovered packets).
	QueueDrops uint64
	// SendErrors counts datagrams the socket refused.
	SendErrors uint64
	// Migrations counts the times a server session moved to a new client
	// address; StaleMoves counts datagrams from another address that were
	// refused because they were not newer than what the session had seen
	// (replays).
	Migrations, StaleMoves uint64
	// PacingRate is the pacing rate in bytes per second (0: unpaced).
	PacingRate uint64

	// Adaptive says an adaptive controller drives the session
	// (WithAdaptive, on by default); Control is then its state.
	Adaptive bool
	// Control is the adaptive controller's state; zero when Adaptive is
	// false.
	Control ControlState
}

// ControlState is the state of a session's adaptive controller.
type ControlState struct {
	// Mode is the phase of the rate model: "startup", "drain", "probe-bw"
	// or "probe-rtt", as in BBR.
	Mode string
	// Bandwidth is the estimated bottleneck rate in bytes per second of
	// KCP data (the largest delivery rate of the last ten round trips);
	// 0 before the first measurement.
	Bandwidth int64
	// MinRTT is the smallest RTT of the last ten seconds, measured from
	// when a packet left the pacing queue; SmoothedRTT is the smoothed
	// RTT. Both are 0 before the first sample.
	MinRTT, SmoothedRTT time.Duration
	// AckHold is how long the windows take the peer to hold an ACK
	// before sending it (KCP acknowledges on its flushes), which they
	// cover beyond the minimum RTT: on a clean path the longest time
	// between two of its ACKs over the last ten round trips, on a path
	// with 4 % loss or more the peer's whole flush interval.
	AckHold time.Duration
	// PacingRate is the rate KCP data is paced at, in bytes per second,
	// and WirePacingRate the same with FEC parity added.
	PacingRate, WirePacingRate int64
	// SendWindow and ReceiveWindow are KCP's windows, in packets.
	SendWindow, ReceiveWindow int
	// InflightLimit is the controller's bound on bytes of KCP data queued
	// or in flight (BBR's congestion window). It is applied through
	// SendWindow, which the packet layer sets after every ACK to the
	// packets KCP has out plus what the limit still allows.
	InflightLimit int64
	// ReceiveRate is the largest rate at which data arrived recently, in
	// bytes per second; it sizes ReceiveWindow.
	ReceiveRate int64
	// DataShards and ParityShards are the FEC shape sent with (0, 0: no
	// FEC).
	DataShards, ParityShards int
	// Loss is the estimated loss rate of the path (0 to 1) that chooses
	// the FEC shape; LossBaseline is the usual loss rate of our packets,
	// which only a jump well above counts as congestion.
	Loss, LossBaseline float64
	// LinkBound says the session's sending fills the link and its largest
	// send window covers the RTT and a re-send: it then sends no FEC
	// whatever the loss, since each parity datagram would take a data
	// datagram's place at the bottleneck where a re-send takes only the
	// lost one's.
	LinkBound bool
	// Rounds counts the round trips measured, CongestionEvents the cuts
	// of the bandwidth estimate, and FECChanges the changes of FEC shape.
	Rounds, CongestionEvents, FECChanges uint64
	// SentPackets and LostPackets count the datagrams with data sent and
	// the segments KCP declared lost (re-sent).
	SentPackets, LostPackets int64
	// WindowPinned and FECPinned say WithWindow or WithFEC fixed those
	// parts.
	WindowPinned, FECPinned bool
}

func sessionStats(p *packet.Peer) SessionStats {
	s := p.Stats().Snapshot()
	st := SessionStats{
		Remote:      p.RemoteAddr(),
		DatagramsIn: s.DatagramsIn, BytesIn: s.BytesIn, DatagramsOut: s.DatagramsOut, BytesOut: s.BytesOut,
		SegmentsSent: s.SegmentsOut, SegmentsResent: s.SegmentsResent, SegmentsResentAgain: s.SegmentsResentAgain, AcksRepeated: s.AcksRepeated, SegmentsReceived: s.SegmentsIn,
		AcksReceived: s.AcksIn, Unacked: s.Unacked, RTTSamples: s.RTTSamples,
		RTTLast: time.Duration(s.RTTLastMs) * time.Millisecond, RTTMin: time.Duration(s.RTTMinMs) * time.Millisecond,
		FECGroupsSent: s.FECGroupsOut, FECParitySent: s.FECParityOut, FECParityReceived: s.FECParityIn,
		FECRecovered: s.FECRecovered, FECGroupsRecovered: s.FECGroupsRecovered, FECUnrecoverable: s.FECUnrecoverable,
		FECShapeChanges: s.FECShapeChanges, QueueDrops: s.QueueDrops, SendErrors: s.SendErrors,
		Migrations: s.Migrations, StaleMoves: s.StaleMoves, PacingRate: p.Rate(),
	}
	if a, ok := p.Adaptive(); ok {
		st.Adaptive = true
		st.Control = ControlState{
			Mode: a.Mode.String(), Bandwidth: a.Bandwidth, MinRTT: a.MinRTT, SmoothedRTT: a.SmoothedRTT, AckHold: a.AckHold,
			PacingRate: a.PacingRate, WirePacingRate: a.WirePacingRate,
			SendWindow: a.SendWindow, ReceiveWindow: a.ReceiveWindow, InflightLimit: a.InflightLimit,
			ReceiveRate: a.ReceiveRate, DataShards: a.DataShards, ParityShards: a.ParityShards,
			Loss: a.Loss, LossBaseline: a.LossBaseline, LinkBound: a.LinkBound, Rounds: a.Rounds,
			CongestionEvents: a.CongestionEvents, FECChanges: a.FECChanges,
			SentPackets: a.SentPackets, LostPackets: a.LostPackets,
			WindowPinned: a.WindowPinned, FECPinned: a.FECPinned,
		}
	}
	if s.RTTSamples > 0 {
		st.RTTMean = time.Duration(s.RTTSumMs/s.RTTSamples) * time.Millisecond
	}
	if s.FECDataExpected > 0 {
		st.LossIn = float64(s.FECDataLost) / float64(s.FECDataExpected)
	}
	return st
}

// stats returns the session's counters; a session the packet layer has not
// bound yet reports its identity only.
func (s *session) stats() SessionStats {
	var st SessionStats
	if s.peer != nil {
		st = sessionStats(s.peer)
	} else {
		st.Remote = s.kcp.RemoteAddr()
	}
	st.Conv = s.kcp.GetConv()
	st.Created = s.created
	st.Streams = int(s.streams.Load())
	return st
}

// LogValue summarises the session on one log line: its peer, age, RTT,
// traffic, re-sends, FEC and, when it adapts, the controller's state and
// what its packet layer re-sent and repeated by itself. The
// forwarding programs log it when a session ends and on SIGUSR1.
func (s SessionStats) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.Any("remote", s.Remote),
		slog.Duration("age", time.Since(s.Created).Round(time.Second)),
		slog.Int("streams", s.Streams),
		slog.Duration("rtt_min", s.RTTMin),
		slog.Duration("rtt_mean", s.RTTMean),
		slog.Uint64("bytes_in", s.BytesIn),
		slog.Uint64("bytes_out", s.BytesOut),
		slog.Uint64("segments_sent", s.SegmentsSent),
		slog.Uint64("segments_resent", s.SegmentsResent),
		slog.Uint64("fec_recovered", s.FECRecovered),
		slog.String("loss_in", fmt.Sprintf("%.2f%%", 100*s.LossIn)),
		slog.Uint64("queue_drops", s.QueueDrops),
	}
	if s.Adaptive {
		c := s.Control
		attrs = append(attrs,
			slog.String("mode", c.Mode),
			slog.String("rate", fmt.Sprintf("%.2fMbit/s", float64(c.Bandwidth)*8/1e6)),
			slog.String("pacing", fmt.Sprintf("%.2fMbit/s", float64(c.WirePacingRate)*8/1e6)),
			slog.String("windows", fmt.Sprintf("%d/%d", c.SendWindow, c.ReceiveWindow)),
			slog.Duration("ack_hold", c.AckHold.Round(100*time.Microsecond)),
			slog.String("fec", fmt.Sprintf("%d+%d", c.DataShards, c.ParityShards)),
			slog.Bool("link_bound", c.LinkBound),
			slog.String("loss", fmt.Sprintf("%.2f%%", 100*c.Loss)),
			slog.Uint64("resent_again", s.SegmentsResentAgain),
			slog.Uint64("acks_repeated", s.AcksRepeated),
		)
	}
	return slog.GroupValue(attrs...)
}
