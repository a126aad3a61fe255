package kcptun

import (
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/seed-fc8f924e/kcptun/internal/packet"
)

// SNMP is a snapshot of the process-wide counters, the figures the kcptun
// binaries log. Most fields count since the process started; the gauges
// (MaxConn, CurrEstab, FECShardSet, FECShardMin and the RingBuffer fields)
// are current values.
//
// The KCP figures (sessions, segments, retransmissions, bytes of the layer
// above KCP, the RingBuffer gauges) come from kcp-go. The datagram figures
// (InPkts, OutPkts, InBytes, OutBytes), InCsumErrors and the FEC counters
// come from the SDK's packet layer, which does the cipher and FEC (kcp-go
// only sees bare KCP packets): they sum the per-session counters of
// SessionStats over the process. FECShardSet and FECShardMin are always 0.
type SNMP struct {
	BytesSent           uint64 // bytes written by the layer above KCP
	BytesReceived       uint64 // bytes read by the layer above KCP
	MaxConn             uint64 // most sessions open at once (gauge)
	ActiveOpens         uint64 // client sessions opened
	PassiveOpens        uint64 // server sessions accepted
	CurrEstab           uint64 // sessions open now (gauge)
	InErrs              uint64 // UDP read errors and datagrams from a wrong source
	InCsumErrors        uint64 // datagrams that failed the checksum or authentication
	KCPInErrors         uint64 // datagrams KCP rejected
	InPkts              uint64 // datagrams received
	OutPkts             uint64 // datagrams sent
	InSegs              uint64 // KCP segments received
	OutSegs             uint64 // KCP segments sent
	InBytes             uint64 // UDP payload bytes received
	OutBytes            uint64 // UDP payload bytes sent
	RetransSegs         uint64 // segments retransmitted
	FastRetransSegs     uint64 // segments fast-retransmitted
	EarlyRetransSegs    uint64 // segments early-retransmitted
	LostSegs            uint64 // segments deemed lost
	RepeatSegs          uint64 // duplicate segments received
	FECFullShardSet     uint64 // FEC groups received complete
	FECParityShards     uint64 // FEC parity shards received
	FECErrs             uint64 // FEC recoveries that failed
	FECRecovered        uint64 // datagrams recovered by FEC
	FECShardSet         uint64 // FEC groups still incomplete (gauge)
	FECShardMin         uint64 // lowest shard id among open FEC groups (gauge)
	RingBufferSndQueue  uint64 // segments in send queues (gauge)
	RingBufferRcvQueue  uint64 // segments in receive queues (gauge)
	RingBufferSndBuffer uint64 // segments in send buffers (gauge)
	OOBPackets          uint64 // out-of-band datagrams received
}

// snmpField names one SNMP field and tells whether it is a gauge.
type snmpField struct {
	name  string
	gauge bool
	get   func(*SNMP) *uint64
}

var snmpFields = []snmpField{
	{"BytesSent", false, func(s *SNMP) *uint64 { return &s.BytesSent }},
	{"BytesReceived", false, func(s *SNMP) *uint64 { return &s.BytesReceived }},
	{"MaxConn", true, func(s *SNMP) *uint64 { return &s.MaxConn }},
	{"ActiveOpens", false, func(s *SNMP) *uint64 { return &s.ActiveOpens }},
	{"PassiveOpens", false, func(s *SNMP) *uint64 { return &s.PassiveOpens }},
	{"CurrEstab", true, func(s *SNMP) *uint64 { return &s.CurrEstab }},
	{"InErrs", false, func(s *SNMP) *uint64 { return &s.InErrs }},
	{"InCsumErrors", false, func(s *SNMP) *uint64 { return &s.InCsumErrors }},
	{"KCPInErrors", false, func(s *SNMP) *uint64 { return &s.KCPInErrors }},
	{"InPkts", false, func(s *SNMP) *uint64 { return &s.InPkts }},
	{"OutPkts", false, func(s *SNMP) *uint64 { return &s.OutPkts }},
	{"InSegs", false, func(s *SNMP) *uint64 { return &s.InSegs }},
	{"OutSegs", false, func(s *SNMP) *uint64 { return &s.OutSegs }},
	{"InBytes", false, func(s *SNMP) *uint64 { return &s.InBytes }},
	{"OutBytes", false, func(s *SNMP) *uint64 { return &s.OutBytes }},
	{"RetransSegs", false, func(s *SNMP) *uint64 { return &s.RetransSegs }},
	{"FastRetransSegs", false, func(s *SNMP) *uint64 { return &s.FastRetransSegs }},
	{"EarlyRetransSegs", false, func(s *SNMP) *uint64 { return &s.EarlyRetransSegs }},
	{"LostSegs", false, func(s *SNMP) *uint64 { return &s.LostSegs }},
	{"RepeatSegs", false, func(s *SNMP) *uint64 { return &s.RepeatSegs }},
	{"FECFullShardSet", false, func(s *SNMP) *uint64 { return &s.FECFullShardSet }},
	{"FECParityShards", false, func(s *SNMP) *uint64 { return &s.FECParityShards }},
	{"FECErrs", false, func(s *SNMP) *uint64 { return &s.FECErrs }},
	{"FECRecovered", false, func(s *SNMP) *uint64 { return &s.FECRecovered }},
	{"FECShardSet", true, func(s *SNMP) *uint64 { return &s.FECShardSet }},
	{"FECShardMin", true, func(s *SNMP) *uint64 { return &s.FECShardMin }},
	{"RingBufferSndQueue", true, func(s *SNMP) *uint64 { return &s.RingBufferSndQueue }},
	{"RingBufferRcvQueue", true, func(s *SNMP) *uint64 { return &s.RingBufferRcvQueue }},
	{"RingBufferSndBuffer", true, func(s *SNMP) *uint64 { return &s.RingBufferSndBuffer }},
	{"OOBPackets", false, func(s *SNMP) *uint64 { return &s.OOBPackets }},
}

