package sts

import (
	"crypto/des"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
)

// DKGA02 derives a 64-bit decoder key from a 64-bit DES vending key:
//
//	data = PANBlock XOR ControlBlock
//	DK   = DES(VendingKey, data) XOR data XOR VendingKey
//
// It is weak: the data block is public (printed on the meter and in the
// key change request), so one decoder key read out of one meter gives a
// known plaintext/ciphertext pair for DES under the vending key, and a 2^56
// search (days on rented hardware) recovers the vending key of the whole
// supply group. It is kept for existing meters and for the attack lab.
func DKGA02(vendingKey []byte, id KeyID, pan PAN) ([]byte, error) {
	if len(vendingKey) != 8 {
		return nil, fmt.Errorf("%w: vending_key is %d bytes, DKGA02 needs 8", ErrFormat, len(vendingKey))
	}
	if _, err := ParsePAN(string(pan)); err != nil {
		return nil, err
	}
	cb, err := ControlBlock(id)
	if err != nil {
		return nil, err
	}
	data := pan.Block() ^ cb
	return DKGA02Block(vendingKey, data), nil
}

// DKGA02Block is DKGA02 on a prepared data block (PAN block XOR control
// block), exported for the attack lab's key search.
func DKGA02Block(vendingKey []byte, data uint64) []byte {
	c, err := des.NewCipher(vendingKey)
	if err != nil {
		panic(err) // only the length can fail, and callers pass 8 bytes
	}
	var in, out [8]byte
	binary.BigEndian.PutUint64(in[:], data)
	c.Encrypt(out[:], in[:])
	dk := binary.BigEndian.Uint64(out[:]) ^ data ^ binary.BigEndian.Uint64(vendingKey)
	binary.BigEndian.PutUint64(out[:], dk)
	return out[:]
}

// DKGA04 derives a decoder key from a 160-bit vending key with one
// HMAC-SHA-256 (NIST SP 800-108, feedback mode without IV or counter; one
// block is enough for 64 or 128 bits), truncated to the algorithm's key
// size: 64 bits for EA07, 128 bits for EA11.
func DKGA04(vendingKey []byte, id KeyID, pan PAN, base BaseDate, ea EA) ([]byte, error) {
	if len(vendingKey) != 20 {
		return nil, fmt.Errorf("%w: vending_key is %d bytes, DKGA04 needs 20", ErrFormat, len(vendingKey))
	}
	msg, err := DKGA04Message(id, pan, base, ea)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, vendingKey)
	m.Write(msg)
	return m.Sum(nil)[:ea.KeySize()], nil
}

// DKGA04Message returns the HMAC input Label || 0x00 || Context || L:
// Label = 4 items: "04", the base date's last two digits, the EA and the
// TI; Context = 4 items: SGC (6 digits), KT, KRN and the 18-digit PAN. Each
// part is an item count byte then length-prefixed ASCII items; L is the
// output length in bits, 4 bytes big-endian.
func DKGA04Message(id KeyID, pan PAN, base BaseDate, ea EA) ([]byte, error) {
	if err := id.Validate(); err != nil {
		return nil, err
	}
	if err := checkBase(base); err != nil {
		return nil, err
	}
	if !ea.valid() {
		return nil, fmt.Errorf("%w: ea %d is not 07 or 11", ErrFormat, uint8(ea))
	}
	if _, err := ParsePAN(string(pan)); err != nil {
		return nil, err
	}
	items := func(b []byte, ss ...string) []byte {
		b = append(b, byte(len(ss)))
		for _, s := range ss {
			b = append(b, byte(len(s)))
			b = append(b, s...)
		}
		return b
	}
	msg := items(nil, "04", fmt.Sprintf("%02d", int(base)%100), ea.String(), fmt.Sprintf("%02d", id.TI))
	msg = append(msg, 0)
	msg = items(msg, fmt.Sprintf("%06d", id.SGC), strconv.Itoa(id.KT), strconv.Itoa(id.KRN), string(pan))
	return binary.BigEndian.AppendUint32(msg, uint32(ea.KeySize()*8)), nil
}
