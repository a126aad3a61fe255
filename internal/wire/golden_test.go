package wire_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"testing"

	"github.com/golang/snappy"
	"github.com/klauspost/reedsolomon"
	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/seed-fc8f924e/kcptun/internal/crypt"
	"github.com/seed-fc8f924e/kcptun/internal/smuxwire"
	"github.com/seed-fc8f924e/kcptun/internal/wire"
)

// sealer is the sealing half of kcp-go's AEAD BlockCrypt.
type sealer interface {
	Seal(dst, nonce, plaintext, additionalData []byte) []byte
	NonceSize() int
}

// The captures the README says carry parity shards.
var wantParityFiles = []string{
	"3des_comp_smux2_fec10-3.json",
	"aes_comp_smux2_fec10-3.json",
	"cast5_comp_smux2_fec10-3.json",
	"sm4_comp_smux2_fec10-3.json",
	"tea_comp_smux2_fec10-3.json",
	"twofish_comp_smux2_fec10-3.json",
}

// TestGolden decodes every capture of the kcptun binaries through all the
// layers and checks each against what the binaries are known to send.
func TestGolden(t *testing.T) {
	caps := loadCaptures(t)
	seenCrypt := map[string]bool{}
	var withParity []string
	for _, c := range caps {
		seenCrypt[c.Crypt] = true
		t.Run(c.File, func(t *testing.T) {
			if checkGolden(t, c) {
				withParity = append(withParity, c.File)
			}
		})
	}
	if !slices.Equal(withParity, wantParityFiles) {
		t.Errorf("captures with parity shards: %q, README lists %q", withParity, wantParityFiles)
	}
	for _, name := range crypt.Names() {
		if !seenCrypt[name] {
			t.Errorf("no capture for cipher %q", name)
		}
	}
}

