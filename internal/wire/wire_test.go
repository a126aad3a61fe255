package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"

	"github.com/golang/snappy"
	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/seed-fc8f924e/kcptun/internal/crypt"
	"github.com/seed-fc8f924e/kcptun/internal/smuxwire"
	"github.com/seed-fc8f924e/kcptun/internal/wire"
)

// sealCFB builds a datagram the way kcp-go does for the non-AEAD ciphers.
func sealCFB(block kcp.BlockCrypt, nonce, payload []byte) []byte {
	d := make([]byte, wire.CryptHeaderSize, wire.CryptHeaderSize+len(payload))
	copy(d, nonce)
	d = append(d, payload...)
	binary.LittleEndian.PutUint32(d[wire.NonceSize:], crc32.ChecksumIEEE(payload))
	block.Encrypt(d, d)
	return d
}

func TestOpenRoundTripAllCiphers(t *testing.T) {
	pass := crypt.DeriveKey("unit")
	payload := []byte("some FEC header and KCP bytes, not a multiple of 8 or 16")
	nonce := bytes.Repeat([]byte{0x5a}, 16)
	for _, name := range crypt.Names() {
		block, err := crypt.New(name, pass)
		if err != nil {
			t.Fatal(err)
		}
		var d []byte
		switch b := block.(type) {
		case nil:
			d = bytes.Clone(payload)
		case sealer:
			n := b.NonceSize()
			d = b.Seal(append(make([]byte, 0, 256), nonce[:n]...), nonce[:n], payload, nil)
		default:
			d = sealCFB(block, nonce, payload)
		}
		got, err := wire.Open(block, d)
		if err != nil || !bytes.Equal(got, payload) {
			t.Errorf("%s: Open = %q, %v", name, got, err)
			continue
		}
		if len(got) > 0 && len(d) > 0 && &got[0] == &d[0] {
			t.Errorf("%s: payload aliases the datagram", name)
		}
		if name == "null" || name == "none" {
			continue
		}
		// Flip one bit in the protected part.
		bad := bytes.Clone(d)
		bad[len(bad)-1] ^= 0x01
		_, err = wire.Open(block, bad)
		want := wire.ErrChecksum
		if crypt.Authenticated(name) {
			want = wire.ErrAuth
		}
		if !errors.Is(err, want) {
			t.Errorf("%s: tampered datagram gave %v, want %v", name, err, want)
		}
	}
}

func TestOpenShort(t *testing.T) {
	pass := crypt.DeriveKey("unit")
	for _, name := range crypt.Names() {
		block, _ := crypt.New(name, pass)
		limit := wire.CryptHeaderSize
		switch name {
		case "null":
			limit = 0
		case "aes-128-gcm":
			limit = 12 + 16
		}
		for n := 0; n < limit; n++ {
			if _, err := wire.Open(block, make([]byte, n)); !errors.Is(err, wire.ErrShort) {
				t.Errorf("%s: %d-byte datagram gave %v, want ErrShort", name, n, err)
			}
		}
	}
	// The empty payload is valid for the CFB layout.
	block, _ := crypt.New("aes", pass)
	if p, err := wire.Open(block, sealCFB(block, make([]byte, 16), nil)); err != nil || len(p) != 0 {
		t.Errorf("header-only datagram: %q, %v", p, err)
	}
}

func TestParseFEC(t *testing.T) {
	for n := range wire.FECHeaderSize {
		if _, _, err := wire.ParseFEC(make([]byte, n)); !errors.Is(err, wire.ErrShort) {
			t.Errorf("%d bytes: %v, want ErrShort", n, err)
		}
	}
	data := []byte{7, 0, 0, 0, 0xf1, 0, 5, 0, 'a', 'b', 'c'}
	h, body, err := wire.ParseFEC(data)
	if err != nil || h != (wire.FECHeader{SeqID: 7, Flag: wire.FECData, Size: 5}) || string(body) != "abc" || !h.IsFEC() {
		t.Errorf("data shard: %+v %q %v", h, body, err)
	}
	parity := []byte{0x0c, 1, 0, 0, 0xf2, 0, 0x34, 0x12, 9}
	h, body, err = wire.ParseFEC(parity)
	if err != nil || h != (wire.FECHeader{SeqID: 268, Flag: wire.FECParity, Size: 0x1234}) || !bytes.Equal(body, []byte{9}) {
		t.Errorf("parity shard: %+v %q %v", h, body, err)
	}
	// A KCP segment header: cmd 81 and frg 0 read as flag 0x0051.
	kcpPkt := appendSegment(nil, wire.Segment{Conv: 1, Cmd: wire.CmdPush, Data: []byte("x")})
	h, _, err = wire.ParseFEC(kcpPkt)
	if !errors.Is(err, wire.ErrNotFEC) || h.Flag != 0x51 || h.IsFEC() {
		t.Errorf("plain KCP: %+v %v, want ErrNotFEC", h, err)
	}
}

