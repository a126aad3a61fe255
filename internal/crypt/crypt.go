// Package crypt maps kcptun cipher names to kcp-go packet ciphers and
// derives the key material they use, exactly as the kcptun binaries do.
// AES-CFB (aes, aes-128, aes-192) runs in the package's own assembly on
// amd64 processors with AES instructions, with kcp-go's output byte for
// byte; NewReference gives kcp-go's own implementation of every cipher.
//
// The mapping (name, kcp-go constructor, slice of the derived key) is the
// wire contract in docs/wire.md: both ends must pick the same name and key, and a
// mismatch is silent on the wire, so every name here must behave
// byte-for-byte like the binaries.
package crypt

import (
	"crypto/pbkdf2"
	"crypto/sha1"
	"errors"
	"fmt"
	"strings"

	kcp "github.com/xtaci/kcp-go/v5"
)

// Parameters of the key derivation used by kcptun.
const (
	kdfSalt       = "kcp-go"
	kdfIterations = 4096
	keySize       = 32
)

// ErrUnknownCipher is wrapped by the error New returns for a cipher name it
// does not know.
var ErrUnknownCipher = errors.New("unknown cipher")

// cipherSpec describes one supported cipher name.
type cipherSpec struct {
	name string
	// keyLen is how many leading bytes of the derived key the constructor
	// receives; zero means the cipher has no kcp-go BlockCrypt at all.
	keyLen int
	build  func(key []byte) (kcp.BlockCrypt, error)
	// ref, where set, is kcp-go's own constructor, which build replaces
	// with a faster cipher of the same output.
	ref           func(key []byte) (kcp.BlockCrypt, error)
	authenticated bool
	confidential  bool
}

// specs is kept in the order of the cipher table in docs/wire.md.
var specs = []cipherSpec{
	{name: "aes", keyLen: 32, build: newAESBlockCrypt, ref: kcp.NewAESBlockCrypt, confidential: true},
	{name: "aes-128", keyLen: 16, build: newAESBlockCrypt, ref: kcp.NewAESBlockCrypt, confidential: true},
	{name: "aes-192", keyLen: 24, build: newAESBlockCrypt, ref: kcp.NewAESBlockCrypt, confidential: true},
	{name: "aes-128-gcm", keyLen: 16, build: kcp.NewAESGCMCrypt, authenticated: true, confidential: true},
	{name: "salsa20", keyLen: 32, build: kcp.NewSalsa20BlockCrypt, confidential: true},
	{name: "blowfish", keyLen: 32, build: kcp.NewBlowfishBlockCrypt, confidential: true},
	{name: "twofish", keyLen: 32, build: kcp.NewTwofishBlockCrypt, confidential: true},
	{name: "cast5", keyLen: 16, build: kcp.NewCast5BlockCrypt, confidential: true},
	{name: "3des", keyLen: 24, build: kcp.NewTripleDESBlockCrypt, confidential: true},
	{name: "tea", keyLen: 16, build: kcp.NewTEABlockCrypt, confidential: true},
	{name: "xtea", keyLen: 16, build: kcp.NewXTEABlockCrypt, confidential: true},
	// gmsm's SM4 keeps scratch buffers in the cipher object, and kcp-go
	// encrypts and decrypts on one BlockCrypt from different goroutines, so
	// each direction gets an instance of its own.
	{name: "sm4", keyLen: 16, build: splitDirections(kcp.NewSM4BlockCrypt), confidential: true},
	// xor uses a keystream that is the same for every packet, so it only
	// obscures the payload; it is not counted as confidential.
	{name: "xor", keyLen: 32, build: kcp.NewSimpleXORBlockCrypt},
	// none keeps the nonce and CRC header but sends the payload in clear.
	{name: "none", keyLen: 32, build: kcp.NewNoneBlockCrypt},
	// null has no crypto header at all.
	{name: "null"},
}

func lookup(name string) (cipherSpec, bool) {
	for _, s := range specs {
		if s.name == name {
			return s, true
		}
	}
	return cipherSpec{}, false
}

// DeriveKey returns the 32-byte key material kcptun derives from a user's key
// string: PBKDF2 with HMAC-SHA1, the salt "kcp-go" and 4096 iterations.
//
// DeriveKey panics only if the Go runtime refuses the derivation, which
// happens when FIPS 140 enforcement (GODEBUG=fips140=only) is on: the salt
// and hash kcptun uses are not approved there.
func DeriveKey(key string) []byte {
	out, err := pbkdf2.Key(sha1.New, key, []byte(kdfSalt), kdfIterations, keySize)
	if err != nil {
		panic(fmt.Sprintf("crypt: key derivation refused by the runtime: %v", err))
	}
	return out
}

