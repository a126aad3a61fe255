//go:build !purego

#include "textflag.h"

// Register use in the functions below:
//	AX  expanded key          CX  rounds (10, 12 or 14)
//	DI  dst                   SI  src (cfbEncryptBlocks8: the buffers)
//	DX  blocks left           BX  iv, or the block offset
//	R8  ks                    R9  key pointer during one encipherment
//	R10 a buffer (cfbEncryptBlocks8)
//	X0  the block being enciphered (X0-X7 when eight are)
//	X8  the current round key
//	X9  the previous ciphertext block (decrypting), or a scratch block
//	X10 a scratch block

// Steps of enciphering X0 with the round keys at R9.
#define ROUND1(off) MOVOU off(R9), X8; AESENC X8, X0
#define LAST1(off) MOVOU off(R9), X8; AESENCLAST X8, X0

// Steps of enciphering X0-X7 together with the round keys at R9.
#define ROUND8(off) MOVOU off(R9), X8; AESENC X8, X0; AESENC X8, X1; AESENC X8, X2; AESENC X8, X3; AESENC X8, X4; AESENC X8, X5; AESENC X8, X6; AESENC X8, X7
#define LAST8(off) MOVOU off(R9), X8; AESENCLAST X8, X0; AESENCLAST X8, X1; AESENCLAST X8, X2; AESENCLAST X8, X3; AESENCLAST X8, X4; AESENCLAST X8, X5; AESENCLAST X8, X6; AESENCLAST X8, X7
#define WHITEN8 MOVOU (AX), X8; PXOR X8, X0; PXOR X8, X1; PXOR X8, X2; PXOR X8, X3; PXOR X8, X4; PXOR X8, X5; PXOR X8, X6; PXOR X8, X7

// The rounds common to every key size, with R9 moved past the extra rounds
// of the longer keys: nine full rounds and the last one.
#define TAIL_ROUNDS1 ROUND1(16); ROUND1(32); ROUND1(48); ROUND1(64); ROUND1(80); ROUND1(96); ROUND1(112); ROUND1(128); ROUND1(144); LAST1(160)
#define TAIL_ROUNDS8 ROUND8(16); ROUND8(32); ROUND8(48); ROUND8(64); ROUND8(80); ROUND8(96); ROUND8(112); ROUND8(128); ROUND8(144); LAST8(160)

// encipher1 enciphers X0 in place; it is called, so that the key size is
// decided in one place. It uses R9 and X8.
TEXT encipher1<>(SB), NOSPLIT|NOFRAME, $0-0
	MOVQ  AX, R9
	MOVOU (R9), X8
	PXOR  X8, X0
	CMPQ  CX, $12
	JB    e1r10
	JEQ   e1r12
	ROUND1(16)
	ROUND1(32)
	ADDQ  $32, R9
e1r12:
	ROUND1(16)
	ROUND1(32)
	ADDQ  $32, R9
e1r10:
	TAIL_ROUNDS1
	RET

// encipher8 enciphers X0-X7 in place. It uses R9 and X8.
TEXT encipher8<>(SB), NOSPLIT|NOFRAME, $0-0
	MOVQ  AX, R9
	WHITEN8
	CMPQ  CX, $12
	JB    e8r10
	JEQ   e8r12
	ROUND8(16)
	ROUND8(32)
	ADDQ  $32, R9
e8r12:
	ROUND8(16)
	ROUND8(32)
	ADDQ  $32, R9
e8r10:
	TAIL_ROUNDS8
	RET

// func cfbEncryptBlocks(xk *byte, rounds int, dst, src *byte, n int, ks *[16]byte)
//
// ks holds the keystream for the first block (the encipherment of the
// feedback so far) and receives the one for the block after the last.
TEXT ·cfbEncryptBlocks(SB), NOSPLIT, $0-48
	MOVQ  xk+0(FP), AX
	MOVQ  rounds+8(FP), CX
	MOVQ  dst+16(FP), DI
	MOVQ  src+24(FP), SI
	MOVQ  n+32(FP), DX
	MOVQ  ks+40(FP), R8
	MOVOU (R8), X0

enc_loop:
	TESTQ DX, DX
	JZ    enc_done
	MOVOU (SI), X1
	PXOR  X1, X0               // the ciphertext block
	MOVOU X0, (DI)
	CALL  encipher1<>(SB)      // feedback: the next block's keystream
	ADDQ  $16, SI
	ADDQ  $16, DI
	DECQ  DX
	JMP   enc_loop

enc_done:
	MOVOU X0, (R8)
	RET

// One block of buffer j in place: XOR with its keystream in Xj, store.
#define XORSTORE(j, x) MOVQ (8*j)(SI), R10; MOVOU (R10)(BX*1), X9; PXOR X9, x; MOVOU x, (R10)(BX*1)