func TestParseSegments(t *testing.T) {
	push := wire.Segment{Conv: 0x1c837127, Cmd: wire.CmdPush, Wnd: 512, TS: 99, SN: 4, UNA: 2, Data: []byte("payload")}
	ack := wire.Segment{Conv: 0x1c837127, Cmd: wire.CmdAck, Wnd: 512, TS: 98, SN: 3, UNA: 4, Data: []byte{}}
	two := appendSegment(appendSegment(nil, ack), push)
	segs, err := wire.ParseSegments(two)
	if err != nil || len(segs) != 2 {
		t.Fatalf("ParseSegments = %+v, %v", segs, err)
	}
	if got := appendSegment(appendSegment(nil, segs[0]), segs[1]); !bytes.Equal(got, two) {
		t.Errorf("round trip differs")
	}
	if segs[1].SN != 4 || segs[1].TS != 99 || segs[1].UNA != 2 || segs[1].Wnd != 512 || string(segs[1].Data) != "payload" {
		t.Errorf("push parsed as %+v", segs[1])
	}

	cases := []struct {
		name string
		in   []byte
		want error
		n    int // segments returned with the error
	}{
		{"empty", nil, wire.ErrShort, 0},
		{"short header", two[:23], wire.ErrShort, 0},
		{"trailing bytes", append(bytes.Clone(two), 0, 0, 0), wire.ErrShort, 2},
		{"body cut", two[:len(two)-1], wire.ErrShort, 1},
		{"huge len", func() []byte {
			b := appendSegment(nil, ack)
			binary.LittleEndian.PutUint32(b[20:], 0xffffffff)
			return b
		}(), wire.ErrShort, 0},
		{"bad cmd", func() []byte {
			b := bytes.Clone(two)
			b[24+4] = 85
			return b
		}(), wire.ErrInvalid, 1},
		{"cmd 80", func() []byte {
			b := bytes.Clone(two)
			b[4] = 80
			return b
		}(), wire.ErrInvalid, 0},
	}
	for _, c := range cases {
		segs, err := wire.ParseSegments(c.in)
		if !errors.Is(err, c.want) || len(segs) != c.n {
			t.Errorf("%s: %d segments, %v; want %d, %v", c.name, len(segs), err, c.n, c.want)
		}
	}
}

func TestParseSmuxFrames(t *testing.T) {
	syn := wire.SmuxFrame{Ver: 2, Cmd: smuxwire.CmdSYN, SID: 3, Data: []byte{}}
	psh := wire.SmuxFrame{Ver: 2, Cmd: smuxwire.CmdPSH, SID: 3, Data: []byte("hello")}
	upd := wire.SmuxFrame{Ver: 2, Cmd: smuxwire.CmdUPD, SID: 3, Data: binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 27), 2097152)}
	stream := appendSmux(appendSmux(appendSmux(nil, syn), psh), upd)

	frames, rest, err := wire.ParseSmuxFrames(stream)
	if err != nil || rest != nil || len(frames) != 3 {
		t.Fatalf("ParseSmuxFrames = %+v, %q, %v", frames, rest, err)
	}
	if string(frames[1].Data) != "hello" || frames[1].SID != 3 || frames[1].Cmd != smuxwire.CmdPSH {
		t.Errorf("PSH parsed as %+v", frames[1])
	}
	if c, w, ok := frames[2].Update(); !ok || c != 27 || w != 2097152 {
		t.Errorf("Update() = %d, %d, %v", c, w, ok)
	}
	if _, _, ok := frames[1].Update(); ok {
		t.Error("Update() ok on a PSH frame")
	}

	// Every cut point leaves the unfinished frame in rest.
	for cut := 0; cut <= len(stream); cut++ {
		frames, rest, err := wire.ParseSmuxFrames(stream[:cut])
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		var again []byte
		for _, f := range frames {
			again = appendSmux(again, f)
		}
		if !bytes.Equal(append(again, rest...), stream[:cut]) {
			t.Errorf("cut %d: frames+rest do not rebuild the input", cut)
		}
	}

	for _, c := range []struct {
		name string
		b    []byte
	}{{"version 0", []byte{0, 0, 0, 0, 3, 0, 0, 0}}, {"version 3", []byte{3, 2, 0, 0, 3, 0, 0, 0}}, {"cmd 5", []byte{1, 5, 0, 0, 3, 0, 0, 0}}} {
		in := append(appendSmux(nil, syn), c.b...)
		frames, rest, err := wire.ParseSmuxFrames(in)
		if !errors.Is(err, wire.ErrInvalid) || len(frames) != 1 || !bytes.Equal(rest, c.b) {
			t.Errorf("%s: %d frames, rest %x, %v", c.name, len(frames), rest, err)
		}
	}
}

