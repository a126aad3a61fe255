package crypt

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"

	kcp "github.com/xtaci/kcp-go/v5"
)

// Known answers computed once outside Go (Python's hashlib.pbkdf2_hmac with
// sha1, salt b"kcp-go", 4096 iterations, 32 bytes). The golden-key value is
// also proven by the wire captures, which only decrypt with it.
var deriveVectors = []struct{ key, hex string }{
	{"it's a secrect", "25d7d7bd51050742d8d791f2b653c6c8b2366b7e25a124cf7a2e12eaf4ffa444"},
	{"golden-key", "0cbceb3629836638d5fbe7d12068dd14a65fb4b0027a1b5e14e03beb6ab1b03e"},
}

func TestDeriveKeyKnownAnswers(t *testing.T) {
	for _, v := range deriveVectors {
		got := hex.EncodeToString(DeriveKey(v.key))
		if got != v.hex {
			t.Errorf("DeriveKey(%q) = %s, want %s", v.key, got, v.hex)
		}
	}
}

// pbkdf2SHA1 is a textbook PBKDF2 (RFC 8018, section 5.2) built only on
// crypto/hmac, used to cross-check DeriveKey without the library it calls.
func pbkdf2SHA1(password, salt []byte, iter, size int) []byte {
	var out []byte
	for block := uint32(1); len(out) < size; block++ {
		mac := hmac.New(sha1.New, password)
		mac.Write(salt)
		var idx [4]byte
		binary.BigEndian.PutUint32(idx[:], block)
		mac.Write(idx[:])
		u := mac.Sum(nil)
		t := slices.Clone(u)
		for i := 1; i < iter; i++ {
			mac.Reset()
			mac.Write(u)
			u = mac.Sum(u[:0])
			for j := range t {
				t[j] ^= u[j]
			}
		}
		out = append(out, t...)
	}
	return out[:size]
}

func TestDeriveKeyMatchesTextbookPBKDF2(t *testing.T) {
	// RFC 6070 vector 2 checks the reference implementation itself.
	if got := hex.EncodeToString(pbkdf2SHA1([]byte("password"), []byte("salt"), 2, 20)); got != "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957" {
		t.Fatalf("reference PBKDF2 broken: %s", got)
	}
	for _, key := range []string{"", "it's a secrect", "golden-key", strings.Repeat("long key ", 20)} {
		want := pbkdf2SHA1([]byte(key), []byte("kcp-go"), 4096, 32)
		if got := DeriveKey(key); !bytes.Equal(got, want) {
			t.Errorf("DeriveKey(%q) = %x, reference says %x", key, got, want)
		}
	}
}

var wantNames = []string{
	"aes", "aes-128", "aes-192", "aes-128-gcm", "salsa20", "blowfish", "twofish",
	"cast5", "3des", "tea", "xtea", "sm4", "xor", "none", "null",
}

func TestNames(t *testing.T) {
	names := Names()
	if !slices.Equal(names, wantNames) {
		t.Fatalf("Names() = %q, want %q", names, wantNames)
	}
	names[0] = "changed"
	if Names()[0] != "aes" {
		t.Fatal("Names returned shared storage")
	}
}

func TestEveryNameConstructs(t *testing.T) {
	pass := DeriveKey("it's a secrect")
	for _, name := range Names() {
		block, err := New(name, pass)
		if err != nil {
			t.Errorf("New(%q): %v", name, err)
			continue
		}
		if (block == nil) != (name == "null") {
			t.Errorf("New(%q) returned block %T; only null may be nil", name, block)
		}
	}
}

// tableKey returns the constructor and key slice docs/wire.md assigns to a name,
// written out independently of the package's own table.
func tableKey(name string, pass []byte) (func([]byte) (kcp.BlockCrypt, error), []byte) {
	switch name {
	case "aes":
		return kcp.NewAESBlockCrypt, pass
	case "aes-128":
		return kcp.NewAESBlockCrypt, pass[:16]
	case "aes-192":
		return kcp.NewAESBlockCrypt, pass[:24]
	case "aes-128-gcm":
		return kcp.NewAESGCMCrypt, pass[:16]
	case "salsa20":
		return kcp.NewSalsa20BlockCrypt, pass
	case "blowfish":
		return kcp.NewBlowfishBlockCrypt, pass
	case "twofish":
		return kcp.NewTwofishBlockCrypt, pass
	case "cast5":
		return kcp.NewCast5BlockCrypt, pass[:16]
	case "3des":
		return kcp.NewTripleDESBlockCrypt, pass[:24]
	case "tea":
		return kcp.NewTEABlockCrypt, pass[:16]
	case "xtea":
		return kcp.NewXTEABlockCrypt, pass[:16]
	case "sm4":
		return kcp.NewSM4BlockCrypt, pass[:16]
	case "xor":
		return kcp.NewSimpleXORBlockCrypt, pass
	case "none":
		return kcp.NewNoneBlockCrypt, pass
	}
	return nil, nil
}

