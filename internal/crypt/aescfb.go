package crypt

import (
	"crypto/aes"
	"crypto/subtle"

	kcp "github.com/xtaci/kcp-go/v5"
)

// cfbIV is the fixed initial vector of kcp-go's CFB mode: every datagram
// is enciphered from it, the random nonce in its first 16 bytes standing in
// for a per-datagram IV (docs/wire.md).
var cfbIV = [16]byte{167, 115, 79, 156, 18, 172, 27, 1, 164, 21, 242, 193, 252, 120, 230, 107}

// aesCFB is the aes, aes-128 and aes-192 packet cipher: AES in CFB mode
// with 128-bit feedback from cfbIV over the whole datagram, byte for byte
// what kcp-go's AES BlockCrypt produces. Where the processor has AES
// instructions it runs whole datagrams in assembly: enciphering pays one
// call per datagram instead of one per block, and deciphering, whose
// blocks do not depend on each other, works on eight blocks at a time.
// It holds only the key schedule, so concurrent calls are safe.
type aesCFB struct {
	rounds int
	keys   [16 * 15]byte // the expanded key, round keys in order
}

// newAESBlockCrypt returns the fast AES-CFB cipher where the processor
// supports it, and kcp-go's own otherwise.
func newAESBlockCrypt(key []byte) (kcp.BlockCrypt, error) {
	if !haveAESCFBAsm {
		return kcp.NewAESBlockCrypt(key)
	}
	if _, err := aes.NewCipher(key); err != nil { // the key size check
		return nil, err
	}
	c := &aesCFB{rounds: len(key)/4 + 6}
	expandKey(c.keys[:16*(c.rounds+1)], key)
	return c, nil
}

// Encrypt enciphers src into dst, which must be as long and either be src
// or not overlap it.
func (c *aesCFB) Encrypt(dst, src []byte) {
	if len(src) == 0 {
		return
	}
	var ks [16]byte
	full := len(src) &^ 15
	cfbEncryptBlocks(&c.keys[0], c.rounds, &dst[0], &src[0], full/16, &cfbIV, &ks)
	subtle.XORBytes(dst[full:len(src)], src[full:], ks[:])
}

// Decrypt deciphers src into dst, with the same rules as Encrypt.
func (c *aesCFB) Decrypt(dst, src []byte) {
	if len(src) == 0 {
		return
	}
	var ks [16]byte
	full := len(src) &^ 15
	cfbDecryptBlocks(&c.keys[0], c.rounds, &dst[0], &src[0], full/16, &cfbIV, &ks)
	subtle.XORBytes(dst[full:len(src)], src[full:], ks[:])
}

// sbox is AES's substitution table, computed from its definition in
// FIPS-197 (section 5.1.1): the multiplicative inverse in GF(2^8), then an
// affine transformation.
var sbox = func() (s [256]byte) {
	for i := range 256 {
		b := gfInverse(byte(i))
		s[i] = b ^ rotl8(b, 1) ^ rotl8(b, 2) ^ rotl8(b, 3) ^ rotl8(b, 4) ^ 0x63
	}
	return s
}()

func rotl8(b byte, n uint) byte { return b<<n | b>>(8-n) }

// gfMul multiplies in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1.
func gfMul(a, b byte) byte {
	var p byte
	for b != 0 {
		if b&1 != 0 {
			p ^= a
		}
		a = xtime(a)
		b >>= 1
	}
	return p
}

// xtime multiplies by x in GF(2^8).
func xtime(a byte) byte {
	if a&0x80 != 0 {
		return a<<1 ^ 0x1b
	}
	return a << 1
}

// gfInverse returns a's multiplicative inverse, a^254 (0 for 0).
func gfInverse(a byte) byte {
	r := byte(1)
	for range 254 {
		r = gfMul(r, a)
	}
	return r
}

// expandKey writes AES's key schedule for key (FIPS-197, section 5.2) into
// xk, which holds 16 bytes per round key: the words in order, each word's
// bytes in key order, as the AES instructions take them.
func expandKey(xk, key []byte) {
	nk := len(key) / 4
	copy(xk, key)
	rcon := byte(1)
	for i := nk; i < len(xk)/4; i++ {
		var t [4]byte
		copy(t[:], xk[4*(i-1):4*i])
		switch {
		case i%nk == 0:
			t = [4]byte{sbox[t[1]] ^ rcon, sbox[t[2]], sbox[t[3]], sbox[t[0]]}
			rcon = xtime(rcon)
		case nk > 6 && i%nk == 4:
			t = [4]byte{sbox[t[0]], sbox[t[1]], sbox[t[2]], sbox[t[3]]}
		}
		for j := range 4 {
			xk[4*i+j] = xk[4*(i-nk)+j] ^ t[j]
		}
	}
}
