package sts

import "fmt"

// The amount field is 16 bits: a 2-bit exponent e and a 14-bit mantissa m,
// worth m*10^e + sum_{n=1..e} 2^14*10^(n-1) units. Each exponent continues
// where the previous one ends, so small amounts are exact and large ones
// are resolved to 10^e units.
var amountOffset = [4]uint64{0, 16384, 180224, 1818624}
var amountScale = [4]uint64{1, 10, 100, 1000}

// MaxAmount is the largest quantity an amount field holds (1,820,162.4 m3
// of water in 0.1 m3 units).
const MaxAmount = 16383*1000 + 1818624

// EncodeAmount returns the field for a quantity in the token's units (0.1
// m3 for water, 0.1 kWh for electricity), rounding up to the next value the
// field can hold, so a customer never receives less than was paid for.
func EncodeAmount(units uint64) (uint16, error) {
	if units > MaxAmount {
		return 0, fmt.Errorf("%w: %d units exceed the largest amount %d", ErrAmount, units, uint64(MaxAmount))
	}
	for e := 0; e < 4; e++ {
		if units > amountOffset[e]+16383*amountScale[e] {
			continue
		}
		var m uint64
		if units > amountOffset[e] {
			m = (units - amountOffset[e] + amountScale[e] - 1) / amountScale[e]
		}
		return uint16(e)<<14 | uint16(m), nil
	}
	panic("unreachable")
}

// DecodeAmount returns the quantity a field stands for.
func DecodeAmount(field uint16) uint64 {
	e := field >> 14
	return uint64(field&0x3FFF)*amountScale[e] + amountOffset[e]
}