// ReadSNMP returns the current values of the process-wide counters. The counters are
// never reset (kcp-go's Reset would wrap the CurrEstab gauge below zero); use
// Sub for the change over an interval.
func ReadSNMP() SNMP {
	k := kcp.DefaultSnmp.Copy()
	p := packet.ProcessTotals()
	k.InPkts, k.OutPkts, k.InBytes, k.OutBytes = p.InPkts, p.OutPkts, p.InBytes, p.OutBytes
	k.InCsumErrors = p.AuthFailures
	k.FECParityShards, k.FECRecovered, k.FECErrs, k.FECFullShardSet = p.FECParityIn, p.FECRecovered, p.FECUnrecoverable, p.FECFullGroups
	k.FECShardSet, k.FECShardMin = 0, 0
	k.InSegs -= min(p.TimeoutHints, k.InSegs) // segments of ours, not the peer's
	return SNMP{
		BytesSent: k.BytesSent, BytesReceived: k.BytesReceived, MaxConn: k.MaxConn,
		ActiveOpens: k.ActiveOpens, PassiveOpens: k.PassiveOpens, CurrEstab: k.CurrEstab,
		InErrs: k.InErrs, InCsumErrors: k.InCsumErrors, KCPInErrors: k.KCPInErrors,
		InPkts: k.InPkts, OutPkts: k.OutPkts, InSegs: k.InSegs, OutSegs: k.OutSegs,
		InBytes: k.InBytes, OutBytes: k.OutBytes, RetransSegs: k.RetransSegs,
		FastRetransSegs: k.FastRetransSegs, EarlyRetransSegs: k.EarlyRetransSegs,
		LostSegs: k.LostSegs, RepeatSegs: k.RepeatSegs, FECFullShardSet: k.FECFullShardSet,
		FECParityShards: k.FECParityShards, FECErrs: k.FECErrs, FECRecovered: k.FECRecovered,
		FECShardSet: k.FECShardSet, FECShardMin: k.FECShardMin,
		RingBufferSndQueue: k.RingBufferSndQueue, RingBufferRcvQueue: k.RingBufferRcvQueue,
		RingBufferSndBuffer: k.RingBufferSndBuffer, OOBPackets: k.OOBPackets,
	}
}

// Sub returns the change of every counter since prev; gauges keep s's value.
func (s SNMP) Sub(prev SNMP) SNMP {
	d := s
	for _, f := range snmpFields {
		if !f.gauge {
			*f.get(&d) -= *f.get(&prev)
		}
	}
	return d
}

// Header returns the CSV column names: "Unix", then every field's name.
func Header() []string {
	h := make([]string, 0, 1+len(snmpFields))
	h = append(h, "Unix")
	for _, f := range snmpFields {
		h = append(h, f.name)
	}
	return h
}

// Row returns s as CSV values matching Header, with the current Unix time first.
func (s SNMP) Row() []string { return s.rowAt(time.Now()) }

func (s SNMP) rowAt(t time.Time) []string {
	r := make([]string, 0, 1+len(snmpFields))
	r = append(r, strconv.FormatInt(t.Unix(), 10))
	for _, f := range snmpFields {
		r = append(r, strconv.FormatUint(*f.get(&s), 10))
	}
	return r
}

// LogSNMP appends a CSV row of ReadSNMP to a file every period until ctx ends,
// as the binaries' --snmplog does. The file's base name is passed through Go's
// time format at each write ("./snmp-20060102.log" starts a new file each day;
// the directory is used as given); a new or empty file gets the Header row first. It returns ctx's error, or the
// first error opening or writing the file.
func LogSNMP(ctx context.Context, path string, period time.Duration) error {
	if period <= 0 {
		return fmt.Errorf("kcptun: snmp log %s: period %v: %w", path, period, ErrInvalidOption)
	}
	dir, base := filepath.Split(path)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-t.C:
			if err := appendSNMPRow(dir+now.Format(base), ReadSNMP().rowAt(now)); err != nil {
				return fmt.Errorf("kcptun: snmp log: %w", err)
			}
		}
	}
}

// appendSNMPRow appends one row to the file name, writing the header first
// when the file is new or empty.
func appendSNMPRow(name string, row []string) error {
	if dir := filepath.Dir(name); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(name, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	if fi, err := f.Stat(); err == nil && fi.Size() == 0 {
		_ = w.Write(Header())
	}
	_ = w.Write(row)
	w.Flush()
	if err := w.Error(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
