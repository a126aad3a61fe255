//go:build !purego

package crypt

import "golang.org/x/sys/cpu"

// haveAESCFBAsm reports whether the assembly AES-CFB runs here.
var haveAESCFBAsm = cpu.X86.HasAES && cpu.X86.HasSSE41

// cfbEncryptBlocks enciphers n 16-byte blocks of src into dst in AES-CFB,
// with the expanded key xk of the given number of rounds. ks holds the
// keystream for the first block and receives the one for the bytes after
// the last.
//
//go:noescape
func cfbEncryptBlocks(xk *byte, rounds int, dst, src *byte, n int, ks *[16]byte)

// cfbEncryptBlocks8 is cfbEncryptBlocks in place on eight buffers at once,
// n blocks of each, with a keystream for each in ks.
//
//go:noescape
func cfbEncryptBlocks8(xk *byte, rounds int, bufs *[8]*byte, n int, ks *[8][16]byte)

// cfbDecryptBlocks deciphers n 16-byte blocks of src into dst, whose first
// block was enciphered from the feedback iv, and leaves in ks the keystream
// for the bytes after them.
//
//go:noescape
func cfbDecryptBlocks(xk *byte, rounds int, dst, src *byte, n int, iv, ks *[16]byte)
