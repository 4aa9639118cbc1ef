package sts

import (
	"errors"
	"testing"
	"testing/quick"
	"time"
)

func TestParseTokenErrors(t *testing.T) {
	for _, c := range []struct{ in, why string }{
		{"", "empty"},
		{"5104346544342085621", "19 digits"},
		{"510434654434208562130", "21 digits"},
		{"5104346544342085621a", "letter"},
		{"5104 3465 4434 2085 6213", "spaces"},
		{"73786976294838206464", "2^66"},
		{"99999999999999999999", "above 2^66"},
	} {
		if _, err := ParseToken(c.in); !errors.Is(err, ErrFormat) {
			t.Errorf("ParseToken(%q) (%s): %v, want ErrFormat", c.in, c.why, err)
		}
	}
	for _, s := range []string{"00000000000000000000", "73786976294838206463", "18446744073709551616", "18446744073709551615"} {
		tok, err := ParseToken(s)
		if err != nil || tok.String() != s {
			t.Errorf("ParseToken(%s) = %v, %v (round trip %s)", s, tok, err, tok)
		}
	}
}

// TestTokenDigitsProperty: every 66-bit value prints as 20 digits and parses
// back to itself.
func TestTokenDigitsProperty(t *testing.T) {
	f := func(hi uint8, lo uint64) bool {
		tok := Token{Hi: hi & 3, Lo: lo}
		s := tok.String()
		back, err := ParseToken(s)
		return len(s) == Digits && err == nil && back == tok
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 20000}); err != nil {
		t.Error(err)
	}
}

// TestTransposeProperty: class-bit insertion is invertible and exposes the
// class.
func TestTransposeProperty(t *testing.T) {
	f := func(class uint8, c uint64) bool {
		class &= 3
		tok := transpose(class, c)
		k, back := untranspose(tok)
		return tok.Class() == class && k == class && back == c
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 20000}); err != nil {
		t.Error(err)
	}
}

// TestAmountProperty: encoding never rounds down, rounds up by less than
// one step of the chosen exponent, and is monotonic.
func TestAmountProperty(t *testing.T) {
	f := func(x uint64) bool {
		u := x % (MaxAmount + 1)
		fld, err := EncodeAmount(u)
		if err != nil {
			return false
		}
		d := DecodeAmount(fld)
		step := amountScale[fld>>14]
		if d < u || d-u >= step {
			return false
		}
		if u > 0 {
			prev, _ := EncodeAmount(u - 1)
			if DecodeAmount(prev) > d {
				return false
			}
		}
		// The field is canonical: re-encoding its value gives it back.
		again, _ := EncodeAmount(d)
		return again == fld
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 50000}); err != nil {
		t.Error(err)
	}
	for f := 0; f < 1<<16; f++ {
		if e, _ := EncodeAmount(DecodeAmount(uint16(f))); e != uint16(f) {
			t.Fatalf("field %04X decodes to %d which encodes to %04X", f, DecodeAmount(uint16(f)), e)
		}
	}
}

func TestNextTID(t *testing.T) {
	at := time.Date(2025, 3, 1, 10, 0, 30, 0, time.UTC)
	minute, err := TIDAt(Base2014, at)
	if err != nil {
		t.Fatal(err)
	}
	// First token: the issue minute.
	tid, err := NextTID(Base2014, -1, at)
	if err != nil || tid != minute {
		t.Fatalf("first = %d, %v; want %d", tid, err, minute)
	}
	// Three more in the same minute: successive values.
	last := int64(tid)
	for i := 1; i <= 3; i++ {
		tid, err = NextTID(Base2014, last, at.Add(time.Duration(i)*time.Second))
		if err != nil || tid != minute+uint32(i) {
			t.Fatalf("burst %d = %d, %v; want %d", i, tid, err, minute+uint32(i))
		}
		last = int64(tid)
	}
	// The clock catches up: a later minute is used as is.
	tid, err = NextTID(Base2014, last, at.Add(10*time.Minute))
	if err != nil || tid != minute+10 {
		t.Fatalf("later = %d, %v; want %d", tid, err, minute+10)
	}
	// The vending clock steps back: still increasing.
	tid2, err := NextTID(Base2014, int64(tid), at.Add(-time.Hour))
	if err != nil || tid2 != tid+1 {
		t.Fatalf("clock stepped back = %d, %v; want %d", tid2, err, tid+1)
	}
	// 00:01 is a reserved minute: a token issued then carries 00:02, and a
	// burst that runs into it steps over it.
	midnight := time.Date(2025, 3, 2, 0, 0, 0, 0, time.UTC)
	m0, _ := TIDAt(Base2014, midnight)
	if !ReservedTID(m0+1) || ReservedTID(m0) || ReservedTID(m0+2) {
		t.Fatalf("ReservedTID around %d wrong", m0)
	}
	if tid, err := NextTID(Base2014, int64(m0-5), midnight.Add(time.Minute)); err != nil || tid != m0+2 {
		t.Errorf("issued at 00:01 = %d, %v; want %d (00:02)", tid, err, m0+2)
	}
	if tid, err := NextTID(Base2014, int64(m0), midnight.Add(30*time.Second)); err != nil || tid != m0+2 {
		t.Errorf("burst after 00:00 = %d, %v; want %d (00:02)", tid, err, m0+2)
	}
	// Exhausted sequence and out-of-range times.
	if _, err := NextTID(Base2014, MaxTID, at); !errors.Is(err, ErrTIDRange) {
		t.Errorf("after MaxTID: %v", err)
	}
	if _, err := NextTID(Base2014, -1, time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC)); !errors.Is(err, ErrTIDRange) {
		t.Errorf("before the base date: %v", err)
	}
	if _, err := NextTID(1999, -1, at); !errors.Is(err, ErrFormat) {
		t.Errorf("bad base date: %v", err)
	}
}

