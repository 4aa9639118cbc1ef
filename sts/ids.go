package sts

import (
	"fmt"
	"time"
)

// EA names a token encryption algorithm.
type EA uint8

const (
	// EA07 is the Standard Transfer Algorithm with a 64-bit decoder key.
	EA07 EA = 7
	// EA11 is MISTY1 with a 128-bit decoder key.
	EA11 EA = 11
)

// ParseEA parses "07" or "11".
func ParseEA(s string) (EA, error) {
	switch s {
	case "07", "7":
		return EA07, nil
	case "11":
		return EA11, nil
	}
	return 0, fmt.Errorf("%w: encryption algorithm %q is not 07 or 11", ErrFormat, s)
}

// KeySize returns the decoder key length in bytes the algorithm uses.
func (ea EA) KeySize() int {
	if ea == EA11 {
		return 16
	}
	return 8
}

func (ea EA) valid() bool { return ea == EA07 || ea == EA11 }

func (ea EA) String() string { return fmt.Sprintf("%02d", uint8(ea)) }

// BaseDate is the year whose 1 January 00:00 UTC is TID zero: 1993, 2014 or
// 2035. A 24-bit count of minutes lasts 31.9 years, so each base date is
// replaced by the next with a rollover key change before its TIDs run out.
type BaseDate int

// The three base dates of IEC 62055-41.
const (
	Base1993 BaseDate = 1993
	Base2014 BaseDate = 2014
	Base2035 BaseDate = 2035
)

// Valid reports whether b is one of the three base dates.
func (b BaseDate) Valid() bool { return b == Base1993 || b == Base2014 || b == Base2035 }

// Time returns the instant of TID 0.
func (b BaseDate) Time() time.Time { return time.Date(int(b), time.January, 1, 0, 0, 0, 0, time.UTC) }

// Next returns the base date a rollover key change moves to.
func (b BaseDate) Next() (BaseDate, bool) {
	switch b {
	case Base1993:
		return Base2014, true
	case Base2014:
		return Base2035, true
	}
	return 0, false
}

func checkBase(b BaseDate) error {
	if !b.Valid() {
		return fmt.Errorf("%w: base date %d is not 1993, 2014 or 2035", ErrFormat, int(b))
	}
	return nil
}

// KeyID names a decoder key: which vending key of which supply group, and
// which of its revisions and tariffs, as carried in the control block and in
// key change tokens.
type KeyID struct {
	KT  int    // key type 0..3 (2 = credit dispensing, 0 = initialisation)
	SGC uint32 // supply group code, 6 decimal digits
	TI  int    // tariff index 0..99
	KRN int    // key revision number 1..9
}

// Validate checks every field's range and names the first bad one.
func (id KeyID) Validate() error {
	switch {
	case id.KT < 0 || id.KT > 3:
		return fmt.Errorf("%w: kt %d is not 0..3", ErrFormat, id.KT)
	case id.SGC > 999999:
		return fmt.Errorf("%w: sgc %d has more than 6 digits", ErrFormat, id.SGC)
	case id.TI < 0 || id.TI > 99:
		return fmt.Errorf("%w: ti %d is not 0..99", ErrFormat, id.TI)
	case id.KRN < 1 || id.KRN > 9:
		return fmt.Errorf("%w: krn %d is not 1..9", ErrFormat, id.KRN)
	}
	return nil
}

// ParseSGC parses a supply group code of exactly six digits.
func ParseSGC(s string) (uint32, error) {
	v, err := parseDigits(s, 6)
	if err != nil {
		return 0, fmt.Errorf("%w: sgc %q is not 6 digits", ErrFormat, s)
	}
	return uint32(v), nil
}

// ParseTI parses a tariff index of exactly two digits.
func ParseTI(s string) (int, error) {
	v, err := parseDigits(s, 2)
	if err != nil {
		return 0, fmt.Errorf("%w: ti %q is not 2 digits", ErrFormat, s)
	}
	return int(v), nil
}

// parseDigits parses exactly n decimal digits (n <= 19).
func parseDigits(s string, n int) (uint64, error) {
	if len(s) != n {
		return 0, ErrFormat
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, ErrFormat
		}
		v = v*10 + uint64(c-'0')
	}
	return v, nil
}

// ControlBlock returns the DKGA02 control block: KT, SGC, TI and KRN as
// decimal digits in BCD nibbles, padded with FFFFFF to 64 bits.
func ControlBlock(id KeyID) (uint64, error) {
	if err := id.Validate(); err != nil {
		return 0, err
	}
	s := fmt.Sprintf("%d%06d%02d%d", id.KT, id.SGC, id.TI, id.KRN)
	var v uint64
	for i := 0; i < len(s); i++ {
		v = v<<4 | uint64(s[i]-'0')
	}
	return v<<24 | 0xFFFFFF, nil
}

// LuhnDigit returns the Luhn check digit of a string of decimal digits.
func LuhnDigit(digits string) (int, error) {
	if digits == "" {
		return 0, fmt.Errorf("%w: no digits", ErrFormat)
	}
	sum := 0
	double := true // the rightmost digit is doubled, since the check digit follows it
	for i := len(digits) - 1; i >= 0; i-- {
		c := digits[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: %q is not all digits", ErrFormat, digits)
		}
		d := int(c - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return (10 - sum%10) % 10, nil
}

// PAN is a meter's primary account number: 18 digits, IIN (6) + DRN (11) +
// Luhn check digit. The IIN of STS meters is 600727; 0000 + a manufacturer
// code is the common-code form.
type PAN string

// ParsePAN checks length, digits and the Luhn check digit.
func ParsePAN(s string) (PAN, error) {
	if _, err := parseDigits(s, 18); err != nil {
		return "", fmt.Errorf("%w: pan %q is not 18 digits", ErrFormat, s)
	}
	d, _ := LuhnDigit(s[:17])
	if int(s[17]-'0') != d {
		return "", fmt.Errorf("%w: pan %q fails its Luhn check digit (want %d)", ErrFormat, s, d)
	}
	return PAN(s), nil
}

// Block returns the PAN block: the rightmost 16 digits of IIN || DRN (the PAN
// without its check digit), as BCD nibbles.
func (p PAN) Block() uint64 {
	var v uint64
	for i := 1; i < 17; i++ {
		v = v<<4 | uint64(p[i]-'0')
	}
	return v
}

// PANBlock returns the PAN block of an IIN and a DRN given separately.
func PANBlock(iin, drn string) (uint64, error) {
	s := iin + drn
	if len(s) < 16 {
		return 0, fmt.Errorf("%w: iin+drn %q is shorter than 16 digits", ErrFormat, s)
	}
	s = s[len(s)-16:]
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: iin+drn %q is not all digits", ErrFormat, iin+drn)
		}
		v = v<<4 | uint64(c-'0')
	}
	return v, nil
}
