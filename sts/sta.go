package sts

import (
	"encoding/json"
	"fmt"
	"math/bits"
)

// STATables are the substitution and permutation tables of the Standard
// Transfer Algorithm (EA07). The STS Association distributes the production
// tables to its members under licence; they are loaded from a file the
// utility supplies and are never committed. IEC 62055-41 publishes sample
// tables for its worked example, which the tests use.
//
// A loaded STATables is immutable and safe to share between goroutines.
type STATables struct {
	sub    [2][16]uint8 // table 1, table 2
	perm   [64]uint8    // data bit i moves to bit perm[i]
	invSub [2][16]uint8

	// fwd[j][mode][v] is byte j = v substituted (nibble tables chosen by
	// mode: bit 0 for the low nibble, bit 1 for the high one) and then
	// permuted, so a round is eight lookups.
	fwd [8][4][256]uint64
	// invPerm[j][v] is byte j = v moved back through the permutation.
	invPerm [8][256]uint64
	// invByte[mode][v] undoes the substitution of one byte.
	invByte [4][256]uint8
}

type staTablesJSON struct {
	Sub1 []int `json:"substitution_table_1"`
	Sub2 []int `json:"substitution_table_2"`
	Perm []int `json:"permutation"`
}

// ParseSTATables reads tables in the JSON form of sample-sta-tables.json:
// "substitution_table_1" and "substitution_table_2" (16 values each, a
// permutation of 0..15) and "permutation" (64 values, a permutation of
// 0..63; data bit i moves to bit permutation[i]).
func ParseSTATables(data []byte) (*STATables, error) {
	var j staTablesJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("%w: sta tables: %v", ErrFormat, err)
	}
	return NewSTATables(j.Sub1, j.Sub2, j.Perm)
}

// NewSTATables builds tables from the two substitution tables and the
// permutation, checking that each is a permutation.
func NewSTATables(sub1, sub2, perm []int) (*STATables, error) {
	t := new(STATables)
	for k, s := range [][]int{sub1, sub2} {
		if err := isPermutation(s, 16); err != nil {
			return nil, fmt.Errorf("%w: sta substitution_table_%d: %v", ErrFormat, k+1, err)
		}
		for i, v := range s {
			t.sub[k][i] = uint8(v)
			t.invSub[k][v] = uint8(i)
		}
	}
	if err := isPermutation(perm, 64); err != nil {
		return nil, fmt.Errorf("%w: sta permutation: %v", ErrFormat, err)
	}
	for i, v := range perm {
		t.perm[i] = uint8(v)
	}
	permute := func(x uint64) uint64 {
		var y uint64
		for x != 0 {
			i := bits.TrailingZeros64(x)
			y |= 1 << t.perm[i]
			x &= x - 1
		}
		return y
	}
	for j := range 8 {
		for v := range 256 {
			for mode := range 4 {
				lo := t.sub[mode&1][v&0xF]
				hi := t.sub[mode>>1][v>>4]
				t.fwd[j][mode][v] = permute(uint64(hi<<4|lo) << (8 * j))
			}
			// The inverse permutation of the bits of byte j = v.
			var y uint64
			for i := range 64 {
				if (uint64(v)<<(8*j))>>t.perm[i]&1 != 0 {
					y |= 1 << i
				}
			}
			t.invPerm[j][v] = y
		}
	}
	for mode := range 4 {
		for v := range 256 {
			t.invByte[mode][v] = t.invSub[mode>>1][v>>4]<<4 | t.invSub[mode&1][v&0xF]
		}
	}
	return t, nil
}

func isPermutation(s []int, n int) error {
	if len(s) != n {
		return fmt.Errorf("has %d entries, want %d", len(s), n)
	}
	seen := make([]bool, n)
	for _, v := range s {
		if v < 0 || v >= n || seen[v] {
			return fmt.Errorf("is not a permutation of 0..%d", n-1)
		}
		seen[v] = true
	}
	return nil
}

// staCipher is EA07 under one decoder key. The key schedule is a rotation,
// so there is nothing to precompute beyond the first round key.
type staCipher struct {
	t  *STATables
	k0 uint64 // round key 0: the complemented decoder key rotated right 12
}

func newSTA(t *STATables, key uint64) staCipher {
	return staCipher{t: t, k0: bits.RotateLeft64(^key, -12)}
}

// mode returns, for byte j, which tables its two nibbles use in round key
// k: table 2 for nibble i when key bit 4i+3 is set.
func mode(k uint64, j int) int {
	return int(k>>(8*j+3))&1 | int(k>>(8*j+6))&2
}

func (c staCipher) encrypt(d uint64) uint64 {
	t, k := c.t, c.k0
	for range 16 {
		var y uint64
		for j := range 8 {
			y |= t.fwd[j][mode(k, j)][byte(d>>(8*j))]
		}
		d = y
		k = bits.RotateLeft64(k, 1)
	}
	return d
}

func (c staCipher) decrypt(d uint64) uint64 {
	t := c.t
	k := bits.RotateLeft64(c.k0, 15)
	for range 16 {
		var y uint64
		for j := range 8 {
			y |= t.invPerm[j][byte(d>>(8*j))]
		}
		d = 0
		for j := range 8 {
			d |= uint64(t.invByte[mode(k, j)][byte(y>>(8*j))]) << (8 * j)
		}
		k = bits.RotateLeft64(k, -1)
	}
	return d
}
