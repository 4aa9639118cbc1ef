package sts

import (
	"testing"
)

// The vending head-end's hot path: one cached Coder per meter, one token
// sealed and printed per purchase.
func benchEncode(b *testing.B, ea EA, cached bool) {
	tables := loadTables(b)
	key := make([]byte, ea.KeySize())
	for i := range key {
		key[i] = byte(i * 7)
	}
	c, err := NewCoder(ea, key, tables)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, Digits)
	var tid uint32
	b.ReportAllocs()
	for b.Loop() {
		if !cached {
			if c, err = NewCoder(ea, key, tables); err != nil {
				b.Fatal(err)
			}
		}
		tid = (tid + 1) & MaxTID
		tok, err := c.Credit(SubWater, uint8(tid&0xF), tid, 123)
		if err != nil {
			b.Fatal(err)
		}
		buf = tok.AppendDigits(buf[:0])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

func benchDecode(b *testing.B, ea EA, cached bool) {
	tables := loadTables(b)
	key := make([]byte, ea.KeySize())
	c, err := NewCoder(ea, key, tables)
	if err != nil {
		b.Fatal(err)
	}
	tok, _ := c.Credit(SubWater, 1, 1000, 123)
	s := tok.String()
	b.ReportAllocs()
	for b.Loop() {
		if !cached {
			if c, err = NewCoder(ea, key, tables); err != nil {
				b.Fatal(err)
			}
		}
		t, err := ParseToken(s)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Open(t); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

func BenchmarkEncodeEA07Cached(b *testing.B)   { benchEncode(b, EA07, true) }
func BenchmarkEncodeEA07Uncached(b *testing.B) { benchEncode(b, EA07, false) }
func BenchmarkEncodeEA11Cached(b *testing.B)   { benchEncode(b, EA11, true) }
func BenchmarkEncodeEA11Uncached(b *testing.B) { benchEncode(b, EA11, false) }
func BenchmarkDecodeEA07Cached(b *testing.B)   { benchDecode(b, EA07, true) }
func BenchmarkDecodeEA07Uncached(b *testing.B) { benchDecode(b, EA07, false) }
func BenchmarkDecodeEA11Cached(b *testing.B)   { benchDecode(b, EA11, true) }
func BenchmarkDecodeEA11Uncached(b *testing.B) { benchDecode(b, EA11, false) }

// Uncached from the vending key: DKGA04 derivation plus the key schedule,
// what a head-end pays per token without a per-meter key cache.
func BenchmarkEncodeEA11FromVendingKey(b *testing.B) {
	vk := make([]byte, 20)
	pan := PAN("600727000000000009")
	b.ReportAllocs()
	for b.Loop() {
		dk, err := DKGA04(vk, testID, pan, Base2014, EA11)
		if err != nil {
			b.Fatal(err)
		}
		c, err := NewEA11(dk)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Credit(SubWater, 0, 1, 1); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// The meter's whole step: parse, decrypt, CRC, TID memory.
func BenchmarkDecoderAccept(b *testing.B) {
	key := make([]byte, 16)
	d0, err := NewDecoder(DecoderConfig{EA: EA11, Key: key, ID: testID, KEN: 255, Base: Base2014})
	if err != nil {
		b.Fatal(err)
	}
	c, _ := NewEA11(key)
	toks := make([]Token, 1000)
	for i := range toks {
		toks[i], _ = c.Credit(SubWater, 0, uint32(i+1), 10)
	}
	d := d0
	i := 0
	for b.Loop() {
		if i == len(toks) {
			d, i = d0, 0
		}
		if _, err := d.Accept(toks[i]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