// checkGolden checks one capture and reports whether it held parity shards.
func checkGolden(t *testing.T, c *capture) (hadParity bool) {
	comp := "comp"
	if c.NoComp {
		comp = "nocomp"
	}
	if name := fmt.Sprintf("%s_%s_smux%d_fec%d-%d.json", c.Crypt, comp, c.SmuxVer, c.DataShard, c.ParityShard); name != c.File {
		t.Errorf("settings inside the file spell %s", name)
	}
	if c.Key != "golden-key" || c.MTU != 1350 || c.Mode != "fast2" || string(c.Payload) != "hello kcptun golden vector\n" {
		t.Errorf("unexpected settings: key %q mtu %d mode %q payload %q", c.Key, c.MTU, c.Mode, c.Payload)
	}
	if c.SmuxVer != 1 && c.SmuxVer != 2 {
		t.Fatalf("smuxver %d", c.SmuxVer)
	}

	block := blockFor(t, c)
	if (block == nil) != (c.Crypt == "null") {
		t.Fatalf("crypt.New(%q) returned %T", c.Crypt, block)
	}
	wrong, err := crypt.New(c.Crypt, crypt.DeriveKey("not-"+c.Key))
	if err != nil {
		t.Fatal(err)
	}

	group := uint32(c.DataShard + c.ParityShard)
	lastData := map[string]int64{"c2s": -1, "s2c": -1}
	shards := map[uint32][]byte{}    // Reed-Solomon shard (from the size field on) by seqid
	parityDir := map[uint32]string{} // direction of each parity shard
	pushes := map[string]map[uint32][]byte{"c2s": {}, "s2c": {}}
	pushTS := map[string]map[uint32]uint32{"c2s": {}, "s2c": {}}
	acks := map[string][]uint32{}
	var conv uint32
	convSet := false
	lastT := -1.0

	for i, d := range c.Datagrams {
		dir := c.Packets[i].Dir
		where := fmt.Sprintf("packet %d (%s)", i, dir)
		if c.Packets[i].TMs < lastT {
			t.Errorf("%s: t_ms goes backwards", where)
		}
		lastT = c.Packets[i].TMs
		if len(d) > c.MTU {
			t.Errorf("%s: %d bytes, over the MTU", where, len(d))
		}

		orig := bytes.Clone(d)
		payload, err := wire.Open(block, d)
		if err != nil {
			t.Errorf("%s: Open: %v", where, err)
			continue
		}
		if !bytes.Equal(d, orig) {
			t.Fatalf("%s: Open modified its input", where)
		}
		checkReencrypt(t, where, c.Crypt, block, d)
		checkWrongKey(t, where, c.Crypt, wrong, d)

		kcpData := payload
		if c.FEC() {
			h, body, err := wire.ParseFEC(payload)
			if err != nil {
				t.Errorf("%s: ParseFEC: %v", where, err)
				continue
			}
			isData := h.SeqID%group < uint32(c.DataShard)
			switch h.Flag {
			case wire.FECData:
				if !isData {
					t.Errorf("%s: data shard with parity seqid %d", where, h.SeqID)
				}
				if int64(h.SeqID) <= lastData[dir] {
					t.Errorf("%s: data seqid %d after %d", where, h.SeqID, lastData[dir])
				}
				lastData[dir] = int64(h.SeqID)
				if int(h.Size) != 2+len(body) {
					t.Errorf("%s: size field %d, want 2+%d", where, h.Size, len(body))
				}
				kcpData = body
			case wire.FECParity:
				if isData {
					t.Errorf("%s: parity shard with data seqid %d", where, h.SeqID)
				}
				parityDir[h.SeqID] = dir
				kcpData = nil
			}
			if dir == "c2s" {
				if _, dup := shards[h.SeqID]; dup {
					t.Errorf("%s: seqid %d seen twice", where, h.SeqID)
				}
				shards[h.SeqID] = payload[6:]
			}
		} else {
			if _, _, err := wire.ParseFEC(payload); !errors.Is(err, wire.ErrNotFEC) {
				t.Errorf("%s: FEC is off but ParseFEC says %v", where, err)
			}
		}
		if kcpData == nil {
			continue
		}

		segs, err := wire.ParseSegments(kcpData)
		if err != nil {
			t.Errorf("%s: ParseSegments: %v", where, err)
			continue
		}
		for _, s := range segs {
			if !convSet {
				conv, convSet = s.Conv, true
			} else if s.Conv != conv {
				t.Errorf("%s: conv %08x, capture started with %08x", where, s.Conv, conv)
			}
			if s.Cmd < wire.CmdPush || s.Cmd > wire.CmdWins {
				t.Errorf("%s: KCP cmd %d", where, s.Cmd)
			}
			if s.Frg != 0 {
				t.Errorf("%s: frg %d in stream mode", where, s.Frg)
			}
			switch s.Cmd {
			case wire.CmdPush:
				if len(s.Data) == 0 {
					t.Errorf("%s: empty PUSH sn %d", where, s.SN)
				}
				if prev, ok := pushes[dir][s.SN]; ok {
					if !bytes.Equal(prev, s.Data) {
						t.Errorf("%s: retransmission of sn %d carries different data", where, s.SN)
					}
					if s.TS <= pushTS[dir][s.SN] {
						t.Errorf("%s: retransmission of sn %d keeps ts %d", where, s.SN, s.TS)
					}
				}
				pushes[dir][s.SN] = s.Data
				pushTS[dir][s.SN] = s.TS
			case wire.CmdAck:
				acks[dir] = append(acks[dir], s.SN)
			default:
				if len(s.Data) != 0 {
					t.Errorf("%s: cmd %d carries %d bytes", where, s.Cmd, len(s.Data))
				}
			}
		}
	}
	if !convSet {
		t.Fatal("no KCP segment decoded")
	}

	// Every ACK names a PUSH the other side sent.
	other := map[string]string{"c2s": "s2c", "s2c": "c2s"}
	for dir, sns := range acks {
		for _, sn := range sns {
			if _, ok := pushes[other[dir]][sn]; !ok {
				t.Errorf("%s ACK of sn %d, which %s never pushed", dir, sn, other[dir])
			}
		}
	}

	// Reassemble each direction's stream, then decompress and parse smux.
	for _, dir := range []string{"c2s", "s2c"} {
		sns := slices.Sorted(maps.Keys(pushes[dir]))
		var stream []byte
		for i, sn := range sns {
			if sn != uint32(i) {
				t.Fatalf("%s: PUSH sns %v are not 0..%d", dir, sns, len(sns)-1)
			}
			stream = append(stream, pushes[dir][sn]...)
		}
		checkStream(t, c, dir, stream)
	}

	if len(parityDir) > 0 {
		checkParity(t, c, shards, parityDir)
		return true
	}
	return false
}