func TestDecodeSnappyStream(t *testing.T) {
	id := []byte(wire.SnappyStreamID)
	if string(id[4:]) != "sNaPpY" || !bytes.Equal(id[:4], []byte{0xff, 0x06, 0x00, 0x00}) {
		t.Fatalf("SnappyStreamID = % x", id)
	}
	text := []byte("hello kcptun golden vector\n")
	compressed := snappy.Encode(nil, bytes.Repeat(text, 10))

	stream := bytes.Clone(id)
	stream = appendSnappyChunk(stream, 0x01, text, text)
	stream = append(stream, 0xfe, 2, 0, 0, 0, 0) // padding
	stream = append(stream, 0x99, 1, 0, 0, 7)    // reserved skippable
	stream = append(stream, id...)               // repeated identifier
	stream = appendSnappyChunk(stream, 0x00, bytes.Repeat(text, 10), compressed)
	want := append(bytes.Clone(text), bytes.Repeat(text, 10)...)

	out, rest, err := wire.DecodeSnappyStream(stream)
	if err != nil || len(rest) != 0 || !bytes.Equal(out, want) {
		t.Fatalf("DecodeSnappyStream = %q, %x, %v", out, rest, err)
	}

	// golang/snappy's reader agrees on the same stream.
	var ref bytes.Buffer
	if _, err := ref.ReadFrom(snappy.NewReader(bytes.NewReader(stream))); err != nil || !bytes.Equal(ref.Bytes(), want) {
		t.Fatalf("reference reader: %v", err)
	}

	// Cutting the stream anywhere never fails and loses nothing.
	for cut := 0; cut <= len(stream); cut++ {
		out, rest, err := wire.DecodeSnappyStream(stream[:cut])
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if !bytes.HasPrefix(want, out) {
			t.Fatalf("cut %d: out %q is not a prefix of the data", cut, out)
		}
		if cut >= len(id) {
			more, rest2, err := wire.DecodeSnappyStream(append(bytes.Clone(id), append(rest, stream[cut:]...)...))
			if err != nil || len(rest2) != 0 || !bytes.Equal(append(out, more...), want) {
				t.Fatalf("cut %d: resuming from rest gave %q, %v", cut, more, err)
			}
		}
	}

	bad := func(name string, in []byte, want error) {
		t.Helper()
		if _, _, err := wire.DecodeSnappyStream(in); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
	bad("no identifier", appendSnappyChunk(nil, 0x01, text, text), wire.ErrInvalid)
	bad("wrong prefix", []byte{0xff, 0x06, 0x00, 0x01}, wire.ErrInvalid)
	crcBad := appendSnappyChunk(bytes.Clone(id), 0x01, text, text)
	crcBad[len(crcBad)-1] ^= 1
	bad("raw crc", crcBad, wire.ErrChecksum)
	crcBad = appendSnappyChunk(bytes.Clone(id), 0x00, text, compressed)
	bad("compressed crc", crcBad, wire.ErrChecksum)
	bad("unskippable", append(bytes.Clone(id), 0x02, 0, 0, 0), wire.ErrInvalid)
	bad("no room for crc", append(bytes.Clone(id), 0x01, 3, 0, 0, 1, 2, 3), wire.ErrInvalid)
	bad("bad repeated identifier", append(bytes.Clone(id), 0xff, 6, 0, 0, 's', 'n', 'a', 'p', 'p', 'y'), wire.ErrInvalid)
	bad("corrupt block", appendSnappyChunk(bytes.Clone(id), 0x00, nil, []byte{0x05, 0xff}), wire.ErrInvalid)
	big := make([]byte, 65537)
	bad("raw over 64 KiB", appendSnappyChunk(bytes.Clone(id), 0x01, big, big), wire.ErrInvalid)
	bigc := snappy.Encode(nil, big)
	bad("compressed over 64 KiB", appendSnappyChunk(bytes.Clone(id), 0x00, big, bigc), wire.ErrInvalid)
}
