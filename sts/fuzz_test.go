package sts

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParseToken: ParseToken accepts exactly the 20-digit strings below
// 2^66, and what it accepts prints back unchanged.
func FuzzParseToken(f *testing.F) {
	for _, s := range []string{"51043465443420856213", "00000000000000000000", "73786976294838206463",
		"73786976294838206464", "99999999999999999999", "5104346544342085621", "5104346544342085621x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("ParseToken(%q): %v is not ErrFormat", s, err)
			}
			return
		}
		if tok.Hi > 3 || tok.String() != s {
			t.Fatalf("ParseToken(%q) = %+v, prints %s", s, tok, tok)
		}
	})
}

// FuzzDecode feeds arbitrary input to a meter's decoder: it never panics,
// every refusal is one of the documented errors, a refusal leaves the state
// unchanged, and the state always survives a MarshalBinary round trip.
func FuzzDecode(f *testing.F) {
	v := loadVectors(f)
	for _, c := range v.EA11Class0.Tokens {
		f.Add(c.Token)
	}
	for _, c := range v.EA11KeyChange.Tokens {
		f.Add(c.Token)
	}
	f.Add("51043465443420856213")
	f.Add("00000000000000000000")
	f.Add("12345")
	dec, err := NewDecoder(DecoderConfig{EA: EA11, Key: mustHex(f, v.EA11Class0.Common.DecoderKey), ID: KeyID{KT: 2, SGC: 123457, TI: 1, KRN: 1}, KEN: 255, Base: Base1993})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := dec
		before, _ := d.MarshalBinary()
		_, err := d.AcceptDigits(s)
		after, _ := d.MarshalBinary()
		if err != nil {
			for _, e := range []error{ErrFormat, ErrCRC, ErrUnsupported, ErrUsed, ErrOld, ErrKeyExpired} {
				if errors.Is(err, e) {
					if !bytes.Equal(before, after) {
						t.Fatalf("refused %q (%v) but the state changed", s, err)
					}
					return
				}
			}
			t.Fatalf("AcceptDigits(%q): undocumented error %v", s, err)
		}
		var back Decoder
		if err := back.UnmarshalBinary(after); err != nil || back != d {
			t.Fatalf("state after %q does not round-trip: %v", s, err)
		}
	})
}

// FuzzDecoderState: UnmarshalBinary refuses what it cannot vouch for and
// what it accepts marshals back byte for byte.
func FuzzDecoderState(f *testing.F) {
	d, err := NewDecoder(DecoderConfig{EA: EA11, Key: make([]byte, 16), ID: testID, KEN: 255, Base: Base2014})
	if err != nil {
		f.Fatal(err)
	}
	b, _ := d.MarshalBinary()
	f.Add(b)
	f.Add(b[:100])
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Decoder
		if err := d.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("UnmarshalBinary: %v is not ErrFormat", err)
			}
			return
		}
		again, _ := d.MarshalBinary()
		if !bytes.Equal(again, b) {
			t.Fatal("accepted state does not marshal back unchanged")
		}
	})
}

// FuzzDecoderSequence drives one decoder through a sequence of well-sealed
// tokens of any class, subclass and payload (8 bytes each: class/subclass
// byte, then 7 bytes of payload), so the fuzzer reaches the TID memory and
// key change logic behind the CRC. Invariants: a refusal changes nothing; an
// accepted TID is never accepted again; the memory stays sorted and within
// its size; the state always round-trips.
func FuzzDecoderSequence(f *testing.F) {
	f.Add([]byte{0x01, 0, 0x05, 0, 0x10, 0, 0, 1, 0x01, 0, 0x05, 0, 0x10, 0, 0, 1})
	f.Add([]byte{0x23, 0xFF, 0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0x24, 0xF0, 0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC,
		0x28, 0, 0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0x29, 0, 0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC})
	f.Add([]byte{0x10, 0, 0, 0, 0, 0, 0x1F, 0x2A})
	f.Fuzz(func(t *testing.T, seq []byte) {
		if len(seq) > 8*200 {
			return
		}
		key := make([]byte, 16)
		d, err := NewDecoder(DecoderConfig{EA: EA11, Key: key, ID: testID, KEN: 200, Base: Base1993})
		if err != nil {
			t.Fatal(err)
		}
		used := map[uint32]bool{}
		for len(seq) >= 8 {
			class, sub := seq[0]>>4&3, seq[0]&0xF
			var payload uint64
			for _, b := range seq[1:8] {
				payload = payload<<8 | uint64(b)
			}
			seq = seq[8:]
			c, err := NewEA11(d.Key())
			if err != nil {
				t.Fatal(err)
			}
			tok, err := c.Seal(Plain{Class: class, Subclass: sub, Payload: payload & payloadMask})
			if err != nil {
				continue // reserved class or subclass
			}
			before := d
			res, err := d.Accept(tok)
			if err != nil {
				if d != before {
					t.Fatalf("refusal (%v) changed the decoder", err)
				}
				continue
			}
			if res.Kind == KindKeyChange {
				used = map[uint32]bool{} // a new key: old TIDs are unreachable anyway
				continue
			}
			if res.Kind == KindCredit || res.Kind == KindManagement {
				if used[res.TID] {
					t.Fatalf("tid %d accepted twice", res.TID)
				}
				used[res.TID] = true
			}
			tids := d.TIDs()
			if len(tids) > TIDMemory {
				t.Fatalf("%d tids held", len(tids))
			}
			for i := 1; i < len(tids); i++ {
				if tids[i] <= tids[i-1] {
					t.Fatalf("tid memory not ascending: %v", tids)
				}
			}
			b, _ := d.MarshalBinary()
			var back Decoder
			if err := back.UnmarshalBinary(b); err != nil || back != d {
				t.Fatalf("state does not round-trip: %v", err)
			}
		}
	})
}