// New returns the kcp-go BlockCrypt for the cipher called name, keyed from
// pass, which must be the 32 bytes returned by DeriveKey. Each cipher takes
// the prefix of pass listed in docs/wire.md (all of it for aes, 16 bytes for
// aes-128, and so on).
//
// For "null" New returns (nil, nil): such sessions carry no crypto header
// at all. An unknown name yields an error wrapping ErrUnknownCipher that
// quotes the name and lists the valid ones; names are case-sensitive, as in
// the kcptun binaries (which, unlike New, silently fall back to aes).
func New(name string, pass []byte) (kcp.BlockCrypt, error) {
	return build(name, pass, false)
}

// NewReference is New with kcp-go's own implementation of every cipher, as
// the kcptun binaries run them; New's may be faster (aes, aes-128 and
// aes-192 decipher several blocks at a time) but produce the same bytes.
// It serves the binaries' stand-in in tests and benchmarks.
func NewReference(name string, pass []byte) (kcp.BlockCrypt, error) {
	return build(name, pass, true)
}

func build(name string, pass []byte, reference bool) (kcp.BlockCrypt, error) {
	spec, ok := lookup(name)
	if !ok {
		return nil, fmt.Errorf("%w %q (valid: %s)", ErrUnknownCipher, name, strings.Join(Names(), ", "))
	}
	if spec.build == nil {
		return nil, nil
	}
	if len(pass) != keySize {
		return nil, fmt.Errorf("crypt: cipher %q needs the %d-byte key from DeriveKey, got %d bytes", name, keySize, len(pass))
	}
	// Hand the constructor its own copy so later changes to pass cannot
	// reach ciphers that keep the slice.
	key := append([]byte(nil), pass[:spec.keyLen]...)
	construct := spec.build
	if reference && spec.ref != nil {
		construct = spec.ref
	}
	block, err := construct(key)
	if err != nil {
		return nil, fmt.Errorf("crypt: cipher %q: %w", name, err)
	}
	return block, nil
}

// splitDirections wraps a constructor whose BlockCrypt is not safe for an
// Encrypt running concurrently with a Decrypt: the result uses one instance
// for each. Concurrent calls in the same direction are serialised by kcp-go.
func splitDirections(build func([]byte) (kcp.BlockCrypt, error)) func([]byte) (kcp.BlockCrypt, error) {
	return func(key []byte) (kcp.BlockCrypt, error) {
		enc, err := build(key)
		if err != nil {
			return nil, err
		}
		dec, err := build(key)
		if err != nil {
			return nil, err
		}
		return directional{enc: enc, dec: dec}, nil
	}
}

// directional sends each direction to its own cipher instance.
type directional struct{ enc, dec kcp.BlockCrypt }

func (d directional) Encrypt(dst, src []byte) { d.enc.Encrypt(dst, src) }
func (d directional) Decrypt(dst, src []byte) { d.dec.Decrypt(dst, src) }

// Names returns every supported cipher name, in the order of the cipher
// table in docs/wire.md; "aes" is first and is kcptun's default. The caller may
// modify the returned slice.
func Names() []string {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.name
	}
	return names
}

// Bytes the packet format puts around each packet's payload, by kind of
// cipher: a block cipher's random nonce and CRC-32 before it, or AES-GCM's
// nonce before it and its tag after it.
const (
	blockHeaderSize = 16 + 4
	aeadHeaderSize  = 12 + 16
)

// HeaderSize returns how many bytes the named cipher adds to every packet:
// 0 for null, 28 for aes-128-gcm (nonce and tag) and 20 for the others
// (nonce and CRC-32, kept even by none and xor). Unknown names report 0.
func HeaderSize(name string) int {
	s, ok := lookup(name)
	switch {
	case !ok || s.build == nil:
		return 0
	case s.authenticated:
		return aeadHeaderSize
	default:
		return blockHeaderSize
	}
}

// Authenticated reports whether the named cipher authenticates each packet
// cryptographically, which only aes-128-gcm does. The CRC-32 the other
// ciphers carry detects a wrong key or corruption but does not stop forgery.
// Unknown names report false.
func Authenticated(name string) bool {
	s, ok := lookup(name)
	return ok && s.authenticated
}

// Confidential reports whether the named cipher hides the payload from an
// observer. It is false for none and null, which send it in clear, for xor,
// whose keystream is the same for every packet, and for unknown names.
func Confidential(name string) bool {
	s, ok := lookup(name)
	return ok && s.confidential
}