// func cfbEncryptBlocks8(xk *byte, rounds int, bufs *[8]*byte, n int, ks *[8][16]byte)
//
// cfbEncryptBlocks for eight buffers at once, in place, n blocks of each:
// the feedback chains do not depend on each other, so their encipherments
// overlap in the AES unit instead of waiting for one another.
TEXT ·cfbEncryptBlocks8(SB), NOSPLIT, $0-40
	MOVQ  xk+0(FP), AX
	MOVQ  rounds+8(FP), CX
	MOVQ  bufs+16(FP), SI
	MOVQ  n+24(FP), DX
	MOVQ  ks+32(FP), R8
	MOVOU 0(R8), X0
	MOVOU 16(R8), X1
	MOVOU 32(R8), X2
	MOVOU 48(R8), X3
	MOVOU 64(R8), X4
	MOVOU 80(R8), X5
	MOVOU 96(R8), X6
	MOVOU 112(R8), X7
	XORQ  BX, BX               // the offset of the current block

enc8_loop:
	TESTQ DX, DX
	JZ    enc8_done
	XORSTORE(0, X0)
	XORSTORE(1, X1)
	XORSTORE(2, X2)
	XORSTORE(3, X3)
	XORSTORE(4, X4)
	XORSTORE(5, X5)
	XORSTORE(6, X6)
	XORSTORE(7, X7)
	CALL  encipher8<>(SB)
	ADDQ  $16, BX
	DECQ  DX
	JMP   enc8_loop

enc8_done:
	MOVOU X0, 0(R8)
	MOVOU X1, 16(R8)
	MOVOU X2, 32(R8)
	MOVOU X3, 48(R8)
	MOVOU X4, 64(R8)
	MOVOU X5, 80(R8)
	MOVOU X6, 96(R8)
	MOVOU X7, 112(R8)
	RET

// func cfbDecryptBlocks(xk *byte, rounds int, dst, src *byte, n int, iv, ks *[16]byte)
//
// Block i's keystream is the encipherment of ciphertext block i-1 (of iv
// for the first), so eight blocks are deciphered at a time. X9 holds the
// ciphertext block before the next one to decipher; it is loaded before
// anything is stored, so that dst may be src.
TEXT ·cfbDecryptBlocks(SB), NOSPLIT, $0-56
	MOVQ  xk+0(FP), AX
	MOVQ  rounds+8(FP), CX
	MOVQ  dst+16(FP), DI
	MOVQ  src+24(FP), SI
	MOVQ  n+32(FP), DX
	MOVQ  iv+40(FP), BX
	MOVQ  ks+48(FP), R8
	MOVOU (BX), X9

dec_loop8:
	CMPQ  DX, $8
	JB    dec_loop1
	MOVOU X9, X0
	MOVOU 0(SI), X1
	MOVOU 16(SI), X2
	MOVOU 32(SI), X3
	MOVOU 48(SI), X4
	MOVOU 64(SI), X5
	MOVOU 80(SI), X6
	MOVOU 96(SI), X7
	MOVOU 112(SI), X9
	CALL  encipher8<>(SB)
	MOVOU 0(SI), X10
	PXOR  X10, X0
	MOVOU X0, 0(DI)
	MOVOU 16(SI), X10
	PXOR  X10, X1
	MOVOU X1, 16(DI)
	MOVOU 32(SI), X10
	PXOR  X10, X2
	MOVOU X2, 32(DI)
	MOVOU 48(SI), X10
	PXOR  X10, X3
	MOVOU X3, 48(DI)
	MOVOU 64(SI), X10
	PXOR  X10, X4
	MOVOU X4, 64(DI)
	MOVOU 80(SI), X10
	PXOR  X10, X5
	MOVOU X5, 80(DI)
	MOVOU 96(SI), X10
	PXOR  X10, X6
	MOVOU X6, 96(DI)
	PXOR  X9, X7
	MOVOU X7, 112(DI)
	ADDQ  $128, SI
	ADDQ  $128, DI
	SUBQ  $8, DX
	JMP   dec_loop8

dec_loop1:
	TESTQ DX, DX
	JZ    dec_done
	MOVOU X9, X0
	MOVOU (SI), X9
	CALL  encipher1<>(SB)
	PXOR  X9, X0
	MOVOU X0, (DI)
	ADDQ  $16, SI
	ADDQ  $16, DI
	DECQ  DX
	JMP   dec_loop1

dec_done:
	MOVOU X9, X0
	CALL  encipher1<>(SB)      // the keystream for the bytes after the blocks
	MOVOU X0, (R8)
	RET