// checkReencrypt checks that deciphering a datagram and enciphering the
// result (nonce included) gives back the captured bytes.
func checkReencrypt(t *testing.T, where, name string, block kcp.BlockCrypt, d []byte) {
	switch b := block.(type) {
	case nil:
	case sealer:
		n := b.NonceSize()
		payload, err := wire.Open(block, d)
		if err != nil {
			return
		}
		dst := append(make([]byte, 0, len(d)), d[:n]...)
		if got := b.Seal(dst, d[:n], payload, nil); !bytes.Equal(got, d) {
			t.Errorf("%s: %s re-seal differs from the capture", where, name)
		}
	default:
		plain := make([]byte, len(d))
		block.Decrypt(plain, d)
		again := make([]byte, len(d))
		block.Encrypt(again, plain)
		if !bytes.Equal(again, d) {
			t.Errorf("%s: %s re-encryption differs from the capture", where, name)
		}
		if name == "none" && !bytes.Equal(plain, d) {
			t.Errorf("%s: cipher none changed the bytes", where)
		}
		if crypt.Confidential(name) && bytes.Equal(plain[wire.CryptHeaderSize:], d[wire.CryptHeaderSize:]) {
			t.Errorf("%s: %s payload was in clear", where, name)
		}
	}
}

// checkWrongKey checks that a datagram does not open under another key.
func checkWrongKey(t *testing.T, where, name string, wrong kcp.BlockCrypt, d []byte) {
	_, err := wire.Open(wrong, d)
	switch name {
	case "null", "none": // no key involved
		if err != nil {
			t.Errorf("%s: %s under another key: %v", where, name, err)
		}
	case "aes-128-gcm":
		if !errors.Is(err, wire.ErrAuth) {
			t.Errorf("%s: %s under another key gave %v, want ErrAuth", where, name, err)
		}
	default:
		if !errors.Is(err, wire.ErrChecksum) {
			t.Errorf("%s: %s under another key gave %v, want ErrChecksum", where, name, err)
		}
	}
}

