package sts

import (
	"fmt"
	"math/bits"
)

// Token is a 66-bit STS token as typed on a keypad: bits 65..64 in Hi and
// bits 63..0 in Lo. Its 20-digit decimal form is String.
type Token struct {
	Hi uint8
	Lo uint64
}

// Digits is the number of decimal digits of a token.
const Digits = 20

// ParseToken parses exactly 20 decimal digits whose value fits 66 bits.
func ParseToken(s string) (Token, error) {
	if len(s) != Digits {
		return Token{}, fmt.Errorf("%w: token has %d characters, want %d digits", ErrFormat, len(s), Digits)
	}
	var q, r uint64 // high and low ten digits
	for i := 0; i < Digits; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return Token{}, fmt.Errorf("%w: token character %d is not a digit", ErrFormat, i+1)
		}
		if i < 10 {
			q = q*10 + uint64(c-'0')
		} else {
			r = r*10 + uint64(c-'0')
		}
	}
	hi, lo := bits.Mul64(q, 1e10)
	lo, carry := bits.Add64(lo, r, 0)
	hi += carry
	if hi > 3 {
		return Token{}, fmt.Errorf("%w: token value exceeds 2^66-1", ErrFormat)
	}
	return Token{Hi: uint8(hi), Lo: lo}, nil
}

// AppendDigits appends the 20-digit form of t to dst.
func (t Token) AppendDigits(dst []byte) []byte {
	// hi < 4, so the quotient by 10^10 is below 2^66/10^10 < 2^33.
	q, r := bits.Div64(uint64(t.Hi&3), t.Lo, 1e10)
	var buf [Digits]byte
	for i := Digits - 1; i >= 10; i-- {
		buf[i] = byte('0' + r%10)
		r /= 10
	}
	for i := 9; i >= 0; i-- {
		buf[i] = byte('0' + q%10)
		q /= 10
	}
	return append(dst, buf[:]...)
}

// String returns the 20-digit form of t.
func (t Token) String() string {
	var buf [Digits]byte
	return string(t.AppendDigits(buf[:0]))
}

// Class returns the token class, carried in clear.
func (t Token) Class() uint8 { return uint8(t.Lo>>27) & 3 }

// transpose places the class bits into a 64-bit (encrypted) block: block
// bits 28 and 27 move to token bits 65 and 64 and the class takes their
// place, so the class is readable without the key.
func transpose(class uint8, c uint64) Token {
	hi := uint8(c>>28)&1<<1 | uint8(c>>27)&1
	lo := c&^(3<<27) | uint64(class&3)<<27
	return Token{Hi: hi, Lo: lo}
}

// untranspose inverts transpose.
func untranspose(t Token) (class uint8, c uint64) {
	class = t.Class()
	c = t.Lo&^(3<<27) | uint64(t.Hi>>1&1)<<28 | uint64(t.Hi&1)<<27
	return class, c
}
