package sts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
)

// ctsVectors mirrors testdata/good_stsa_cts.json: STS Association
// compliance test values for class 1 tokens, TID-bearing management tokens,
// the credit amount sweep and whole 4-token key change sets (see the file's
// "about" and each section's source).
type ctsVectors struct {
	Common struct {
		VendingKey string `json:"vending_key"`
		KT         int    `json:"kt"`
		SGC        string `json:"sgc"`
		TI         string `json:"ti"`
		KRN        int    `json:"krn"`
		KEN        uint8  `json:"ken"`
		BaseDate   int    `json:"base_date"`
		RND        uint8  `json:"rnd"`
		PANA       string `json:"pan_a"`
		PANB       string `json:"pan_b"`
	} `json:"ea11_common"`
	Class1 struct {
		Cases []struct {
			Name     string `json:"name"`
			Subclass uint8  `json:"subclass"`
			Control  string `json:"control"`
			Mfr      uint16 `json:"mfr"`
			Token    string `json:"token"`
		} `json:"cases"`
	} `json:"class1"`
	Management struct {
		Cases []struct {
			Name     string `json:"name"`
			PAN      string `json:"pan"`
			Subclass uint8  `json:"subclass"`
			Issued   string `json:"issued"`
			Value    uint64 `json:"value"`
			Encoding string `json:"encoding"`
			Token    string `json:"token"`
		} `json:"cases"`
	} `json:"ea11_management"`
	Credit struct {
		Cases []struct {
			Name     string `json:"name"`
			Subclass uint8  `json:"subclass"`
			Issued   string `json:"issued"`
			Tenths   uint64 `json:"tenths"`
			Token    string `json:"token"`
		} `json:"cases"`
	} `json:"ea11_credit_amounts"`
	KeyChange struct {
		Cases []struct {
			Name   string   `json:"name"`
			Old    ctsKeyID `json:"old"`
			New    ctsKeyID `json:"new"`
			KEN    uint8    `json:"ken"`
			RO     int      `json:"ro"`
			KT     int      `json:"kt"`
			Tokens []string `json:"tokens"`
			Credit struct {
				Issued   string `json:"issued"`
				Subclass uint8  `json:"subclass"`
				Tenths   uint64 `json:"tenths"`
				Token    string `json:"token"`
			} `json:"credit"`
		} `json:"cases"`
	} `json:"ea11_key_change_sets"`
}

type ctsKeyID struct {
	SGC string `json:"sgc"`
	TI  int    `json:"ti"`
	KRN int    `json:"krn"`
}

func loadCTS(t testing.TB) *ctsVectors {
	t.Helper()
	data, err := os.ReadFile("testdata/good_stsa_cts.json")
	if err != nil {
		t.Fatal(err)
	}
	var v ctsVectors
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return &v
}

// pan returns PAN A or PAN B of the common set-up.
func (v *ctsVectors) pan(t testing.TB, which string) PAN {
	t.Helper()
	s := map[string]string{"a": v.Common.PANA, "b": v.Common.PANB}[which]
	p, err := ParsePAN(s)
	if err != nil {
		t.Fatalf("pan %q: %v", which, err)
	}
	return p
}

// decoderKey derives the EA11 decoder key of the common vending key for a
// PAN and key identifiers.
func (v *ctsVectors) decoderKey(t testing.TB, pan PAN, id KeyID) []byte {
	t.Helper()
	dk, err := DKGA04(mustHex(t, v.Common.VendingKey), id, pan, BaseDate(v.Common.BaseDate), EA11)
	if err != nil {
		t.Fatal(err)
	}
	return dk
}

func (v *ctsVectors) commonID(t testing.TB) KeyID {
	t.Helper()
	return keyID(t, v.Common.KT, v.Common.SGC, v.Common.TI, v.Common.KRN)
}

