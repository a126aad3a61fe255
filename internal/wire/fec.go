package wire

import (
	"encoding/binary"
	"fmt"
)

// Values of the FEC flag field.
const (
	// FECData marks a data shard: the size field, then KCP bytes.
	FECData uint16 = 0xf1
	// FECParity marks a Reed-Solomon parity shard.
	FECParity uint16 = 0xf2
)

// FECHeaderSize is the size of the FEC header: seqid, flag and size.
const FECHeaderSize = 8

// FECHeader is the header kcp-go puts in front of each datagram when FEC is
// on (data and parity shards both greater than zero).
type FECHeader struct {
	// SeqID numbers shards across groups: with d data and p parity shards,
	// SeqID%(d+p) < d for data shards and the rest are parity.
	SeqID uint32
	// Flag is FECData or FECParity.
	Flag uint16
	// Size, on a data shard, is 2 + the number of KCP bytes that follow.
	// On a parity shard it is the first two parity bytes: Reed-Solomon runs
	// over each data shard from the size field on.
	Size uint16
}

// IsFEC reports whether h is a data or parity shard.
func (h FECHeader) IsFEC() bool { return h.Flag == FECData || h.Flag == FECParity }

// ParseFEC parses the FEC header at the start of p and returns it with the
// bytes that follow it (p[FECHeaderSize:]): the KCP bytes of a data shard, or
// the rest of a parity shard. The Reed-Solomon shard is p[6:], size field
// included.
//
// It fails with ErrShort when p is shorter than FECHeaderSize and with
// ErrNotFEC (returning the parsed header) when the flag is not FECData or
// FECParity, as for a KCP packet sent without FEC. It does not check Size
// against the length of p; kcp-go does not either.
func ParseFEC(p []byte) (FECHeader, []byte, error) {
	if len(p) < FECHeaderSize {
		return FECHeader{}, nil, fmt.Errorf("%w: %d bytes, FEC header needs %d", ErrShort, len(p), FECHeaderSize)
	}
	h := FECHeader{
		SeqID: binary.LittleEndian.Uint32(p),
		Flag:  binary.LittleEndian.Uint16(p[4:]),
		Size:  binary.LittleEndian.Uint16(p[6:]),
	}
	if !h.IsFEC() {
		return h, nil, fmt.Errorf("%w: flag %#04x", ErrNotFEC, h.Flag)
	}
	return h, p[FECHeaderSize:], nil
}
