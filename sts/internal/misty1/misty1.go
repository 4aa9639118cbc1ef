// Package misty1 implements the MISTY1 block cipher (RFC 2994) with the
// recommended eight rounds: a 128-bit key and a 64-bit block.
//
// STS uses MISTY1 as encryption algorithm EA11 with 128-bit decoder keys. The
// cipher works on 16-bit words, so a block is handled as a uint64 (big-endian
// bytes) and the expanded key is computed once per key: encrypting or
// decrypting a block allocates nothing and runs no key schedule.
//
// The S-boxes are table lookups indexed by secret data. Tokens are encrypted
// in the head-end, one at a time, and decrypted in a meter that holds only its
// own key, so cache-timing leakage is outside the threat model here; it would
// not be for a general-purpose library.
package misty1

import (
	"encoding/binary"
	"fmt"
)

// KeySize and BlockSize are the sizes in bytes of a MISTY1 key and block.
const (
	KeySize   = 16
	BlockSize = 8
)

// Cipher is a MISTY1 key schedule. The zero value is not usable; use New.
type Cipher struct {
	// ek holds EK[0..15] of RFC 2994: K[i] in 0..7 and K'[i] in 8..15.
	ek [16]uint16
}

// New expands a 16-byte key.
func New(key []byte) (*Cipher, error) {
	var c Cipher
	if err := c.init(key); err != nil {
		return nil, err
	}
	return &c, nil
}

// Init expands key into c in place, for callers that embed a Cipher by value.
func (c *Cipher) Init(key []byte) error { return c.init(key) }

func (c *Cipher) init(key []byte) error {
	if len(key) != KeySize {
		return fmt.Errorf("misty1: key is %d bytes, want %d", len(key), KeySize)
	}
	for i := range 8 {
		c.ek[i] = binary.BigEndian.Uint16(key[2*i:])
	}
	for i := range 8 {
		c.ek[i+8] = fi(c.ek[i], c.ek[(i+1)%8])
	}
	return nil
}

// fi is the FI function: two rounds of S9/S7 around the 16-bit subkey ki,
// whose high 7 bits (KIij1) and low 9 bits (KIij2) enter separately.
func fi(in, ki uint16) uint16 {
	d9 := in >> 7
	d7 := in & 0x7f
	d9 = s9[d9] ^ d7
	d7 = uint16(s7[d7]) ^ (d9 & 0x7f)
	d7 ^= ki >> 9
	d9 ^= ki & 0x1ff
	d9 = s9[d9] ^ d7
	return d7<<9 | d9
}

// fo is the FO function of round k (0..7).
func (c *Cipher) fo(in uint32, k int) uint32 {
	t0 := uint16(in >> 16)
	t1 := uint16(in)
	t0 ^= c.ek[k]
	t0 = fi(t0, c.ek[(k+5)%8+8])
	t0 ^= t1
	t1 ^= c.ek[(k+2)%8]
	t1 = fi(t1, c.ek[(k+1)%8+8])
	t1 ^= t0
	t0 ^= c.ek[(k+7)%8]
	t0 = fi(t0, c.ek[(k+3)%8+8])
	t0 ^= t1
	t1 ^= c.ek[(k+4)%8]
	return uint32(t1)<<16 | uint32(t0)
}

// fl is the key-dependent linear function FL with index k (0..9).
func (c *Cipher) fl(in uint32, k int) uint32 {
	d0 := uint16(in >> 16)
	d1 := uint16(in)
	if k%2 == 0 {
		d1 ^= d0 & c.ek[k/2]
		d0 ^= d1 | c.ek[(k/2+6)%8+8]
	} else {
		d1 ^= d0 & c.ek[((k-1)/2+2)%8+8]
		d0 ^= d1 | c.ek[((k-1)/2+4)%8]
	}
	return uint32(d0)<<16 | uint32(d1)
}

// flInv inverts fl.
func (c *Cipher) flInv(in uint32, k int) uint32 {
	d0 := uint16(in >> 16)
	d1 := uint16(in)
	if k%2 == 0 {
		d0 ^= d1 | c.ek[(k/2+6)%8+8]
		d1 ^= d0 & c.ek[k/2]
	} else {
		d0 ^= d1 | c.ek[((k-1)/2+4)%8]
		d1 ^= d0 & c.ek[((k-1)/2+2)%8+8]
	}
	return uint32(d0)<<16 | uint32(d1)
}

// Encrypt64 encrypts one block given as a big-endian uint64.
func (c *Cipher) Encrypt64(p uint64) uint64 {
	d0 := uint32(p >> 32)
	d1 := uint32(p)
	// Eight Feistel rounds; FL (k = 0..7) on both halves before every even
	// round, and FL 8, 9 at the end.
	for r := 0; r < 8; r += 2 {
		d0 = c.fl(d0, r)
		d1 = c.fl(d1, r+1)
		d1 ^= c.fo(d0, r)
		d0 ^= c.fo(d1, r+1)
	}
	d0 = c.fl(d0, 8)
	d1 = c.fl(d1, 9)
	return uint64(d1)<<32 | uint64(d0)
}

// Decrypt64 decrypts one block given as a big-endian uint64.
func (c *Cipher) Decrypt64(x uint64) uint64 {
	d1 := uint32(x >> 32)
	d0 := uint32(x)
	d0 = c.flInv(d0, 8)
	d1 = c.flInv(d1, 9)
	for r := 6; r >= 0; r -= 2 {
		d0 ^= c.fo(d1, r+1)
		d1 ^= c.fo(d0, r)
		d0 = c.flInv(d0, r)
		d1 = c.flInv(d1, r+1)
	}
	return uint64(d0)<<32 | uint64(d1)
}

// Encrypt encrypts the first block of src into dst (crypto/cipher.Block).
func (c *Cipher) Encrypt(dst, src []byte) {
	binary.BigEndian.PutUint64(dst[:BlockSize], c.Encrypt64(binary.BigEndian.Uint64(src[:BlockSize])))
}

// Decrypt decrypts the first block of src into dst (crypto/cipher.Block).
func (c *Cipher) Decrypt(dst, src []byte) {
	binary.BigEndian.PutUint64(dst[:BlockSize], c.Decrypt64(binary.BigEndian.Uint64(src[:BlockSize])))
}

// BlockSize returns BlockSize (crypto/cipher.Block).
func (c *Cipher) BlockSize() int { return BlockSize }
