package smuxwire_test

import (
	"testing"

	"github.com/seed-fc8f924e/kcptun/internal/smuxwire"
	"github.com/seed-fc8f924e/kcptun/internal/wire"
)

// TestFramesParse checks the frames the SDK writes itself against the
// independent frame decoder of internal/wire.
func TestFramesParse(t *testing.T) {
	nop := smuxwire.NOP(smuxwire.Version1)
	fin := smuxwire.FIN(smuxwire.Version2, 7)
	upd := smuxwire.WindowUpdate(9, 123456, 1<<20)
	var stream []byte
	stream = append(stream, nop[:]...)
	stream = append(stream, fin[:]...)
	stream = append(stream, upd[:]...)
	frames, rest, err := wire.ParseSmuxFrames(stream)
	if err != nil || len(rest) != 0 || len(frames) != 3 {
		t.Fatalf("parsed %d frames, rest %d bytes, err %v; want 3, 0, nil", len(frames), len(rest), err)
	}
	if f := frames[0]; f.Ver != 1 || f.Cmd != smuxwire.CmdNOP || f.SID != 0 || len(f.Data) != 0 {
		t.Errorf("NOP parsed as %+v", f)
	}
	if f := frames[1]; f.Ver != 2 || f.Cmd != smuxwire.CmdFIN || f.SID != 7 || len(f.Data) != 0 {
		t.Errorf("FIN parsed as %+v", f)
	}
	f := frames[2]
	consumed, window, ok := f.Update()
	if f.Ver != 2 || f.SID != 9 || !ok || consumed != 123456 || window != 1<<20 {
		t.Errorf("UPD parsed as %+v: consumed %d window %d ok %v", f, consumed, window, ok)
	}
}

// TestMaxCmd checks which commands each version knows.
func TestMaxCmd(t *testing.T) {
	if smuxwire.MaxCmd(smuxwire.Version1) != smuxwire.CmdNOP || smuxwire.MaxCmd(smuxwire.Version2) != smuxwire.CmdUPD {
		t.Error("version 1 must stop at NOP and version 2 at UPD")
	}
	for v := range 256 {
		if want := v == 1 || v == 2; smuxwire.ValidVersion(byte(v)) != want {
			t.Errorf("ValidVersion(%d) = %v", v, !want)
		}
	}
}
