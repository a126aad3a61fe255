//go:build !amd64 || purego

package crypt

// haveAESCFBAsm reports whether the assembly AES-CFB runs here: not on
// this architecture, where kcp-go's own cipher serves.
const haveAESCFBAsm = false

func cfbEncryptBlocks(_ *byte, _ int, _, _ *byte, _ int, _ *[16]byte) {
	panic("crypt: no assembly AES-CFB on this architecture")
}

func cfbEncryptBlocks8(_ *byte, _ int, _ *[8]*byte, _ int, _ *[8][16]byte) {
	panic("crypt: no assembly AES-CFB on this architecture")
}

func cfbDecryptBlocks(_ *byte, _ int, _, _ *byte, _ int, _, _ *[16]byte) {
	panic("crypt: no assembly AES-CFB on this architecture")
}
