package tariff

import (
	"math"
	"math/bits"
)

// mulDiv returns a*b/c rounded down and the remainder, for a, b >= 0 and
// c > 0, with a 128-bit product. A quotient beyond int64 saturates at
// MaxInt64 (ok false): callers compare costs against budgets, and a
// saturated cost is simply "too expensive", which keeps every cost function
// monotone.
func mulDiv(a, b, c int64) (q, r int64, ok bool) {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi >= uint64(c) {
		return math.MaxInt64, 0, false
	}
	uq, ur := bits.Div64(hi, lo, uint64(c))
	if uq > math.MaxInt64 {
		return math.MaxInt64, 0, false
	}
	return int64(uq), int64(ur), true
}

// mulDivHalfUp returns a*b/c rounded half up (saturating).
func mulDivHalfUp(a, b, c int64) int64 {
	q, r, ok := mulDiv(a, b, c)
	if ok && 2*r >= c && q < math.MaxInt64 {
		q++
	}
	return q
}

// satAdd adds non-negative numbers, saturating at MaxInt64.
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
