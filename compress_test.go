package kcptun

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"testing"

	"github.com/golang/snappy"
)

// bufConn is an in-memory ReadWriteCloser: writes append, reads consume.
type bufConn struct{ bytes.Buffer }

func (*bufConn) Close() error { return nil }

// TestCompressedWriterMatchesReference checks that what we write decodes with
// the reference reader, for small frames, vectored frames and large writes.
func TestCompressedWriterMatchesReference(t *testing.T) {
	var wire bufConn
	c := newCompressedConn(&wire, DefaultFrameSize)
	var want bytes.Buffer
	write := func(p []byte) {
		t.Helper()
		if n, err := c.Write(p); err != nil || n != len(p) {
			t.Fatalf("Write: %d, %v", n, err)
		}
		want.Write(p)
	}
	write([]byte{2, 0, 0, 0, 3, 0, 0, 0}) // a smux SYN
	write(bytes.Repeat([]byte("compressible "), 1000))
	write(randomBytes(t, 200<<10)) // larger than one block, incompressible
	if n, err := c.WriteBuffers([][]byte{{2, 2, 5, 0, 3, 0, 0, 0}, []byte("hello")}); err != nil || n != 13 {
		t.Fatalf("WriteBuffers: %d, %v", n, err)
	}
	want.Write([]byte{2, 2, 5, 0, 3, 0, 0, 0})
	want.WriteString("hello")

	if !bytes.HasPrefix(wire.Bytes(), []byte(snappyStreamIdentifier)) {
		t.Fatalf("stream starts % x, want the snappy identifier", wire.Bytes()[:10])
	}
	got, err := io.ReadAll(snappy.NewReader(bytes.NewReader(wire.Bytes())))
	if err != nil {
		t.Fatalf("reference reader: %v", err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("reference reader decoded %d bytes, want %d identical", len(got), want.Len())
	}
}

// TestCompressedReaderMatchesReference decodes the reference writer's output,
// byte by byte and in large reads.
func TestCompressedReaderMatchesReference(t *testing.T) {
	var wire bytes.Buffer
	w := snappy.NewBufferedWriter(&wire)
	var want bytes.Buffer
	for _, p := range [][]byte{[]byte("hi"), bytes.Repeat([]byte("abc"), 30000), randomBytes(t, 100<<10)} {
		_, _ = w.Write(p)
		_ = w.Flush()
		want.Write(p)
	}
	_ = w.Close()
	for _, size := range []int{1, 7, 4096, 1 << 20} {
		z := &snappyReader{r: bytes.NewReader(wire.Bytes())}
		var got bytes.Buffer
		buf := make([]byte, size)
		for {
			n, err := z.Read(buf)
			got.Write(buf[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("read size %d: %v", size, err)
			}
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("read size %d: decoded %d bytes, want %d identical", size, got.Len(), want.Len())
		}
	}
}

func TestCompressedReaderRejectsCorruption(t *testing.T) {
	var wire bytes.Buffer
	w := snappy.NewBufferedWriter(&wire)
	_, _ = w.Write(bytes.Repeat([]byte("payload "), 100))
	_ = w.Close()
	good := wire.Bytes()
	flipped := append([]byte(nil), good...)
	flipped[14] ^= 1 // the first data chunk's checksum
	cases := map[string]struct {
		in   []byte
		want error
	}{
		"no identifier":  {good[10:], snappy.ErrCorrupt},
		"bad checksum":   {flipped, snappy.ErrCorrupt},
		"reserved chunk": {append(append([]byte(nil), good[:10]...), 0x02, 0, 0, 0), snappy.ErrUnsupported},
		"truncated":      {good[:len(good)-3], io.ErrUnexpectedEOF},
		"huge raw chunk": {append(append([]byte(nil), good[:10]...), 0x01, 0xff, 0xff, 0xff), snappy.ErrCorrupt},
	}
	for name, tc := range cases {
		z := &snappyReader{r: bytes.NewReader(tc.in)}
		_, err := io.ReadAll(z)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

// TestCompressedFirstBytesMatchGolden checks our first chunk against the
// first bytes a kcptun binary sends (aes_comp_smux2 capture, decrypted): the
// identifier, then a raw chunk whose body is the smux SYN of stream 3.
func TestCompressedFirstBytesMatchGolden(t *testing.T) {
	var wire bufConn
	c := newCompressedConn(&wire, DefaultFrameSize)
	_, _ = c.Write([]byte{2, 0, 0, 0, 3, 0, 0, 0})
	// ff060000 734e61507059 | 01 0c0000 <crc> | 0200000003000000
	got := hex.EncodeToString(wire.Bytes())
	const prefix = "ff060000734e61507059" + "010c0000"
	if got[:len(prefix)] != prefix || got[len(got)-16:] != "0200000003000000" {
		t.Fatalf("first chunk %s", got)
	}
}

// FuzzSnappyReader feeds arbitrary streams to the decoder: it must never panic
// nor return more than the format allows per chunk.
func FuzzSnappyReader(f *testing.F) {
	var wire bytes.Buffer
	w := snappy.NewBufferedWriter(&wire)
	_, _ = w.Write([]byte{2, 0, 0, 0, 3, 0, 0, 0})
	_ = w.Flush()
	_, _ = w.Write(bytes.Repeat([]byte("hello kcptun golden vector\n"), 3))
	_ = w.Close()
	f.Add(wire.Bytes())
	f.Add([]byte(snappyStreamIdentifier))
	f.Add([]byte{0xff, 6, 0, 0, 's', 'N', 'a', 'P', 'p', 'Y', 0, 5, 0, 0, 1, 2, 3, 4, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		z := &snappyReader{r: bytes.NewReader(in)}
		buf := make([]byte, 3000)
		total := 0
		for range 10000 {
			n, err := z.Read(buf)
			total += n
			if err != nil {
				break
			}
			if n == 0 && len(buf) > 0 && z.err == nil && len(z.pending) == 0 {
				// Progress is made by consuming input; nothing else to check.
				continue
			}
		}
		if total > len(in)*64+snappyMaxBlock {
			t.Fatalf("decoded %d bytes from %d", total, len(in))
		}
	})
}
