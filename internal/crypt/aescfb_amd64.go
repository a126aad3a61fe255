//go:build !purego

package crypt

import "golang.org/x/sys/cpu"

// haveAESCFBAsm reports whether the assembly AES-CFB runs here.
var haveAESCFBAsm = cpu.X86.HasAES && cpu.X86.HasSSE41

// cfbEncryptBlocks enciphers n 16-byte blocks of src into dst in AES-CFB
// from iv, with the expanded key xk of the given number of rounds, and
// leaves in ks the keystream for the bytes after them.
//
//go:noescape
func cfbEncryptBlocks(xk *byte, rounds int, dst, src *byte, n int, iv, ks *[16]byte)

// cfbDecryptBlocks is cfbEncryptBlocks's inverse.
//
//go:noescape
func cfbDecryptBlocks(xk *byte, rounds int, dst, src *byte, n int, iv, ks *[16]byte)
