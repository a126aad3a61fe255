//go:build !race

package kcptun

// The race detector makes sync.Pool drop items on purpose, so the
// allocation counts below hold only without it; CI runs them in its
// non-race pass (go test -run 'Alloc|Batch').

import (
	"bytes"
	"io"
	"testing"
)

// vecDiscard is a transport that takes vectored writes and drops them.
type vecDiscard struct{}

func (vecDiscard) Read([]byte) (int, error)    { return 0, io.EOF }
func (vecDiscard) Write(p []byte) (int, error) { return len(p), nil }
func (vecDiscard) WriteBuffers(v [][]byte) (int, error) {
	n := 0
	for _, b := range v {
		n += len(b)
	}
	return n, nil
}
func (vecDiscard) Close() error { return nil }

// TestCompressedWriteAllocations checks that the snappy framing's writer and
// reader, whose buffers go back to a shared pool after every write and every
// drained chunk so that an idle session holds none, allocate nothing per
// write or read once warm, and hold no buffer once idle.
func TestCompressedWriteAllocations(t *testing.T) {
	c := newCompressedConn(vecDiscard{}, DefaultFrameSize)
	frame := randomBytes(t, DefaultFrameSize)
	hdr := []byte{2, 2, 0, 32, 3, 0, 0, 0}
	v := [][]byte{hdr, frame[:100]}
	write := func() {
		if _, err := c.Write(frame); err != nil {
			t.Fatal(err)
		}
		if _, err := c.WriteBuffers(v); err != nil {
			t.Fatal(err)
		}
	}
	write()
	if a := testing.AllocsPerRun(100, write); a != 0 {
		t.Errorf("%.1f allocations per write", a)
	}
	if c.obuf != nil || c.obufp != nil || c.gatherp != nil {
		t.Error("an idle compressedConn still holds its write buffers")
	}

	// The reader: compressed and raw chunks, read in pieces smaller than
	// a chunk, so that both land in its pooled buffers.
	var wire bufConn
	w := newCompressedConn(&wire, DefaultFrameSize)
	plain := bytes.Repeat([]byte("compressible "), DefaultFrameSize/13)
	for _, p := range [][]byte{plain, frame, plain} {
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	stream := wire.Bytes()
	total := 2*len(plain) + len(frame)
	src := bytes.NewReader(stream)
	z := &snappyReader{r: src}
	piece := make([]byte, 1000)
	read := func() {
		for got := 0; got < total; {
			n, err := z.Read(piece)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
		src.Reset(stream[len(snappyStreamIdentifier):])
	}
	read()
	if a := testing.AllocsPerRun(100, read); a != 0 {
		t.Errorf("%.1f allocations per %d bytes read", a, total)
	}
	if z.decoded != nil {
		t.Error("a drained reader still holds its chunk buffer")
	}
}
