// Package cmac implements AES-CMAC (NIST SP 800-38B, RFC 4493).
//
// CMAC is the pseudo-random function under every symmetric key Sluice derives
// (package kdf), under the card's secure messaging (package card) and under the
// meters' telemetry frames. It is written here rather than imported because
// the module proxy serves no CMAC package; it is small, constant-time in the
// key and the message, and checked against the RFC 4493 vectors.
//
// A MAC is a hash.Hash, so callers can stream long inputs. Sum never mutates
// the running state, so one MAC can be reused after Reset.
package cmac

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"fmt"
	"hash"
)

// Size is the length in bytes of a full AES-CMAC tag.
const Size = aes.BlockSize

// MAC is an AES-CMAC computation in progress.
type MAC struct {
	block  cipher.Block
	k1, k2 [aes.BlockSize]byte
	x      [aes.BlockSize]byte // running CBC state
	buf    [aes.BlockSize]byte // last, possibly full, block not yet processed
	n      int                 // bytes in buf
}

var _ hash.Hash = (*MAC)(nil)

// New returns a MAC keyed with an AES key of 16, 24 or 32 bytes.
func New(key []byte) (*MAC, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("cmac: %w", err)
	}
	return NewWithCipher(b), nil
}

// NewWithCipher returns a MAC over an existing AES block cipher, for callers
// that already hold one (it saves the key schedule on hot paths).
func NewWithCipher(b cipher.Block) *MAC {
	m := &MAC{block: b}
	var l [aes.BlockSize]byte
	b.Encrypt(l[:], l[:])
	shiftLeft(&m.k1, &l)
	shiftLeft(&m.k2, &m.k1)
	return m
}

// shiftLeft sets dst to src doubled in GF(2^128): a left shift by one bit,
// folding the carry back with the constant Rb = 0x87 (RFC 4493 section 2.3).
func shiftLeft(dst, src *[aes.BlockSize]byte) {
	var carry byte
	for i := aes.BlockSize - 1; i >= 0; i-- {
		b := src[i]
		dst[i] = b<<1 | carry
		carry = b >> 7
	}
	// Constant time: the mask is 0xff when the top bit was set.
	dst[aes.BlockSize-1] ^= 0x87 & -carry
}

// Write absorbs p. It never returns an error.
func (m *MAC) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		// The final block must stay in buf until Sum, because it is processed
		// with K1 or K2, so a full buf is only flushed when more data arrives.
		if m.n == aes.BlockSize {
			subtle.XORBytes(m.x[:], m.x[:], m.buf[:])
			m.block.Encrypt(m.x[:], m.x[:])
			m.n = 0
		}
		c := copy(m.buf[m.n:], p)
		m.n += c
		p = p[c:]
	}
	return n, nil
}

// Sum appends the 16-byte tag of everything written so far to b.
func (m *MAC) Sum(b []byte) []byte {
	var last [aes.BlockSize]byte
	if m.n == aes.BlockSize {
		subtle.XORBytes(last[:], m.buf[:], m.k1[:])
	} else {
		copy(last[:], m.buf[:m.n])
		last[m.n] = 0x80
		subtle.XORBytes(last[:], last[:], m.k2[:])
	}
	subtle.XORBytes(last[:], last[:], m.x[:])
	m.block.Encrypt(last[:], last[:])
	return append(b, last[:]...)
}

// Reset forgets everything written, keeping the key.
func (m *MAC) Reset() {
	m.x = [aes.BlockSize]byte{}
	m.n = 0
}

// Size returns the tag length, 16.
func (m *MAC) Size() int { return Size }

// BlockSize returns the AES block size, 16.
func (m *MAC) BlockSize() int { return aes.BlockSize }

// Sum returns the AES-CMAC tag of msg under key.
func Sum(key, msg []byte) ([]byte, error) {
	m, err := New(key)
	if err != nil {
		return nil, err
	}
	m.Write(msg)
	return m.Sum(nil), nil
}

// Equal reports whether two tags are equal, in time independent of their
// contents. Always compare tags with it.
func Equal(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