func (v *ctsVectors) decoder(t testing.TB, key []byte, id KeyID, ken uint8) Decoder {
	t.Helper()
	d, err := NewDecoder(DecoderConfig{EA: EA11, Key: key, ID: id, KEN: ken, Base: BaseDate(v.Common.BaseDate)})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestCTSClass1(t *testing.T) {
	v := loadCTS(t)
	// Class 1 is not encrypted: any meter, under any key, reads it.
	d := v.decoder(t, make([]byte, 16), v.commonID(t), 255)
	for _, c := range v.Class1.Cases {
		t.Run(c.Name, func(t *testing.T) {
			control, err := strconv.ParseUint(c.Control, 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := TestToken(c.Subclass, control, c.Mfr)
			if err != nil || tok.String() != c.Token {
				t.Errorf("TestToken = %s, %v; want %s", tok, err, c.Token)
			}
			r, err := d.AcceptDigits(c.Token)
			if err != nil || r.Kind != KindTest || r.Subclass != c.Subclass || r.Control != control || r.Mfr != c.Mfr {
				t.Errorf("Accept = %+v, %v; want test subclass %d control %x mfr %d", r, err, c.Subclass, control, c.Mfr)
			}
		})
	}
}

func TestCTSManagement(t *testing.T) {
	v := loadCTS(t)
	base := BaseDate(v.Common.BaseDate)
	id := v.commonID(t)
	// One meter per PAN takes the cases in order, as the test house does:
	// their TIDs increase, so every one must be accepted.
	meters := map[string]*Decoder{}
	lastTID := map[string]int64{}
	for _, c := range v.Management.Cases {
		t.Run(c.Name, func(t *testing.T) {
			pan := v.pan(t, c.PAN)
			dk := v.decoderKey(t, pan, id)
			var field uint16
			switch c.Encoding {
			case "amount":
				f, err := EncodeAmount(c.Value)
				if err != nil {
					t.Fatal(err)
				}
				field = f
			case "raw":
				field = uint16(c.Value)
			default:
				t.Fatalf("encoding %q", c.Encoding)
			}
			issued := vectorTime(t, c.Issued)
			last, ok := lastTID[c.PAN]
			if !ok {
				last = -1
			}
			// NextTID, as vending allocates: CTSA09 step 2 is issued at
			// 00:01, a reserved minute, and carries 00:02.
			tid, err := NextTID(base, last, issued)
			if err != nil {
				t.Fatal(err)
			}
			lastTID[c.PAN] = int64(tid)
			co, err := NewEA11(dk)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := co.Management(c.Subclass, v.Common.RND, tid, field)
			if err != nil || tok.String() != c.Token {
				t.Errorf("Management = %s, %v; want %s", tok, err, c.Token)
			}
			d, ok := meters[c.PAN]
			if !ok {
				nd := v.decoder(t, dk, id, v.Common.KEN)
				d = &nd
				meters[c.PAN] = d
			}
			r, err := d.AcceptDigits(c.Token)
			if err != nil {
				t.Fatalf("Accept: %v", err)
			}
			if r.Kind != KindManagement || r.Class != ClassManagement || r.Subclass != c.Subclass || r.TID != tid ||
				!r.Issued.Equal(TIDTime(base, tid)) || r.RND != v.Common.RND || r.Field != field {
				t.Errorf("Accept = %+v; want subclass %d tid %d field %04X", r, c.Subclass, tid, field)
			}
		})
	}
}

func TestCTSCreditAmounts(t *testing.T) {
	v := loadCTS(t)
	base := BaseDate(v.Common.BaseDate)
	id := v.commonID(t)
	dk := v.decoderKey(t, v.pan(t, "a"), id)
	co, err := NewEA11(dk)
	if err != nil {
		t.Fatal(err)
	}
	// Electricity, water and gas tokens share minutes, so each utility is
	// a meter of its own.
	meters := map[uint8]*Decoder{}
	for _, c := range v.Credit.Cases {
		t.Run(c.Name, func(t *testing.T) {
			tid, err := TIDAt(base, vectorTime(t, c.Issued))
			if err != nil {
				t.Fatal(err)
			}
			tok, err := co.Credit(c.Subclass, v.Common.RND, tid, c.Tenths)
			if err != nil || tok.String() != c.Token {
				t.Errorf("Credit(%d tenths) = %s, %v; want %s", c.Tenths, tok, err, c.Token)
			}
			d, ok := meters[c.Subclass]
			if !ok {
				nd := v.decoder(t, dk, id, v.Common.KEN)
				d = &nd
				meters[c.Subclass] = d
			}
			r, err := d.AcceptDigits(c.Token)
			if err != nil {
				t.Fatalf("Accept: %v", err)
			}
			// The meter credits what the field carries: the quantity
			// rounded up to the field's step (20000 tenths become 20004).
			field, err := EncodeAmount(c.Tenths)
			if err != nil {
				t.Fatal(err)
			}
			if want := DecodeAmount(field); r.Kind != KindCredit || r.Subclass != c.Subclass || r.TID != tid || r.Field != field || r.Amount != want || want < c.Tenths {
				t.Errorf("Accept = %+v; want subclass %d tid %d field %04X amount %d", r, c.Subclass, tid, field, want)
			}
		})
	}
}

func TestCTSKeyChangeSets(t *testing.T) {
	v := loadCTS(t)
	base := BaseDate(v.Common.BaseDate)
	pan := v.pan(t, "a")
	for _, c := range v.KeyChange.Cases {
		t.Run(c.Name, func(t *testing.T) {
			oldID := keyID(t, c.KT, c.Old.SGC, fmt.Sprintf("%02d", c.Old.TI), c.Old.KRN)
			newID := keyID(t, c.KT, c.New.SGC, fmt.Sprintf("%02d", c.New.TI), c.New.KRN)
			oldKey, newKey := v.decoderKey(t, pan, oldID), v.decoderKey(t, pan, newID)
			co, err := NewEA11(oldKey)
			if err != nil {
				t.Fatal(err)
			}
			toks, err := co.KeyChange(KeyChange{NewKey: newKey, KEN: c.KEN, KRN: newID.KRN, RO: c.RO == 1, KT: newID.KT, TI: newID.TI, SGC: newID.SGC})
			if err != nil {
				t.Fatal(err)
			}
			if len(toks) != len(c.Tokens) {
				t.Fatalf("%d tokens, want %d", len(toks), len(c.Tokens))
			}
			for i, want := range c.Tokens {
				if toks[i].String() != want {
					t.Errorf("section %d = %s, want %s", i+1, toks[i], want)
				}
			}
			issued := vectorTime(t, c.Credit.Issued)
			tid, err := TIDAt(base, issued)
			if err != nil {
				t.Fatal(err)
			}
			nc, err := NewEA11(newKey)
			if err != nil {
				t.Fatal(err)
			}
			credit, err := nc.Credit(c.Credit.Subclass, v.Common.RND, tid, c.Credit.Tenths)
			if err != nil || credit.String() != c.Credit.Token {
				t.Errorf("credit under the new key = %s, %v; want %s", credit, err, c.Credit.Token)
			}

			// The meter on the old key takes the set, then the credit.
			d := v.decoder(t, oldKey, oldID, v.Common.KEN)
			var r Result
			for i, s := range c.Tokens {
				if r, err = d.AcceptDigits(s); err != nil {
					t.Fatalf("section %d: %v", i+1, err)
				}
			}
			if r.Kind != KindKeyChange || r.NewID != newID || r.NewKEN != c.KEN || r.Rollover ||
				!bytes.Equal(d.Key(), newKey) || d.KeyID() != newID || d.KEN() != c.KEN {
				t.Errorf("after the set: %+v key %x id %+v ken %d", r, d.Key(), d.KeyID(), d.KEN())
			}
			r, err = d.AcceptDigits(c.Credit.Token)
			if err != nil || r.Kind != KindCredit || r.Amount != c.Credit.Tenths || r.TID != tid {
				t.Errorf("credit after the set = %+v, %v", r, err)
			}
			// And the old key no longer opens anything.
			if _, err := d.AcceptDigits(c.Tokens[0]); !errors.Is(err, ErrCRC) {
				t.Errorf("section 1 again under the new key: %v, want ErrCRC", err)
			}
		})
	}
}

// TestCTSVectorsComplete guards the tests above: every section of the file
// is one they read, and none decoded to nothing.
func TestCTSVectorsComplete(t *testing.T) {
	data, err := os.ReadFile("testdata/good_stsa_cts.json")
	if err != nil {
		t.Fatal(err)
	}
	var sections map[string]json.RawMessage
	if err := json.Unmarshal(data, &sections); err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{"about": true, "ea11_common": true, "class1": true, "ea11_management": true,
		"ea11_credit_amounts": true, "ea11_key_change_sets": true}
	for k := range sections {
		if !known[k] {
			t.Errorf("vector section %q is not tested", k)
		}
	}
	v := loadCTS(t)
	for name, n := range map[string]int{"class1": len(v.Class1.Cases), "ea11_management": len(v.Management.Cases),
		"ea11_credit_amounts": len(v.Credit.Cases), "ea11_key_change_sets": len(v.KeyChange.Cases)} {
		if n == 0 {
			t.Errorf("vector section %q decoded to no cases", name)
		}
	}
	if v.Common.VendingKey == "" || v.Common.PANA == "" || v.Common.PANB == "" {
		t.Error("common set-up did not decode")
	}
	for _, c := range v.KeyChange.Cases {
		if len(c.Tokens) != 4 || c.Credit.Token == "" || c.New.SGC == "" {
			t.Errorf("%s: key change case did not decode", c.Name)
		}
	}
}
