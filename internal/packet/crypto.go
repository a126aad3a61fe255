package packet

import (
	"encoding/binary"
	"hash/crc32"
	"math/rand/v2"

	kcp "github.com/xtaci/kcp-go/v5"
)

// Sizes of the crypto header.
const (
	nonceSize       = 16 // random nonce of the non-AEAD ciphers
	crcSize         = 4  // IEEE CRC-32 over what follows it
	cryptHeaderSize = nonceSize + crcSize
	// MaxDatagram is the largest datagram kcp-go's packet layer handles.
	MaxDatagram = 1500
)

// aead is the part of kcp-go's AEAD BlockCrypt (NewAESGCMCrypt) used here.
// Its Encrypt and Decrypt panic; it seals and opens instead.
type aead interface {
	Seal(dst, nonce, plaintext, additionalData []byte) []byte
	Open(dst, nonce, ciphertext, additionalData []byte) ([]byte, error)
	NonceSize() int
	Overhead() int
}

// batchEncrypter is a BlockCrypt that enciphers several datagrams in one
// call faster than one at a time: internal/crypt's AES-CFB, which runs
// their feedback chains side by side.
type batchEncrypter interface {
	// EncryptEach enciphers every buffer in place, as Encrypt(b, b); it
	// may reorder bufs.
	EncryptEach(bufs [][]byte)
}

// cipher seals and opens datagrams with one kcp-go BlockCrypt.
type cipher struct {
	block kcp.BlockCrypt // nil: no crypto header (cipher "null")
	aead  aead           // non-nil for AES-GCM
	batch batchEncrypter // non-nil if block enciphers in batches
	head  int            // bytes before the payload
	tail  int            // bytes after it (the AEAD tag)
}

func newCipher(b kcp.BlockCrypt) *cipher {
	c := &cipher{block: b}
	switch b := b.(type) {
	case nil:
	case aead:
		c.aead = b
		c.head = b.NonceSize()
		c.tail = b.Overhead()
	default:
		c.head = cryptHeaderSize
		c.batch, _ = b.(batchEncrypter)
	}
	return c
}

// overhead is what the crypto layer adds to a datagram.
func (c *cipher) overhead() int { return c.head + c.tail }

// seal turns buf, whose first c.head bytes are reserved and whose rest is the
// plaintext, into a datagram, in place, with a fresh random nonce; cap(buf)
// must leave room for the tag.
func (c *cipher) seal(buf []byte, rnd *rand.ChaCha8) []byte {
	if c.head > 0 {
		_, _ = rnd.Read(buf[:min(c.head, nonceSize)])
	}
	return c.sealNonce(buf)
}

// sealNonce is seal with the nonce already in place.
func (c *cipher) sealNonce(buf []byte) []byte {
	switch {
	case c.block == nil:
		return buf
	case c.aead != nil:
		return c.aead.Seal(buf[:c.head], buf[:c.head], buf[c.head:], nil)
	default:
		putChecksum(buf)
		c.block.Encrypt(buf, buf)
		return buf
	}
}

// putChecksum writes the CRC-32 of the payload into the crypto header.
func putChecksum(buf []byte) {
	binary.LittleEndian.PutUint32(buf[nonceSize:], crc32.ChecksumIEEE(buf[cryptHeaderSize:]))
}

// sealForQueue is seal for a datagram bound for the Conn's sending queue.
// With a cipher that enciphers in batches it writes the nonce and checksum
// and leaves the encipherment to the queue, which does it for everything
// it sends at once (encipherQueued); otherwise it seals.
func (c *cipher) sealForQueue(buf []byte, rnd *rand.ChaCha8) []byte {
	if c.batch == nil {
		return c.seal(buf, rnd)
	}
	_, _ = rnd.Read(buf[:nonceSize])
	putChecksum(buf)
	return buf
}

// encipherQueued finishes what sealForQueue began, for datagrams about to
// be sent.
func (c *cipher) encipherQueued(bufs [][]byte) {
	if c.batch != nil {
		c.batch.EncryptEach(bufs)
	}
}

// encipherQueuedOne is encipherQueued for one datagram.
func (c *cipher) encipherQueuedOne(buf []byte) {
	if c.batch != nil {
		c.block.Encrypt(buf, buf)
	}
}

// open authenticates and deciphers a datagram in place and returns its
// payload (aliasing buf), or false if it does not authenticate or is too
// short. It allocates nothing either way.
func (c *cipher) open(buf []byte) ([]byte, bool) {
	switch {
	case c.block == nil:
		return buf, true
	case c.aead != nil:
		if len(buf) < c.head+c.tail {
			return nil, false
		}
		p, err := c.aead.Open(buf[c.head:c.head], buf[:c.head], buf[c.head:], nil)
		if err != nil {
			return nil, false
		}
		return p, true
	default:
		if len(buf) < cryptHeaderSize {
			return nil, false
		}
		c.block.Decrypt(buf, buf)
		if crc32.ChecksumIEEE(buf[cryptHeaderSize:]) != binary.LittleEndian.Uint32(buf[nonceSize:]) {
			return nil, false
		}
		return buf[cryptHeaderSize:], true
	}
}
