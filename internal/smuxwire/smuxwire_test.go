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

// TestParseWindowUpdate checks that ParseWindowUpdate reads back what
// WindowUpdate writes and takes no other frame for an update.
func TestParseWindowUpdate(t *testing.T) {
	upd := smuxwire.WindowUpdate(9, 123456, 1<<20)
	hdr, body := upd[:smuxwire.HeaderSize], upd[smuxwire.HeaderSize:]
	if sid, consumed, ok := smuxwire.ParseWindowUpdate(hdr, body); !ok || sid != 9 || consumed != 123456 {
		t.Errorf("parsed stream %d, consumed %d, ok %v; want 9, 123456, true", sid, consumed, ok)
	}
	fin := smuxwire.FIN(smuxwire.Version2, 9)
	v1 := append([]byte(nil), hdr...)
	v1[0] = smuxwire.Version1
	for name, f := range map[string][2][]byte{
		"FIN":          {fin[:], body},
		"version 1":    {v1, body},
		"short body":   {hdr, body[:4]},
		"short header": {hdr[:4], body},
	} {
		if _, _, ok := smuxwire.ParseWindowUpdate(f[0], f[1]); ok {
			t.Errorf("%s taken for a window update", name)
		}
	}
}
