package crypt

import (
	"crypto/aes"
	"crypto/subtle"
	"slices"

	kcp "github.com/xtaci/kcp-go/v5"
)

// cfbIV is the fixed initial vector of kcp-go's CFB mode: every datagram
// is enciphered from it, the random nonce in its first 16 bytes standing in
// for a per-datagram IV (docs/wire.md).
var cfbIV = [16]byte{167, 115, 79, 156, 18, 172, 27, 1, 164, 21, 242, 193, 252, 120, 230, 107}

// aesCFB is the aes, aes-128 and aes-192 packet cipher: AES in CFB mode
// with 128-bit feedback from cfbIV over the whole datagram, byte for byte
// what kcp-go's AES BlockCrypt produces. Where the processor has AES
// instructions it runs whole datagrams in assembly. Enciphering a datagram
// is one chain, each block waiting for the one before, so it pays one call
// per datagram instead of one per block, and EncryptEach runs eight
// datagrams' chains side by side. Deciphering, whose blocks do not depend
// on each other, works on eight blocks at a time. It holds only the key
// schedule, so concurrent calls are safe.
type aesCFB struct {
	rounds int
	keys   [16 * 15]byte // the expanded key, round keys in order
	ivKS   [16]byte      // the keystream of every datagram's first block
}

// minInterleaved is the shortest datagram EncryptEach enciphers beside
// others; shorter ones (ACKs) go alone.
const minInterleaved = 128

// newAESBlockCrypt returns the fast AES-CFB cipher where the processor
// supports it, and kcp-go's own otherwise.
func newAESBlockCrypt(key []byte) (kcp.BlockCrypt, error) {
	if !haveAESCFBAsm {
		return kcp.NewAESBlockCrypt(key)
	}
	block, err := aes.NewCipher(key) // also the key size check
	if err != nil {
		return nil, err
	}
	c := &aesCFB{rounds: len(key)/4 + 6}
	expandKey(c.keys[:16*(c.rounds+1)], key)
	block.Encrypt(c.ivKS[:], cfbIV[:])
	return c, nil
}

// Encrypt enciphers src into dst, which must be as long and either be src
// or not overlap it.
func (c *aesCFB) Encrypt(dst, src []byte) {
	if len(src) == 0 {
		return
	}
	ks := c.ivKS
	full := len(src) &^ 15
	cfbEncryptBlocks(&c.keys[0], c.rounds, &dst[0], &src[0], full/16, &ks)
	subtle.XORBytes(dst[full:len(src)], src[full:], ks[:])
}

// EncryptEach enciphers every datagram in bufs in place, as Encrypt(b, b)
// would one by one, eight datagrams at a time where it can. It sorts bufs,
// longest first, so that the datagrams enciphered side by side are about
// as long.
func (c *aesCFB) EncryptEach(bufs [][]byte) {
	slices.SortFunc(bufs, func(a, b []byte) int { return len(b) - len(a) })
	i := 0
	for ; i+8 <= len(bufs) && len(bufs[i+7]) >= minInterleaved; i += 8 {
		c.encrypt8((*[8][]byte)(bufs[i : i+8]))
	}
	for _, b := range bufs[i:] {
		c.Encrypt(b, b)
	}
}

// encrypt8 enciphers eight datagrams, longest first, in place: the blocks
// they all have side by side, then the rest of each alone.
func (c *aesCFB) encrypt8(bufs *[8][]byte) {
	var ptrs [8]*byte
	var ks [8][16]byte
	n := len(bufs[7]) / 16
	for j, b := range bufs {
		ptrs[j] = &b[0]
		ks[j] = c.ivKS
	}
	cfbEncryptBlocks8(&c.keys[0], c.rounds, &ptrs, n, &ks)
	for j, b := range bufs {
		b = b[16*n:]
		full := len(b) &^ 15
		if full > 0 {
			cfbEncryptBlocks(&c.keys[0], c.rounds, &b[0], &b[0], full/16, &ks[j])
		}
		subtle.XORBytes(b[full:], b[full:], ks[j][:])
	}
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
