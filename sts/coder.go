package sts

import (
	"encoding/binary"
	"fmt"

	"sluice/sts/internal/misty1"
)

// Coder encrypts and decrypts tokens under one decoder key. It holds the
// expanded key, so a vending head-end that keeps one Coder per meter pays
// the key schedule once: sealing a token then allocates nothing. A Coder is
// immutable after construction and safe for concurrent use.
type Coder struct {
	ea    EA
	sta   staCipher
	misty misty1.Cipher
}

// NewEA11 returns a Coder for EA11 (MISTY1) under a 16-byte decoder key.
func NewEA11(decoderKey []byte) (*Coder, error) { return NewCoder(EA11, decoderKey, nil) }

// NewEA07 returns a Coder for EA07 (STA) under an 8-byte decoder key.
func NewEA07(decoderKey []byte, t *STATables) (*Coder, error) { return NewCoder(EA07, decoderKey, t) }

// NewCoder returns a Coder for either algorithm; t is used by EA07 only.
func NewCoder(ea EA, decoderKey []byte, t *STATables) (*Coder, error) {
	c := new(Coder)
	if err := c.init(ea, decoderKey, t); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Coder) init(ea EA, key []byte, t *STATables) error {
	c.ea = ea
	switch ea {
	case EA07:
		if len(key) != 8 {
			return fmt.Errorf("%w: decoder_key is %d bytes, EA07 needs 8", ErrFormat, len(key))
		}
		if t == nil {
			return fmt.Errorf("%w: EA07 needs the STA tables", ErrFormat)
		}
		c.sta = newSTA(t, binary.BigEndian.Uint64(key))
		return nil
	case EA11:
		if len(key) != 16 {
			return fmt.Errorf("%w: decoder_key is %d bytes, EA11 needs 16", ErrFormat, len(key))
		}
		return c.misty.Init(key)
	}
	return fmt.Errorf("%w: ea %d is not 07 or 11", ErrFormat, uint8(ea))
}

// EA returns the Coder's algorithm.
func (c *Coder) EA() EA { return c.ea }

// Encrypt64 applies the bare block cipher, for tests and tools.
func (c *Coder) Encrypt64(b uint64) uint64 {
	if c.ea == EA07 {
		return c.sta.encrypt(b)
	}
	return c.misty.Encrypt64(b)
}

// Decrypt64 inverts Encrypt64.
func (c *Coder) Decrypt64(b uint64) uint64 {
	if c.ea == EA07 {
		return c.sta.decrypt(b)
	}
	return c.misty.Decrypt64(b)
}

// Seal computes the CRC, encrypts (classes 0 and 2) and inserts the class
// bits.
func (c *Coder) Seal(p Plain) (Token, error) {
	if err := p.check(); err != nil {
		return Token{}, err
	}
	b := p.block()
	if p.encrypted() {
		b = c.Encrypt64(b)
	}
	return transpose(p.Class, b), nil
}

// Open extracts the class, decrypts and checks the CRC. On ErrCRC the
// returned Plain holds what the wrong key decrypted, for diagnostics.
func (c *Coder) Open(t Token) (Plain, error) {
	if t.Hi > 3 {
		return Plain{}, fmt.Errorf("%w: token exceeds 66 bits", ErrFormat)
	}
	class, b := untranspose(t)
	if class == 3 {
		return Plain{Class: 3}, fmt.Errorf("%w: class 3 is reserved", ErrUnsupported)
	}
	if class != ClassTest {
		b = c.Decrypt64(b)
	}
	p, err := openBlock(class, b)
	if err != nil {
		return p, err
	}
	return p, p.check()
}

// Credit seals a class 0 credit token for a quantity in the subclass's
// units (0.1 m3 for water), rounded up to what the amount field holds.
func (c *Coder) Credit(subclass, rnd uint8, tid uint32, units uint64) (Token, error) {
	f, err := EncodeAmount(units)
	if err != nil {
		return Token{}, err
	}
	p, err := TIDPlain(ClassCredit, subclass, rnd, tid, f)
	if err != nil {
		return Token{}, err
	}
	return c.Seal(p)
}

// Management seals a TID-bearing class 2 token (set maximum power limit,
// clear credit, set tariff rate, clear tamper, set phase unbalance limit,
// set water meter factor) with its 16-bit value field.
func (c *Coder) Management(subclass, rnd uint8, tid uint32, value uint16) (Token, error) {
	if isKeyChange(subclass) {
		return Token{}, fmt.Errorf("%w: subclass %d is a key change section; use KeyChange", ErrFormat, subclass)
	}
	p, err := TIDPlain(ClassManagement, subclass, rnd, tid, value)
	if err != nil {
		return Token{}, err
	}
	return c.Seal(p)
}
