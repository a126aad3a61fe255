package kcptun

import (
	"bytes"
	"encoding/binary"
	"io"
	"slices"
	"testing"

	"github.com/seed-fc8f924e/kcptun/internal/smuxwire"
)

// frameLog is a transport that records every write as one frame; it has
// nothing to read.
type frameLog struct {
	frames [][]byte
}

func (f *frameLog) Read([]byte) (int, error) { return 0, io.EOF }

func (f *frameLog) Write(p []byte) (int, error) {
	f.frames = append(f.frames, append([]byte(nil), p...))
	return len(p), nil
}

func (f *frameLog) WriteBuffers(v [][]byte) (int, error) {
	return f.Write(bytes.Join(v, nil))
}

func (f *frameLog) Close() error { return nil }

// TestUpdateGuardKeepsUpdatesInOrder checks that a window update whose total
// is below one already sent for its stream is dropped, whether smux hands it
// as one slice or as header and body, and that every other frame, other
// streams' updates and totals that wrapped past 4 GiB pass.
func TestUpdateGuardKeepsUpdatesInOrder(t *testing.T) {
	log := &frameLog{}
	g := newUpdateGuard(log)
	consumedOf := func(f []byte) uint32 { return binary.LittleEndian.Uint32(f[smuxwire.HeaderSize:]) }
	upd := func(sid, consumed uint32, vectored bool) {
		t.Helper()
		f := smuxwire.WindowUpdate(sid, consumed, 1<<20)
		var n int
		var err error
		if vectored {
			n, err = g.WriteBuffers([][]byte{f[:smuxwire.HeaderSize], f[smuxwire.HeaderSize:]})
		} else {
			n, err = g.Write(f[:])
		}
		if n != len(f) || err != nil {
			t.Fatalf("update of stream %d to %d: wrote %d, %v; want %d, nil", sid, consumed, n, err, len(f))
		}
	}
	want := func(step string, totals ...uint32) {
		t.Helper()
		var got []uint32
		for _, f := range log.frames {
			if len(f) == smuxwire.HeaderSize+smuxwire.UpdateSize && f[1] == smuxwire.CmdUPD {
				got = append(got, consumedOf(f))
			}
		}
		if !slices.Equal(got, totals) {
			t.Fatalf("%s: updates sent %v, want %v", step, got, totals)
		}
	}
	upd(3, 100, false)
	upd(3, 200, true)
	upd(3, 150, true) // smux's older update, queued behind the re-sent 200
	upd(3, 200, false)
	want("stream 3", 100, 200, 200)
	upd(5, 50, true) // another stream
	want("stream 5", 100, 200, 200, 50)
	upd(7, 0xFFFFFFF0, false)
	upd(7, 0x10, true) // wrapped: newer
	upd(7, 0xFFFFFF00, false)
	want("wrapped", 100, 200, 200, 50, 0xFFFFFFF0, 0x10)
	g.forget(3)
	upd(3, 1, false) // a new stream that reuses the id
	want("forgotten", 100, 200, 200, 50, 0xFFFFFFF0, 0x10, 1)

	// Other frames pass whole: data, a FIN, version 1 frames.
	before := len(log.frames)
	fin := smuxwire.FIN(smuxwire.Version2, 3)
	data := []byte{smuxwire.Version2, smuxwire.CmdPSH, 8, 0, 3, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}
	_, _ = g.Write(fin[:])
	_, _ = g.WriteBuffers([][]byte{data[:smuxwire.HeaderSize], data[smuxwire.HeaderSize:]})
	_, _ = g.Write([]byte{smuxwire.Version1, smuxwire.CmdNOP, 0, 0, 0, 0, 0, 0})
	if n := len(log.frames) - before; n != 3 || !bytes.Equal(log.frames[before+1], data) {
		t.Fatalf("other frames: %d of 3 passed, data frame %x", n, log.frames[len(log.frames)-2])
	}
}