// checkStream checks one direction's KCP byte stream down to the user's
// bytes.
func checkStream(t *testing.T, c *capture, dir string, stream []byte) {
	if len(stream) == 0 {
		t.Fatalf("%s: empty stream", dir)
	}
	smuxBytes := stream
	if c.NoComp {
		if bytes.HasPrefix(stream, []byte(wire.SnappyStreamID)) {
			t.Errorf("%s: nocomp stream starts with the snappy identifier", dir)
		}
	} else {
		if !bytes.HasPrefix(stream, []byte(wire.SnappyStreamID)) {
			t.Fatalf("%s: stream starts % x, not the snappy stream identifier", dir, stream[:min(10, len(stream))])
		}
		out, rest, err := wire.DecodeSnappyStream(stream)
		if err != nil || len(rest) != 0 {
			t.Fatalf("%s: DecodeSnappyStream: %v, %d bytes left", dir, err, len(rest))
		}
		ref, err := io.ReadAll(snappy.NewReader(bytes.NewReader(stream)))
		if err != nil {
			t.Fatalf("%s: snappy.NewReader: %v", dir, err)
		}
		if !bytes.Equal(out, ref) {
			t.Errorf("%s: DecodeSnappyStream disagrees with golang/snappy", dir)
		}
		if checkChunkTypes(t, dir, stream) == 0 {
			t.Errorf("%s: no data chunk", dir)
		}
		smuxBytes = out
	}

	frames, rest, err := wire.ParseSmuxFrames(smuxBytes)
	if err != nil || len(rest) != 0 {
		t.Fatalf("%s: ParseSmuxFrames: %v, %d bytes left", dir, err, len(rest))
	}
	var psh []byte
	var syn, fin, upd int
	for i, f := range frames {
		if int(f.Ver) != c.SmuxVer {
			t.Errorf("%s: frame %d has smux version %d, capture uses %d", dir, i, f.Ver, c.SmuxVer)
		}
		if f.SID != 3 {
			t.Errorf("%s: frame %d (cmd %d) on sid %d", dir, i, f.Cmd, f.SID)
		}
		switch f.Cmd {
		case smuxwire.CmdSYN:
			syn++
			if i != 0 {
				t.Errorf("%s: SYN is frame %d", dir, i)
			}
		case smuxwire.CmdFIN:
			fin++
		case smuxwire.CmdPSH:
			psh = append(psh, f.Data...)
		case smuxwire.CmdUPD:
			upd++
			consumed, window, ok := f.Update()
			if !ok || consumed == 0 || consumed > uint32(len(c.Payload)) || window == 0 {
				t.Errorf("%s: UPD body % x", dir, f.Data)
			}
		}
		if f.Cmd != smuxwire.CmdPSH && f.Cmd != smuxwire.CmdUPD && len(f.Data) != 0 {
			t.Errorf("%s: cmd %d frame carries %d bytes", dir, f.Cmd, len(f.Data))
		}
	}
	if !bytes.Equal(psh, c.Payload) {
		t.Errorf("%s: PSH data %q, want %q", dir, psh, c.Payload)
	}
	if dir == "c2s" {
		if syn != 1 || fin != 1 {
			t.Errorf("c2s: %d SYN and %d FIN, want one each", syn, fin)
		}
	} else if syn != 0 {
		t.Errorf("s2c: server sent %d SYN", syn)
	}
	if c.SmuxVer == 2 && upd == 0 {
		t.Errorf("%s: smux v2 but no UPD frame", dir)
	}
	if c.SmuxVer == 1 && upd != 0 {
		t.Errorf("%s: smux v1 but %d UPD frames", dir, upd)
	}
}

// checkChunkTypes walks the snappy chunks by hand and returns how many
// carry data; the README says the binaries only send raw chunks.
func checkChunkTypes(t *testing.T, dir string, stream []byte) (data int) {
	p := stream[len(wire.SnappyStreamID):]
	for len(p) >= 4 {
		n := int(p[1]) | int(p[2])<<8 | int(p[3])<<16
		if p[0] != 0x01 {
			t.Errorf("%s: snappy chunk type %#02x, want raw (0x01)", dir, p[0])
		}
		data++
		if len(p) < 4+n {
			break
		}
		p = p[4+n:]
	}
	return data
}

// checkParity recomputes the parity of FEC group 0 with Reed-Solomon.
func checkParity(t *testing.T, c *capture, shards map[uint32][]byte, parityDir map[uint32]string) {
	ds, ps := c.DataShard, c.ParityShard
	for seqid, dir := range parityDir {
		if dir != "c2s" || seqid < uint32(ds) || seqid >= uint32(ds+ps) {
			t.Errorf("parity shard seqid %d from %s; README says c2s %d..%d only", seqid, dir, ds, ds+ps-1)
		}
	}
	all := make([][]byte, ds+ps)
	maxLen := 0
	for i := range ds {
		s, ok := shards[uint32(i)]
		if !ok {
			t.Fatalf("parity sent but data shard %d of group 0 is missing", i)
		}
		maxLen = max(maxLen, len(s))
	}
	for i := range ds {
		all[i] = make([]byte, maxLen)
		copy(all[i], shards[uint32(i)])
	}
	for i := ds; i < ds+ps; i++ {
		all[i] = make([]byte, maxLen)
	}
	enc, err := reedsolomon.New(ds, ps)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.Encode(all); err != nil {
		t.Fatal(err)
	}
	for i := ds; i < ds+ps; i++ {
		got, ok := shards[uint32(i)]
		if !ok {
			t.Errorf("parity shard %d missing", i)
			continue
		}
		if !bytes.Equal(got, all[i]) {
			t.Errorf("parity shard %d (%d bytes) differs from Reed-Solomon(%d,%d) over group 0 (%d bytes)", i, len(got), ds, ps, maxLen)
		}
	}
}