type sealer interface {
	Seal(dst, nonce, plaintext, additionalData []byte) []byte
	NonceSize() int
}

// TestKeySlices checks that each cipher produces the same ciphertext as the
// docs/wire.md constructor fed the docs/wire.md key slice.
func TestKeySlices(t *testing.T) {
	pass := DeriveKey("golden-key")
	msg := make([]byte, 97) // not a multiple of any block size
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	for _, name := range Names() {
		if name == "null" {
			continue
		}
		got, err := New(name, pass)
		if err != nil {
			t.Fatalf("New(%q): %v", name, err)
		}
		build, key := tableKey(name, pass)
		want, err := build(key)
		if err != nil {
			t.Fatalf("reference %q: %v", name, err)
		}
		if s, ok := got.(sealer); ok {
			ws := want.(sealer)
			nonce := msg[:s.NonceSize()]
			a := s.Seal(make([]byte, 0, 256), nonce, msg, nil)
			b := ws.Seal(make([]byte, 0, 256), nonce, msg, nil)
			if !bytes.Equal(a, b) {
				t.Errorf("%s: sealed output differs from the docs/wire.md key", name)
			}
			continue
		}
		a := make([]byte, len(msg))
		b := make([]byte, len(msg))
		got.Encrypt(a, msg)
		want.Encrypt(b, msg)
		if !bytes.Equal(a, b) {
			t.Errorf("%s: ciphertext differs from the docs/wire.md key", name)
		}
		if Confidential(name) && bytes.Equal(a[8:], msg[8:]) {
			t.Errorf("%s: claims confidentiality but left the payload in clear", name)
		}
	}
}

func TestUnknownCipher(t *testing.T) {
	pass := DeriveKey("k")
	for _, name := range []string{"", "AES", "aes-256", "chacha20", "aes "} {
		block, err := New(name, pass)
		if block != nil {
			t.Errorf("New(%q) returned a block", name)
		}
		if !errors.Is(err, ErrUnknownCipher) {
			t.Errorf("New(%q) error %v does not wrap ErrUnknownCipher", name, err)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, `"`+name+`"`) {
			t.Errorf("New(%q) error %q does not quote the bad name", name, msg)
		}
		for _, valid := range Names() {
			if !strings.Contains(msg, valid) {
				t.Errorf("New(%q) error %q does not list %q", name, msg, valid)
			}
		}
	}
}

func TestWrongPassLength(t *testing.T) {
	for _, name := range Names() {
		for _, n := range []int{0, 16, 31, 33} {
			block, err := New(name, make([]byte, n))
			if name == "null" {
				if block != nil || err != nil {
					t.Errorf("New(null, %d bytes) = %v, %v; want nil, nil", n, block, err)
				}
				continue
			}
			if err == nil || block != nil {
				t.Errorf("New(%q, %d-byte pass) = %v, %v; want an error", name, n, block, err)
			}
		}
	}
}

func TestProperties(t *testing.T) {
	for _, name := range append(Names(), "bogus") {
		wantAuth := name == "aes-128-gcm"
		wantConf := !slices.Contains([]string{"none", "null", "xor", "bogus"}, name)
		if got := Authenticated(name); got != wantAuth {
			t.Errorf("Authenticated(%q) = %v, want %v", name, got, wantAuth)
		}
		if got := Confidential(name); got != wantConf {
			t.Errorf("Confidential(%q) = %v, want %v", name, got, wantConf)
		}
	}
}

// TestConcurrentDirections encrypts and decrypts on one BlockCrypt from two
// goroutines, as kcp-go does; under -race it catches ciphers with shared
// scratch state (gmsm's SM4 had it).
func TestConcurrentDirections(t *testing.T) {
	pass := DeriveKey("concurrent")
	for _, name := range Names() {
		block, err := New(name, pass)
		if err != nil || block == nil || Authenticated(name) {
			continue // null has no cipher; GCM is an AEAD that kcp-go seals, not encrypts
		}
		t.Run(name, func(t *testing.T) {
			want := make([]byte, 1024)
			for i := range want {
				want[i] = byte(i)
			}
			sealed := make([]byte, len(want))
			block.Encrypt(sealed, want)
			done := make(chan struct{})
			go func() {
				defer close(done)
				buf := make([]byte, len(want))
				for range 200 {
					block.Encrypt(buf, want)
				}
			}()
			out := make([]byte, len(want))
			for range 200 {
				block.Decrypt(out, sealed)
				if string(out) != string(want) {
					t.Fatal("decrypt gave wrong bytes while another goroutine encrypted")
				}
			}
			<-done
		})
	}
}
