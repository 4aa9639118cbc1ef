package sts

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

var testID = KeyID{KT: 2, SGC: 123457, TI: 1, KRN: 1}

// newTestDecoder returns a decoder for ea with a random key, and a Coder
// that encodes for it.
func newTestDecoder(t testing.TB, r *rand.Rand, ea EA) (Decoder, *Coder) {
	t.Helper()
	tables := loadTables(t)
	key := randKey(r, ea.KeySize())
	d, err := NewDecoder(DecoderConfig{EA: ea, Key: key, ID: testID, KEN: 255, Base: Base2014, Tables: tables})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCoder(ea, key, tables)
	if err != nil {
		t.Fatal(err)
	}
	return d, c
}

func randKey(r *rand.Rand, n int) []byte {
	k := make([]byte, n)
	for i := range k {
		k[i] = byte(r.Uint32())
	}
	return k
}

func state(t testing.TB, d Decoder) []byte {
	t.Helper()
	b, err := d.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mustReject checks that a token is refused with want and that the refusal
// leaves the decoder's state byte for byte as it was.
func mustReject(t *testing.T, d *Decoder, tok Token, want error) {
	t.Helper()
	before := state(t, *d)
	_, err := d.Accept(tok)
	if !errors.Is(err, want) {
		t.Fatalf("Accept: %v, want %v", err, want)
	}
	if !bytes.Equal(before, state(t, *d)) {
		t.Fatalf("rejected token (%v) changed the decoder state", err)
	}
}

// TestRoundTripEveryClass encodes random tokens of every class 0 and TID-
// bearing class 2 subclass under random keys and checks that the coder and
// the meter's decoder read back exactly what was sealed.
func TestRoundTripEveryClass(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for _, ea := range []EA{EA07, EA11} {
		for range 20 {
			d, c := newTestDecoder(t, r, ea)
			tid := r.Uint32N(1 << 20)
			for _, ct := range []struct{ class, sub uint8 }{
				{0, 0}, {0, 1}, {0, 2}, {0, 3}, {0, 4}, {0, 5}, {0, 6}, {0, 7},
				{2, 0}, {2, 1}, {2, 2}, {2, 5}, {2, 6}, {2, 7},
			} {
				tid += 1 + r.Uint32N(100)
				rnd := uint8(r.Uint32N(16))
				units := r.Uint64N(MaxAmount + 1)
				var tok Token
				var err error
				var field uint16
				if ct.class == ClassCredit {
					tok, err = c.Credit(ct.sub, rnd, tid, units)
					field, _ = EncodeAmount(units)
				} else {
					field = uint16(r.Uint32())
					tok, err = c.Management(ct.sub, rnd, tid, field)
				}
				if err != nil {
					t.Fatal(err)
				}
				if tok.Class() != ct.class {
					t.Fatalf("class in clear = %d, want %d", tok.Class(), ct.class)
				}
				back, err := ParseToken(tok.String())
				if err != nil || back != tok {
					t.Fatalf("ParseToken(String()) = %v, %v", back, err)
				}
				res, err := d.Accept(back)
				if err != nil {
					t.Fatalf("EA%s class %d/%d: Accept: %v", ea, ct.class, ct.sub, err)
				}
				if res.Class != ct.class || res.Subclass != ct.sub || res.RND != rnd || res.TID != tid || res.Field != field {
					t.Fatalf("EA%s: got %+v, want class %d/%d rnd %d tid %d field %04X", ea, res, ct.class, ct.sub, rnd, tid, field)
				}
				if ct.class == ClassCredit {
					if res.Kind != KindCredit || res.Amount < units || res.Amount != DecodeAmount(field) {
						t.Fatalf("credit %d units: got %+v", units, res)
					}
				} else if res.Kind != KindManagement {
					t.Fatalf("management: kind %v", res.Kind)
				}
				if want := TIDTime(Base2014, tid); !res.Issued.Equal(want) {
					t.Fatalf("issued %s, want %s", res.Issued, want)
				}
			}
		}
	}
}

func TestManagementTokens(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	d, c := newTestDecoder(t, r, EA11)
	base := Base2014.Time()
	for i, m := range []struct {
		name  string
		sub   uint8
		value uint16
	}{
		{"set max power limit", SubSetMaxPowerLimit, 5000},
		{"clear credit (all registers)", SubClearCredit, 0xFFFF},
		{"set tariff rate", SubSetTariffRate, 1234},
		{"clear tamper", SubClearTamper, 0},
		{"set phase unbalance limit", SubSetPhaseUnbalance, 300},
		{"set water meter factor", SubSetWaterMeterFactor, 10},
	} {
		tid, err := TIDAt(Base2014, base.Add(time.Duration(100+i)*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := c.Management(m.sub, 3, tid, m.value)
		if err != nil {
			t.Fatal(err)
		}
		res, err := d.Accept(tok)
		if err != nil || res.Kind != KindManagement || res.Subclass != m.sub || res.Field != m.value || res.TID != tid {
			t.Errorf("%s: %+v, %v", m.name, res, err)
		}
		mustReject(t, &d, tok, ErrUsed)
	}
	for _, sub := range []uint8{SubKeyChange1, SubKeyChange2, SubKeyChange3, SubKeyChange4, 10, 15} {
		if _, err := c.Management(sub, 0, 1, 0); err == nil {
			t.Errorf("Management(subclass %d): no error", sub)
		}
	}
}

func TestTestToken(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	d, _ := newTestDecoder(t, r, EA11)
	other, _ := newTestDecoder(t, r, EA07)
	tok, err := TestToken(SubTest2Digit, 0x1F, 42)
	if err != nil {
		t.Fatal(err)
	}
	// Class 1 is not encrypted: every meter accepts it, every time.
	for _, dec := range []*Decoder{&d, &other, &d} {
		res, err := dec.Accept(tok)
		if err != nil || res.Kind != KindTest || res.Control != 0x1F || res.Mfr != 42 {
			t.Errorf("test token: %+v, %v", res, err)
		}
	}
	tok4, err := TestToken(SubTest4Digit, 0xABCDEF, 1234)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := d.Accept(tok4); err != nil || res.Control != 0xABCDEF || res.Mfr != 1234 || res.Subclass != 1 {
		t.Errorf("4-digit test token: %+v, %v", res, err)
	}
	if _, err := TestToken(SubTest2Digit, 1<<36, 0); !errors.Is(err, ErrFormat) {
		t.Errorf("36-bit control overflow: %v", err)
	}
}

func TestWrongMeterFailsCRC(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	for _, ea := range []EA{EA07, EA11} {
		d, _ := newTestDecoder(t, r, ea)
		_, other := newTestDecoder(t, r, ea)
		fails := 0
		for i := range 200 {
			tok, err := other.Credit(SubWater, 0, uint32(1000+i), 100)
			if err != nil {
				t.Fatal(err)
			}
			before := state(t, d)
			if _, err := d.Accept(tok); errors.Is(err, ErrCRC) || errors.Is(err, ErrUnsupported) {
				fails++
				if !bytes.Equal(before, state(t, d)) {
					t.Fatal("a refused token changed the state")
				}
			}
		}
		// 2^-16 per token of a false accept; 200 tries all fail but for
		// a once-in-300 chance, and the seed is fixed.
		if fails != 200 {
			t.Errorf("EA%s: %d of 200 foreign tokens refused", ea, fails)
		}
	}
}

func TestTIDMemory(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	d, c := newTestDecoder(t, r, EA11)
	credit := func(tid uint32) Token {
		tok, err := c.Credit(SubWater, 1, tid, 10)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	// Out-of-order tokens are fine while the memory has room.
	for _, tid := range []uint32{500, 300, 400} {
		if _, err := d.Accept(credit(tid)); err != nil {
			t.Fatalf("tid %d: %v", tid, err)
		}
	}
	mustReject(t, &d, credit(300), ErrUsed)
	// Fill the memory: 3 + 61 = 64 TIDs.
	for tid := uint32(1000); tid < 1061; tid++ {
		if _, err := d.Accept(credit(tid)); err != nil {
			t.Fatalf("tid %d: %v", tid, err)
		}
	}
	if got := len(d.TIDs()); got != TIDMemory {
		t.Fatalf("%d tids held, want %d", got, TIDMemory)
	}
	// Full: anything older than the oldest held (300) is OLD.
	mustReject(t, &d, credit(299), ErrOld)
	mustReject(t, &d, credit(0), ErrOld)
	// A new TID evicts 300; from then 300 and below are OLD, never
	// accepted again, though 300 is no longer held.
	if _, err := d.Accept(credit(2000)); err != nil {
		t.Fatal(err)
	}
	mustReject(t, &d, credit(300), ErrOld)
	mustReject(t, &d, credit(2000), ErrUsed)
	mustReject(t, &d, credit(1030), ErrUsed)
	// 350 lies between the forgotten 300 and the oldest held (400): the
	// memory is full and 350 is older than all of it.
	mustReject(t, &d, credit(350), ErrOld)
	if got := d.MinTID(); got != 301 {
		t.Errorf("MinTID = %d, want 301", got)
	}
}

func TestKeyExpiry(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	key := randKey(r, 16)
	d, err := NewDecoder(DecoderConfig{EA: EA11, Key: key, ID: testID, KEN: 3, Base: Base2014})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := NewEA11(key)
	ok, _ := c.Credit(SubWater, 0, 3<<16|0xFFFF, 1)
	expired, _ := c.Credit(SubWater, 0, 4<<16, 1)
	if _, err := d.Accept(ok); err != nil {
		t.Fatalf("TID at KEN: %v", err)
	}
	mustReject(t, &d, expired, ErrKeyExpired)
}

func TestCreditSubclassFilter(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	key := randKey(r, 16)
	d, err := NewDecoder(DecoderConfig{EA: EA11, Key: key, ID: testID, KEN: 255, Base: Base2014,
		CreditSubclasses: 1<<SubWater | 1<<SubWaterCurrency})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := NewEA11(key)
	elec, _ := c.Credit(SubElectricity, 0, 10, 1)
	mustReject(t, &d, elec, ErrUnsupported)
	for i, sub := range []uint8{SubWater, SubWaterCurrency} {
		tok, _ := c.Credit(sub, 0, uint32(20+i), 1)
		if _, err := d.Accept(tok); err != nil {
			t.Errorf("subclass %d: %v", sub, err)
		}
	}
}

// keyChangeCase runs a key change set on a fresh decoder and checks that
// the new key takes effect only with the last section.
func keyChangeCase(t *testing.T, ea EA, ro bool, order []int) {
	r := rand.New(rand.NewPCG(uint64(ea), uint64(len(order))))
	d, old := newTestDecoder(t, r, ea)
	tables := loadTables(t)
	newKey := randKey(r, ea.KeySize())
	nc, err := NewCoder(ea, newKey, tables)
	if err != nil {
		t.Fatal(err)
	}
	// Some history in the TID memory, under the old key.
	for tid := uint32(100); tid < 110; tid++ {
		tok, _ := old.Credit(SubWater, 0, tid, 5)
		if _, err := d.Accept(tok); err != nil {
			t.Fatal(err)
		}
	}
	kc := KeyChange{NewKey: newKey, KEN: 200, KRN: 2, RO: ro, KT: 2, TI: 7, SGC: 654321}
	toks, err := old.KeyChange(kc)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[EA]int{EA07: 2, EA11: 4}[ea]; len(toks) != want {
		t.Fatalf("%d tokens, want %d", len(toks), want)
	}
	newTok, _ := nc.Credit(SubWater, 0, 105, 5) // a TID the old memory holds
	for i, k := range order {
		res, err := d.Accept(toks[k])
		if err != nil {
			t.Fatalf("section %d: %v", k+1, err)
		}
		if i < len(order)-1 {
			if res.Kind != KindKeyChangePartial {
				t.Fatalf("section %d: kind %v, want partial", k+1, res.Kind)
			}
			// Not committed: the new key's tokens still fail, the old
			// key's still work.
			mustReject(t, &d, newTok, ErrCRC)
			continue
		}
		if res.Kind != KindKeyChange || res.Rollover != ro || res.NewKEN != 200 || res.NewID.KRN != 2 || res.NewID.TI != 7 {
			t.Fatalf("commit: %+v", res)
		}
		wantSGC := testID.SGC // 2-token sets do not carry the SGC
		if ea == EA11 {
			wantSGC = 654321
		}
		if res.NewID.SGC != wantSGC || d.KeyID().SGC != wantSGC {
			t.Errorf("SGC after key change = %d, want %d", d.KeyID().SGC, wantSGC)
		}
	}
	if !bytes.Equal(d.Key(), newKey) || d.KEN() != 200 || d.Pending() != 0 {
		t.Fatalf("after the set: key %x ken %d pending %b", d.Key(), d.KEN(), d.Pending())
	}
	// The old key's tokens now fail; replaying the set fails too.
	oldTok, _ := old.Credit(SubWater, 0, 500, 5)
	mustReject(t, &d, oldTok, ErrCRC)
	mustReject(t, &d, toks[0], ErrCRC)
	if ro {
		// Rollover: memory cleared, base date moved on: TID 105 is new.
		if d.Base() != Base2035 || len(d.TIDs()) != 0 {
			t.Fatalf("rollover: base %d, %d tids held", d.Base(), len(d.TIDs()))
		}
		if _, err := d.Accept(newTok); err != nil {
			t.Fatalf("TID 105 after rollover: %v", err)
		}
	} else {
		if d.Base() != Base2014 || len(d.TIDs()) != 10 {
			t.Fatalf("plain key change: base %d, %d tids held", d.Base(), len(d.TIDs()))
		}
		mustReject(t, &d, newTok, ErrUsed)
	}
}

func TestKeyChange(t *testing.T) {
	t.Run("EA07 2 tokens", func(t *testing.T) { keyChangeCase(t, EA07, false, []int{0, 1}) })
	t.Run("EA07 2 tokens reversed", func(t *testing.T) { keyChangeCase(t, EA07, false, []int{1, 0}) })
	t.Run("EA07 rollover", func(t *testing.T) { keyChangeCase(t, EA07, true, []int{0, 1}) })
	t.Run("EA11 4 tokens", func(t *testing.T) { keyChangeCase(t, EA11, false, []int{0, 1, 2, 3}) })
	t.Run("EA11 4 tokens shuffled", func(t *testing.T) { keyChangeCase(t, EA11, false, []int{3, 1, 0, 2}) })
	t.Run("EA11 rollover", func(t *testing.T) { keyChangeCase(t, EA11, true, []int{0, 1, 2, 3}) })
	t.Run("EA11 repeated section", func(t *testing.T) { keyChangeCase(t, EA11, false, []int{0, 0, 1, 2, 2, 3}) })
}

func TestKeyChangeVectorOnDecoder(t *testing.T) {
	v := loadVectors(t)
	kv := v.EA11KeyChange
	d, err := NewDecoder(DecoderConfig{EA: EA11, Key: mustHex(t, kv.Layout.OldKey), ID: KeyID{KT: 2, SGC: 123457, TI: 1, KRN: 1}, KEN: 255, Base: Base1993})
	if err != nil {
		t.Fatal(err)
	}
	var res Result
	for _, c := range kv.Tokens {
		if res, err = d.AcceptDigits(c.Token); err != nil {
			t.Fatalf("section %d: %v", c.Section, err)
		}
	}
	if res.Kind != KindKeyChange || !bytes.Equal(d.Key(), mustHex(t, kv.Layout.NewKey)) || d.KeyID() != (KeyID{KT: 2, SGC: 123457, TI: 2, KRN: 1}) || d.KEN() != 255 {
		t.Errorf("after CTSA05 set: %+v key %x id %+v", res, d.Key(), d.KeyID())
	}
}

func TestRolloverAt2035Refused(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	key := randKey(r, 16)
	d, err := NewDecoder(DecoderConfig{EA: EA11, Key: key, ID: testID, KEN: 255, Base: Base2035})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := NewEA11(key)
	toks, err := c.KeyChange(KeyChange{NewKey: randKey(r, 16), KEN: 255, KRN: 2, RO: true, KT: 2, TI: 1, SGC: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range toks[:3] {
		if _, err := d.Accept(tok); err != nil {
			t.Fatal(err)
		}
	}
	mustReject(t, &d, toks[3], ErrUnsupported)
	if d.Pending() != 0b0111 {
		t.Errorf("pending %b after the refused commit, want 0111", d.Pending())
	}
}

func TestKeyChangeSectionsOnEA07(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	d, c := newTestDecoder(t, r, EA07)
	for _, sub := range []uint8{SubKeyChange3, SubKeyChange4} {
		tok, err := c.Seal(Plain{Class: ClassManagement, Subclass: sub, Payload: 0x123})
		if err != nil {
			t.Fatal(err)
		}
		mustReject(t, &d, tok, ErrUnsupported)
	}
	if _, err := c.KeyChange(KeyChange{NewKey: make([]byte, 16), KRN: 1, TI: 1}); !errors.Is(err, ErrFormat) {
		t.Errorf("128-bit new key on EA07: %v", err)
	}
}

func TestDecoderState(t *testing.T) {
	r := rand.New(rand.NewPCG(10, 10))
	for _, ea := range []EA{EA07, EA11} {
		d, c := newTestDecoder(t, r, ea)
		for i := range 80 {
			tok, _ := c.Credit(SubWater, 0, uint32(10*i+1), 1)
			if _, err := d.Accept(tok); err != nil {
				t.Fatal(err)
			}
		}
		toks, _ := c.KeyChange(KeyChange{NewKey: randKey(r, ea.KeySize()), KEN: 9, KRN: 3, KT: 1, TI: 4, SGC: 42})
		if _, err := d.Accept(toks[0]); err != nil {
			t.Fatal(err)
		}
		b := state(t, d)
		if len(b) != StateSize {
			t.Fatalf("state is %d bytes, want %d", len(b), StateSize)
		}
		var back Decoder
		back.SetTables(d.tables) // configuration, not state
		if err := back.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if back != d {
			t.Fatalf("EA%s: state did not round-trip", ea)
		}
		// The restored decoder completes the set like the original would.
		if res, err := back.Accept(toks[1]); err != nil || (ea == EA07) != (res.Kind == KindKeyChange) {
			t.Fatalf("restored decoder: %+v, %v", res, err)
		}
		// Every single-bit flip is refused and leaves the target intact.
		for i := range len(b) * 8 {
			c := bytes.Clone(b)
			c[i/8] ^= 1 << (i % 8)
			keep := back
			if err := back.UnmarshalBinary(c); !errors.Is(err, ErrFormat) {
				t.Fatalf("bit %d flipped: %v", i, err)
			}
			if keep != back {
				t.Fatal("failed UnmarshalBinary changed the decoder")
			}
		}
		if err := back.UnmarshalBinary(b[:StateSize-1]); err == nil {
			t.Error("short state accepted")
		}
	}
}

func TestNewDecoderErrors(t *testing.T) {
	tables := loadTables(t)
	good := DecoderConfig{EA: EA11, Key: make([]byte, 16), ID: testID, KEN: 255, Base: Base2014}
	for name, mod := range map[string]func(*DecoderConfig){
		"ea":        func(c *DecoderConfig) { c.EA = 9 },
		"key":       func(c *DecoderConfig) { c.Key = make([]byte, 8) },
		"tables":    func(c *DecoderConfig) { c.EA = EA07; c.Key = make([]byte, 8) },
		"krn":       func(c *DecoderConfig) { c.ID.KRN = 0 },
		"kt":        func(c *DecoderConfig) { c.ID.KT = 4 },
		"ti":        func(c *DecoderConfig) { c.ID.TI = 100 },
		"sgc":       func(c *DecoderConfig) { c.ID.SGC = 1000000 },
		"base date": func(c *DecoderConfig) { c.Base = 2000 },
		"credit":    func(c *DecoderConfig) { c.CreditSubclasses = 1 << 9 },
	} {
		cfg := good
		mod(&cfg)
		if _, err := NewDecoder(cfg); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: %v", name, err)
		}
	}
	cfg := good
	cfg.EA, cfg.Key, cfg.Tables = EA07, make([]byte, 8), tables
	if _, err := NewDecoder(cfg); err != nil {
		t.Errorf("EA07 with tables: %v", err)
	}
}
