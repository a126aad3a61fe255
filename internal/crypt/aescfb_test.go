package crypt

import (
	"bytes"
	"crypto/aes"
	"math/rand/v2"
	"slices"
	"testing"

	kcp "github.com/xtaci/kcp-go/v5"
)

// TestKeyScheduleMatchesAES checks the computed substitution table and key
// schedule the only way that matters: enciphering with the schedule gives
// crypto/aes's answer. The CFB assembly shows it: with in as the keystream,
// a zero block enciphers to in, and the keystream left after it is E(in).
func TestKeyScheduleMatchesAES(t *testing.T) {
	if !haveAESCFBAsm {
		t.Skip("no AES instructions here; kcp-go's cipher serves")
	}
	if sbox[0] != 0x63 || sbox[0x53] != 0xed { // FIPS-197, figure 7
		t.Fatalf("sbox[0]=%#x sbox[0x53]=%#x", sbox[0], sbox[0x53])
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{16, 24, 32} {
		for range 50 {
			key := make([]byte, size)
			var in, want, got [16]byte
			for i := range key {
				key[i] = byte(rng.Uint32())
			}
			for i := range in {
				in[i] = byte(rng.Uint32())
			}
			blk, err := aes.NewCipher(key)
			if err != nil {
				t.Fatal(err)
			}
			blk.Encrypt(want[:], in[:])
			c, err := newAESBlockCrypt(key)
			if err != nil {
				t.Fatal(err)
			}
			a := c.(*aesCFB)
			var zero, out [16]byte
			got = in
			cfbEncryptBlocks(&a.keys[0], a.rounds, &out[0], &zero[0], 1, &got)
			if got != want {
				t.Fatalf("AES-%d: block %x enciphers to %x, crypto/aes says %x", size*8, in, got, want)
			}
		}
	}
}

// randomKey returns a key of size bytes from rng.
func randomKey(rng *rand.Rand, size int) []byte {
	key := make([]byte, size)
	for i := range key {
		key[i] = byte(rng.Uint32())
	}
	return key
}

// aesPair returns the SDK's AES-CFB cipher and kcp-go's for key.
func aesPair(t testing.TB, key []byte) (ours, ref kcp.BlockCrypt) {
	t.Helper()
	ours, err := newAESBlockCrypt(key)
	if err != nil {
		t.Fatal(err)
	}
	ref, err = kcp.NewAESBlockCrypt(key)
	if err != nil {
		t.Fatal(err)
	}
	return ours, ref
}

// TestAESCFBMatchesKCP checks the cipher against kcp-go's AES BlockCrypt
// for every key size and every length up to three datagrams' worth of
// blocks plus odd tails, in place and not, both ways.
func TestAESCFBMatchesKCP(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, size := range []int{16, 24, 32} {
		ours, ref := aesPair(t, randomKey(rng, size))
		lengths := []int{0, 1, 15, 16, 17, 127, 128, 129, 143, 144, 145, 1350, 1400, 1500, 4096 + 7}
		for n := 2; n < 300; n += 13 {
			lengths = append(lengths, n)
		}
		for _, n := range lengths {
			msg := make([]byte, n)
			for i := range msg {
				msg[i] = byte(rng.Uint32())
			}
			want := make([]byte, n)
			ref.Encrypt(want, msg)
			got := make([]byte, n)
			ours.Encrypt(got, msg)
			if !bytes.Equal(got, want) {
				t.Fatalf("AES-%d, %d bytes: ciphertext differs from kcp-go's", size*8, n)
			}
			inPlace := append([]byte(nil), msg...)
			ours.Encrypt(inPlace, inPlace)
			if !bytes.Equal(inPlace, want) {
				t.Fatalf("AES-%d, %d bytes: in-place ciphertext differs from kcp-go's", size*8, n)
			}
			back := make([]byte, n)
			ours.Decrypt(back, want)
			if !bytes.Equal(back, msg) {
				t.Fatalf("AES-%d, %d bytes: deciphering gives other bytes", size*8, n)
			}
			ours.Decrypt(inPlace, inPlace)
			if !bytes.Equal(inPlace, msg) {
				t.Fatalf("AES-%d, %d bytes: deciphering in place gives other bytes", size*8, n)
			}
			ref.Decrypt(back, got)
			if !bytes.Equal(back, msg) {
				t.Fatalf("AES-%d, %d bytes: kcp-go does not decipher our ciphertext", size*8, n)
			}
		}
	}
}

// TestEncryptEachMatchesKCP checks EncryptEach against kcp-go's Encrypt on
// batches of datagrams of mixed lengths: runs of equal ones (the common
// case under load), shorter ones among them, fewer than eight left over.
func TestEncryptEachMatchesKCP(t *testing.T) {
	if !haveAESCFBAsm {
		t.Skip("no AES instructions here; kcp-go's cipher serves")
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for _, size := range []int{16, 24, 32} {
		ours, ref := aesPair(t, randomKey(rng, size))
		for round := range 200 {
			count := rng.IntN(40)
			var bufs, want [][]byte
			for range count {
				n := 1350
				switch rng.IntN(4) {
				case 0:
					n = rng.IntN(1501)
				case 1:
					n = minInterleaved + rng.IntN(64) - 32
				}
				b := make([]byte, n)
				for i := range b {
					b[i] = byte(rng.Uint32())
				}
				w := make([]byte, n)
				ref.Encrypt(w, b)
				bufs, want = append(bufs, b), append(want, w)
			}
			orig := slices.Clone(bufs)
			ours.(*aesCFB).EncryptEach(bufs)
			for i := range orig {
				if !bytes.Equal(orig[i], want[i]) {
					t.Fatalf("AES-%d, batch %d of %d datagrams: datagram %d (%d bytes) differs from kcp-go's",
						size*8, round, count, i, len(orig[i]))
				}
			}
		}
	}
}

// TestAESCFBRejectsBadKeys checks that a key of another size is refused,
// as crypto/aes refuses it.
func TestAESCFBRejectsBadKeys(t *testing.T) {
	for _, n := range []int{0, 8, 20, 33} {
		if _, err := newAESBlockCrypt(make([]byte, n)); err == nil {
			t.Errorf("a %d-byte key was accepted", n)
		}
	}
}

func TestAESCFBAllocatesNothing(t *testing.T) {
	c, err := newAESBlockCrypt(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1350)
	batch := make([][]byte, 11)
	for i := range batch {
		batch[i] = make([]byte, 1350)
	}
	each, _ := c.(interface{ EncryptEach([][]byte) })
	if n := testing.AllocsPerRun(100, func() {
		c.Encrypt(buf, buf)
		c.Decrypt(buf, buf)
		if each != nil {
			each.EncryptEach(batch)
		}
	}); n != 0 {
		t.Errorf("%v allocations per datagram", n)
	}
}

func BenchmarkAESCFB(b *testing.B) {
	key := make([]byte, 32)
	for _, impl := range []struct {
		name  string
		build func([]byte) (kcp.BlockCrypt, error)
	}{{"kcp-go", kcp.NewAESBlockCrypt}, {"sdk", newAESBlockCrypt}} {
		c, err := impl.build(key)
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 1350)
		b.Run(impl.name+"/encrypt", func(b *testing.B) {
			b.SetBytes(int64(len(buf)))
			for range b.N {
				c.Encrypt(buf, buf)
			}
		})
		if each, ok := c.(interface{ EncryptEach([][]byte) }); ok {
			batch := make([][]byte, 64)
			for i := range batch {
				batch[i] = make([]byte, 1350)
			}
			b.Run(impl.name+"/encrypt-each", func(b *testing.B) {
				b.SetBytes(int64(len(buf) * len(batch)))
				for range b.N {
					each.EncryptEach(batch)
				}
			})
		}
		b.Run(impl.name+"/decrypt", func(b *testing.B) {
			b.SetBytes(int64(len(buf)))
			for range b.N {
				c.Decrypt(buf, buf)
			}
		})
	}
}

// TestReferenceIsKCPGo checks that NewReference builds kcp-go's own AES
// cipher, which New replaces where the assembly runs, with equal output.
func TestReferenceIsKCPGo(t *testing.T) {
	pass := DeriveKey("reference")
	msg := bytes.Repeat([]byte("kcptun"), 300)
	for _, name := range []string{"aes", "aes-128", "aes-192"} {
		fast, err := New(name, pass)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := NewReference(name, pass)
		if err != nil {
			t.Fatal(err)
		}
		if _, isOurs := ref.(*aesCFB); isOurs {
			t.Errorf("%s: NewReference returned the SDK's cipher", name)
		}
		if _, isOurs := fast.(*aesCFB); isOurs != haveAESCFBAsm {
			t.Errorf("%s: New returned %T with the assembly available: %v", name, fast, haveAESCFBAsm)
		}
		a, b := make([]byte, len(msg)), make([]byte, len(msg))
		fast.Encrypt(a, msg)
		ref.Encrypt(b, msg)
		if !bytes.Equal(a, b) {
			t.Errorf("%s: New and NewReference encipher differently", name)
		}
	}
}

// FuzzAESCFB checks the assembly against kcp-go's AES cipher on arbitrary
// datagrams and keys: Encrypt, Decrypt and EncryptEach (the datagram with
// copies of itself cut at different lengths).
func FuzzAESCFB(f *testing.F) {
	f.Add(make([]byte, 32), []byte("kcptun"), uint8(2))
	f.Add(bytes.Repeat([]byte{7}, 16), bytes.Repeat([]byte{1, 2, 3}, 500), uint8(9))
	f.Add(bytes.Repeat([]byte{9}, 24), make([]byte, 129), uint8(17))
	f.Fuzz(func(t *testing.T, key, msg []byte, copies uint8) {
		switch {
		case len(key) >= 32:
			key = key[:32]
		case len(key) >= 24:
			key = key[:24]
		case len(key) >= 16:
			key = key[:16]
		default:
			return
		}
		ours, ref := aesPair(t, key)
		want := make([]byte, len(msg))
		ref.Encrypt(want, msg)
		got := make([]byte, len(msg))
		ours.Encrypt(got, msg)
		if !bytes.Equal(got, want) {
			t.Fatalf("%d-byte key, %d bytes: Encrypt differs from kcp-go's", len(key), len(msg))
		}
		ours.Decrypt(got, got)
		if !bytes.Equal(got, msg) {
			t.Fatalf("%d-byte key, %d bytes: Decrypt does not invert Encrypt", len(key), len(msg))
		}
		each, ok := ours.(interface{ EncryptEach([][]byte) })
		if !ok {
			return
		}
		var bufs, wants [][]byte
		for i := range int(copies % 24) {
			n := len(msg) - i*len(msg)/24
			bufs = append(bufs, append([]byte(nil), msg[:n]...))
			w := make([]byte, n)
			ref.Encrypt(w, msg[:n])
			wants = append(wants, w)
		}
		orig := slices.Clone(bufs)
		each.EncryptEach(bufs)
		for i := range orig {
			if !bytes.Equal(orig[i], wants[i]) {
				t.Fatalf("%d-byte key: EncryptEach's datagram %d (%d bytes) differs from kcp-go's", len(key), i, len(orig[i]))
			}
		}
	})
}