func TestIdentifierErrors(t *testing.T) {
	for _, s := range []string{"", "60072700000000000", "600727000000000008", "60072700000000000x", "6007270000000000090"} {
		if _, err := ParsePAN(s); !errors.Is(err, ErrFormat) {
			t.Errorf("ParsePAN(%q): %v", s, err)
		}
	}
	for _, s := range []string{"12345", "1234567", "12a456"} {
		if _, err := ParseSGC(s); !errors.Is(err, ErrFormat) {
			t.Errorf("ParseSGC(%q): %v", s, err)
		}
	}
	for _, s := range []string{"1", "001", "x1"} {
		if _, err := ParseTI(s); !errors.Is(err, ErrFormat) {
			t.Errorf("ParseTI(%q): %v", s, err)
		}
	}
	if _, err := DKGA02(make([]byte, 16), testID, "600727000000000009"); !errors.Is(err, ErrFormat) {
		t.Errorf("DKGA02 with a 16-byte vending key: %v", err)
	}
	if _, err := DKGA04(make([]byte, 16), testID, "600727000000000009", Base1993, EA11); !errors.Is(err, ErrFormat) {
		t.Errorf("DKGA04 with a 16-byte vending key: %v", err)
	}
	if k, err := DKGA04(make([]byte, 20), testID, "600727000000000009", Base2014, EA07); err != nil || len(k) != 8 {
		t.Errorf("DKGA04 for EA07 = %x, %v; want 8 bytes", k, err)
	}
}

func TestSTATablesErrors(t *testing.T) {
	id := make([]int, 16)
	p := make([]int, 64)
	for i := range id {
		id[i] = i
	}
	for i := range p {
		p[i] = i
	}
	dup := append([]int(nil), id...)
	dup[3] = 4
	if _, err := NewSTATables(dup, id, p); !errors.Is(err, ErrFormat) {
		t.Errorf("duplicate in table 1: %v", err)
	}
	if _, err := NewSTATables(id, id[:15], p); !errors.Is(err, ErrFormat) {
		t.Errorf("short table 2: %v", err)
	}
	bad := append([]int(nil), p...)
	bad[0] = 64
	if _, err := NewSTATables(id, id, bad); !errors.Is(err, ErrFormat) {
		t.Errorf("permutation out of range: %v", err)
	}
	if _, err := ParseSTATables([]byte(`{"substitution_table_1": 3}`)); !errors.Is(err, ErrFormat) {
		t.Errorf("bad JSON: %v", err)
	}
}

// TestSealOpenProperty: for both algorithms and random keys, opening a
// sealed token gives back exactly the plaintext, for every class and
// subclass the standard defines and any 44-bit payload; a token sealed
// under one key fails under another.
func TestSealOpenProperty(t *testing.T) {
	tables := loadTables(t)
	for _, ea := range []EA{EA07, EA11} {
		f := func(key [16]byte, other [16]byte, class, sub uint8, payload uint64) bool {
			p := Plain{Class: class % 3, Subclass: sub & 0xF, Payload: payload & payloadMask}
			if p.check() != nil {
				return true // reserved subclass: Seal refuses it (checked below)
			}
			c, err := NewCoder(ea, key[:ea.KeySize()], tables)
			if err != nil {
				return false
			}
			tok, err := c.Seal(p)
			if err != nil {
				return false
			}
			back, err := c.Open(tok)
			if err != nil || back != p {
				return false
			}
			o, _ := NewCoder(ea, other[:ea.KeySize()], tables)
			if _, err := o.Open(tok); p.Class != ClassTest && err == nil && other != key {
				// 2^-16 per trial: with 1000 trials a false accept would
				// show up about once in 65 runs of fresh seeds, so report
				// which inputs did it rather than fail outright.
				t.Logf("EA%s: foreign key accepted %+v (the 2^-16 CRC)", ea, p)
			}
			return true
		}
		if err := quick.Check(f, &quick.Config{MaxCount: 1000}); err != nil {
			t.Errorf("EA%s: %v", ea, err)
		}
	}
	c, _ := NewEA11(make([]byte, 16))
	for _, p := range []Plain{{0, 8, 0}, {1, 2, 0}, {2, 10, 0}, {3, 0, 0}, {0, 0, 1 << 44}} {
		if _, err := c.Seal(p); err == nil {
			t.Errorf("Seal(%+v): no error", p)
		}
	}
}
