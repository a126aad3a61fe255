package kcptun

import (
	"bytes"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/csv"
	"hash/crc32"
	"net"
	"strconv"
	"testing"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/seed-fc8f924e/kcptun/internal/crypt"
	"github.com/seed-fc8f924e/kcptun/internal/wire"
)

// sealDatagram wraps payload in the crypto layer as kcp-go would, so that
// fuzzed bytes get past the checksum and reach the FEC, KCP and smux parsers.
func sealDatagram(block kcp.BlockCrypt, payload []byte) []byte {
	type aead interface {
		NonceSize() int
		Overhead() int
		Seal(dst, nonce, plaintext, additionalData []byte) []byte
	}
	switch b := block.(type) {
	case nil:
		return payload
	case aead:
		// kcp-go's Seal insists on sealing in place.
		d := make([]byte, b.NonceSize(), b.NonceSize()+len(payload)+b.Overhead())
		_, _ = crand.Read(d)
		return b.Seal(d, d, payload, nil)
	default:
		d := make([]byte, 20+len(payload))
		_, _ = crand.Read(d[:16])
		copy(d[20:], payload)
		binary.LittleEndian.PutUint32(d[16:], crc32.ChecksumIEEE(d[20:]))
		block.Encrypt(d, d)
		return d
	}
}

// FuzzListenerDatagram sends each input, sealed with every cipher (so that it
// passes the checksum), to a Listener of that cipher, plus the raw bytes. No
// input may crash the process or push sessions past the cap. Seeds: the
// decrypted datagrams of the golden captures.
func FuzzListenerDatagram(f *testing.F) {
	caps, err := wire.LoadCaptures(goldenDir)
	if err != nil {
		f.Fatalf("golden captures: %v", err)
	}
	for _, g := range caps {
		if g.Crypt == "null" { // plaintext already
			for _, d := range g.Datagrams {
				f.Add(d)
			}
		}
	}
	f.Add(make([]byte, 24))
	f.Add([]byte{0xf1, 0, 0, 0, 0xf1, 0, 2, 0})

	const maxSessions = 16
	type target struct {
		ln    *Listener
		block kcp.BlockCrypt
	}
	var targets []target
	for _, name := range crypt.Names() {
		opts := []Option{WithCrypt(name), WithMaxSessions(maxSessions), WithAcceptTimeout(200 * time.Millisecond)}
		ln, err := Listen("127.0.0.1:0", opts...)
		if err != nil {
			f.Fatal(err)
		}
		c, _ := newConfig(entryListen, opts)
		block, _ := c.blockCrypt()
		targets = append(targets, target{ln, block})
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		_ = pc.Close()
		for _, tg := range targets {
			_ = tg.ln.Close()
		}
	})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 1400 {
			in = in[:1400]
		}
		for _, tg := range targets {
			_, _ = pc.WriteTo(in, tg.ln.Addr())
			_, _ = pc.WriteTo(sealDatagram(tg.block, in), tg.ln.Addr())
			if s := tg.ln.Stats().Sessions; s > maxSessions {
				t.Fatalf("%d sessions, over the cap", s)
			}
		}
	})
}

// FuzzSNMPRow checks that every SNMP value survives the CSV round trip.
func FuzzSNMPRow(f *testing.F) {
	f.Add(make([]byte, 8*len(snmpFields)), int64(0))
	f.Add(bytes.Repeat([]byte{0xff}, 8*len(snmpFields)), int64(1<<40))
	f.Fuzz(func(t *testing.T, in []byte, unix int64) {
		var s SNMP
		for i, fd := range snmpFields {
			if len(in) >= 8*(i+1) {
				*fd.get(&s) = binary.LittleEndian.Uint64(in[8*i:])
			}
		}
		var buf bytes.Buffer
		w := csv.NewWriter(&buf)
		_ = w.Write(Header())
		_ = w.Write(s.rowAt(time.Unix(unix, 0)))
		w.Flush()
		rows, err := csv.NewReader(&buf).ReadAll()
		if err != nil || len(rows) != 2 {
			t.Fatalf("csv: %v, %d rows", err, len(rows))
		}
		if got, _ := strconv.ParseInt(rows[1][0], 10, 64); got != unix {
			t.Fatalf("Unix column %d, want %d", got, unix)
		}
		var back SNMP
		for i, fd := range snmpFields {
			if rows[0][i+1] != fd.name {
				t.Fatalf("column %d is %q, want %q", i+1, rows[0][i+1], fd.name)
			}
			v, err := strconv.ParseUint(rows[1][i+1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			*fd.get(&back) = v
		}
		if back != s {
			t.Fatalf("round trip changed %+v into %+v", s, back)
		}
	})
}
