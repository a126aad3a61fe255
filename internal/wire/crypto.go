package wire

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	kcp "github.com/xtaci/kcp-go/v5"
)

// Sizes of the crypto header of the non-AEAD ciphers.
const (
	// NonceSize is the size of the random nonce that starts a datagram.
	NonceSize = 16
	// CRCSize is the size of the IEEE CRC-32 that follows the nonce; it
	// covers everything after itself.
	CRCSize = 4
	// CryptHeaderSize is the whole crypto header: nonce and CRC.
	CryptHeaderSize = NonceSize + CRCSize
)

// aead is the part of kcp-go's AEAD BlockCrypt (returned by NewAESGCMCrypt)
// that Open needs. kcp-go's own Encrypt and Decrypt panic on that type.
type aead interface {
	Open(dst, nonce, ciphertext, additionalData []byte) ([]byte, error)
	NonceSize() int
	Overhead() int
}

// Open removes the crypto layer from a datagram and returns what it
// protects: the FEC header and KCP segments, or the KCP segments alone when
// FEC is off. The layout follows from block, as built by crypt.New:
//
//   - nil (cipher "null"): there is no crypto layer; Open returns a copy.
//   - an AEAD (aes-128-gcm): nonce | sealed payload | tag, no additional
//     data. A datagram that does not open yields ErrAuth.
//   - any other BlockCrypt (the block ciphers, salsa20, xor, none): the whole
//     datagram is deciphered, giving nonce(16) | crc32(4) | payload, and the
//     CRC is checked over the payload. A mismatch yields ErrChecksum.
//
// A datagram too small for its header yields ErrShort. Open never modifies
// datagram, and the payload it returns does not alias it.
func Open(block kcp.BlockCrypt, datagram []byte) ([]byte, error) {
	switch b := block.(type) {
	case nil:
		return append([]byte(nil), datagram...), nil
	case aead:
		n := b.NonceSize()
		if len(datagram) < n+b.Overhead() {
			return nil, fmt.Errorf("%w: %d-byte datagram, AEAD needs at least %d", ErrShort, len(datagram), n+b.Overhead())
		}
		payload, err := b.Open(nil, datagram[:n], datagram[n:], nil)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrAuth, err)
		}
		return payload, nil
	default:
		if len(datagram) < CryptHeaderSize {
			return nil, fmt.Errorf("%w: %d-byte datagram, crypto header needs %d", ErrShort, len(datagram), CryptHeaderSize)
		}
		plain := append([]byte(nil), datagram...)
		block.Decrypt(plain, plain)
		want := binary.LittleEndian.Uint32(plain[NonceSize:])
		if got := crc32.ChecksumIEEE(plain[CryptHeaderSize:]); got != want {
			return nil, fmt.Errorf("%w: crc32 %08x, header says %08x", ErrChecksum, got, want)
		}
		return plain[CryptHeaderSize:], nil
	}
}
