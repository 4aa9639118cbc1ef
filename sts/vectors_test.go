package sts

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// vectors mirrors testdata/vectors.json, a copy of the published STS
// vectors (see testdata/README.md for where each comes from).
type vectors struct {
	CRC16 []struct{ Input, CRC, Source string } `json:"crc16"`
	TID   []struct {
		Issued   string `json:"issued"`
		BaseDate int    `json:"base_date"`
		TID      *int64 `json:"tid"`
		Note     string `json:"note"`
	} `json:"tid"`
	AmountField struct {
		Cases []struct {
			Tenths uint64 `json:"tenths"`
			Field  string `json:"field"`
		} `json:"cases"`
	} `json:"amount_field"`
	Luhn []struct {
		Digits string `json:"digits"`
		Check  int    `json:"check"`
	} `json:"luhn"`
	PANBlock []struct {
		IIN      string `json:"iin"`
		DRN      string `json:"drn"`
		PANBlock string `json:"pan_block"`
	} `json:"pan_block"`
	ControlBlock []struct {
		KT           int    `json:"kt"`
		SGC          string `json:"sgc"`
		TI           string `json:"ti"`
		KRN          int    `json:"krn"`
		ControlBlock string `json:"control_block"`
	} `json:"control_block"`
	DKGA02 []struct {
		VendingKey string `json:"vending_key"`
		KT         int    `json:"kt"`
		SGC        string `json:"sgc"`
		TI         string `json:"ti"`
		KRN        int    `json:"krn"`
		PAN        string `json:"pan"`
		DecoderKey string `json:"decoder_key"`
	} `json:"dkga02"`
	DKGA04 []struct {
		VendingKey  string `json:"vending_key"`
		BaseDate    int    `json:"base_date"`
		EA          string `json:"ea"`
		TI          string `json:"ti"`
		SGC         string `json:"sgc"`
		KT          int    `json:"kt"`
		KRN         int    `json:"krn"`
		PAN         string `json:"pan"`
		HMACMessage string `json:"hmac_message"`
		DecoderKey  string `json:"decoder_key"`
	} `json:"dkga04"`
	MISTY1 []struct{ Key, Plaintext, Ciphertext string } `json:"misty1"`
	EA07   []struct {
		DecoderKey string `json:"decoder_key"`
		Block      string `json:"block"`
		RoundKey0  string `json:"round_key_0"`
		Ciphertext string `json:"ciphertext"`
		Class      uint8  `json:"class"`
		Token66    string `json:"token_66bit"`
		Token      string `json:"token"`
	} `json:"ea07_sample_tables"`
	EA11Class0 struct {
		Common struct {
			DecoderKey  string `json:"decoder_key"`
			BaseDate    int    `json:"base_date"`
			RND         uint8  `json:"rnd"`
			AmountField string `json:"amount_field"`
		} `json:"common"`
		Tokens []struct {
			Subclass uint8  `json:"subclass"`
			Issued   string `json:"issued"`
			Token    string `json:"token"`
		} `json:"tokens"`
	} `json:"ea11_class0"`
	EA11KeyChange struct {
		Fields struct {
			KEN uint8  `json:"ken"`
			KRN int    `json:"krn"`
			RO  int    `json:"ro"`
			KT  int    `json:"kt"`
			TI  int    `json:"ti"`
			SGC string `json:"sgc"`
		} `json:"fields"`
		Tokens []struct {
			Subclass uint8  `json:"subclass"`
			Section  int    `json:"section"`
			Token    string `json:"token"`
		} `json:"tokens"`
		Layout struct {
			NewKey string `json:"new_key_hex"`
			OldKey string `json:"old_key_hex"`
		} `json:"layout"`
	} `json:"ea11_key_change_4_tokens"`
}

func loadVectors(t testing.TB) *vectors {
	t.Helper()
	data, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return &v
}

func loadTables(t testing.TB) *STATables {
	t.Helper()
	data, err := os.ReadFile("testdata/sample-sta-tables.json")
	if err != nil {
		t.Fatal(err)
	}
	tb, err := ParseSTATables(data)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return b
}

func mustU64(t testing.TB, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return v
}

// vectorTime parses the vectors' "2006-01-02T15:04" (UTC).
func vectorTime(t testing.TB, s string) time.Time {
	t.Helper()
	tm, err := time.Parse("2006-01-02T15:04", s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func TestVectorCRC16(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.CRC16 {
		if got := CRC16(mustHex(t, c.Input)); got != uint16(mustU64(t, c.CRC)) {
			t.Errorf("CRC16(%s) = %04X, want %s (%s)", c.Input, got, c.CRC, c.Source)
		}
		// The same through the block layout: byte 0 holds the class, then
		// subclass | 44-bit payload.
		in := mustU64(t, c.Input)
		class, sub, payload := uint8(in>>48), uint8(in>>44)&0xF, in&payloadMask
		if got := blockCRC(class, sub, payload); got != uint16(mustU64(t, c.CRC)) {
			t.Errorf("blockCRC(%s) = %04X, want %s", c.Input, got, c.CRC)
		}
	}
}

func TestVectorTID(t *testing.T) {
	v := loadVectors(t)
	n := 0
	for _, c := range v.TID {
		if c.TID == nil {
			continue
		}
		n++
		issued := vectorTime(t, c.Issued)
		got, err := TIDAt(BaseDate(c.BaseDate), issued)
		if err != nil || int64(got) != *c.TID {
			t.Errorf("TIDAt(%d, %s) = %d, %v; want %d", c.BaseDate, c.Issued, got, err, *c.TID)
		}
		if back := TIDTime(BaseDate(c.BaseDate), got); !back.Equal(issued) {
			t.Errorf("TIDTime(%d) = %s, want %s", got, back, issued)
		}
	}
	if n == 0 {
		t.Fatal("no tid vectors")
	}
	// The note: base 1993 rolls over at 2024-11-24T20:16.
	roll := vectorTime(t, "2024-11-24T20:16")
	if _, err := TIDAt(Base1993, roll.Add(-time.Minute)); err != nil {
		t.Errorf("last minute of base 1993: %v", err)
	}
	if _, err := TIDAt(Base1993, roll); err == nil {
		t.Errorf("TIDAt(1993, %s): no error at rollover", roll)
	}
}

func TestVectorAmount(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.AmountField.Cases {
		want := uint16(mustU64(t, c.Field))
		got, err := EncodeAmount(c.Tenths)
		if err != nil || got != want {
			t.Errorf("EncodeAmount(%d) = %04X, %v; want %s", c.Tenths, got, err, c.Field)
		}
		if d := DecodeAmount(got); d < c.Tenths {
			t.Errorf("DecodeAmount(%04X) = %d < %d: rounded down", got, d, c.Tenths)
		}
	}
	if _, err := EncodeAmount(MaxAmount + 1); err == nil {
		t.Error("EncodeAmount(MaxAmount+1): no error")
	}
}

func TestVectorLuhn(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.Luhn {
		if got, err := LuhnDigit(c.Digits); err != nil || got != c.Check {
			t.Errorf("LuhnDigit(%s) = %d, %v; want %d", c.Digits, got, err, c.Check)
		}
	}
}

func TestVectorPANBlock(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.PANBlock {
		got, err := PANBlock(c.IIN, c.DRN)
		if err != nil || got != mustU64(t, c.PANBlock) {
			t.Errorf("PANBlock(%s, %s) = %016X, %v; want %s", c.IIN, c.DRN, got, err, c.PANBlock)
		}
		// The same through an 18-digit PAN.
		d, _ := LuhnDigit(c.IIN + c.DRN)
		pan, err := ParsePAN(c.IIN + c.DRN + strconv.Itoa(d))
		if err != nil {
			t.Fatal(err)
		}
		if got := pan.Block(); got != mustU64(t, c.PANBlock) {
			t.Errorf("PAN(%s).Block() = %016X, want %s", pan, got, c.PANBlock)
		}
	}
}

func keyID(t testing.TB, kt int, sgc, ti string, krn int) KeyID {
	t.Helper()
	s, err := ParseSGC(sgc)
	if err != nil {
		t.Fatal(err)
	}
	i, err := ParseTI(ti)
	if err != nil {
		t.Fatal(err)
	}
	return KeyID{KT: kt, SGC: s, TI: i, KRN: krn}
}

func TestVectorControlBlock(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.ControlBlock {
		got, err := ControlBlock(keyID(t, c.KT, c.SGC, c.TI, c.KRN))
		if err != nil || got != mustU64(t, c.ControlBlock) {
			t.Errorf("ControlBlock = %016X, %v; want %s", got, err, c.ControlBlock)
		}
	}
}

func TestVectorDKGA02(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.DKGA02 {
		got, err := DKGA02(mustHex(t, c.VendingKey), keyID(t, c.KT, c.SGC, c.TI, c.KRN), PAN(c.PAN))
		if err != nil || hex.EncodeToString(got) != c.DecoderKey {
			t.Errorf("DKGA02 = %x, %v; want %s", got, err, c.DecoderKey)
		}
	}
}

func TestVectorDKGA04(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.DKGA04 {
		id := keyID(t, c.KT, c.SGC, c.TI, c.KRN)
		ea, err := ParseEA(c.EA)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := DKGA04Message(id, PAN(c.PAN), BaseDate(c.BaseDate), ea)
		if err != nil || hex.EncodeToString(msg) != c.HMACMessage {
			t.Errorf("DKGA04Message = %x, %v\nwant %s", msg, err, c.HMACMessage)
		}
		got, err := DKGA04(mustHex(t, c.VendingKey), id, PAN(c.PAN), BaseDate(c.BaseDate), ea)
		if err != nil || hex.EncodeToString(got) != c.DecoderKey {
			t.Errorf("DKGA04 = %x, %v; want %s", got, err, c.DecoderKey)
		}
	}
}

func TestVectorMISTY1(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.MISTY1 {
		co, err := NewEA11(mustHex(t, c.Key))
		if err != nil {
			t.Fatal(err)
		}
		if got := co.Encrypt64(mustU64(t, c.Plaintext)); got != mustU64(t, c.Ciphertext) {
			t.Errorf("MISTY1(%s) = %016x, want %s", c.Plaintext, got, c.Ciphertext)
		}
		if got := co.Decrypt64(mustU64(t, c.Ciphertext)); got != mustU64(t, c.Plaintext) {
			t.Errorf("MISTY1^-1(%s) = %016x, want %s", c.Ciphertext, got, c.Plaintext)
		}
	}
}

func TestVectorEA07(t *testing.T) {
	v := loadVectors(t)
	tables := loadTables(t)
	for _, c := range v.EA07 {
		key := mustHex(t, c.DecoderKey)
		co, err := NewEA07(key, tables)
		if err != nil {
			t.Fatal(err)
		}
		if co.sta.k0 != mustU64(t, c.RoundKey0) {
			t.Errorf("round key 0 = %016X, want %s", co.sta.k0, c.RoundKey0)
		}
		block := mustU64(t, c.Block)
		if got := co.Encrypt64(block); got != mustU64(t, c.Ciphertext) {
			t.Errorf("STA(%s) = %016X, want %s", c.Block, got, c.Ciphertext)
		}
		if got := co.Decrypt64(mustU64(t, c.Ciphertext)); got != block {
			t.Errorf("STA^-1(%s) = %016X, want %s", c.Ciphertext, got, c.Block)
		}
		tok := transpose(c.Class, mustU64(t, c.Ciphertext))
		if got := strings.TrimLeft(hex.EncodeToString([]byte{tok.Hi}), "0") + strings.ToUpper(hex.EncodeToString(be64(tok.Lo))); got != c.Token66 {
			t.Errorf("66-bit token = %s, want %s", got, c.Token66)
		}
		if tok.String() != c.Token {
			t.Errorf("token = %s, want %s", tok, c.Token)
		}
		parsed, err := ParseToken(c.Token)
		if err != nil || parsed != tok {
			t.Errorf("ParseToken(%s) = %+v, %v; want %+v", c.Token, parsed, err, tok)
		}
		// The whole path: seal the plaintext and open the token.
		p, err := co.Open(parsed)
		if err != nil {
			t.Fatalf("Open(%s): %v", c.Token, err)
		}
		if p.block() != block {
			t.Errorf("Open block = %016X, want %s", p.block(), c.Block)
		}
		if sealed, err := co.Seal(p); err != nil || sealed != tok {
			t.Errorf("Seal = %s, %v; want %s", sealed, err, c.Token)
		}
	}
}

func be64(v uint64) []byte {
	var b [8]byte
	for i := range 8 {
		b[i] = byte(v >> (56 - 8*i))
	}
	return b[:]
}

func TestVectorEA11Class0(t *testing.T) {
	v := loadVectors(t)
	cm := v.EA11Class0.Common
	co, err := NewEA11(mustHex(t, cm.DecoderKey))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range v.EA11Class0.Tokens {
		tok, err := ParseToken(c.Token)
		if err != nil {
			t.Fatal(err)
		}
		p, err := co.Open(tok)
		if err != nil {
			t.Fatalf("Open(%s): %v", c.Token, err)
		}
		wantTID, err := TIDAt(BaseDate(cm.BaseDate), vectorTime(t, c.Issued))
		if err != nil {
			t.Fatal(err)
		}
		if p.Class != ClassCredit || p.Subclass != c.Subclass || p.RND() != cm.RND || p.Field() != uint16(mustU64(t, cm.AmountField)) {
			t.Errorf("%s: class %d subclass %d rnd %d field %04X", c.Token, p.Class, p.Subclass, p.RND(), p.Field())
		}
		if p.TID() != wantTID {
			t.Errorf("%s: tid %d (%s), want %d (%s)", c.Token, p.TID(), TIDTime(BaseDate(cm.BaseDate), p.TID()).Format(time.RFC3339), wantTID, c.Issued)
		}
		sealed, err := co.Credit(c.Subclass, cm.RND, wantTID, DecodeAmount(uint16(mustU64(t, cm.AmountField))))
		if err != nil || sealed.String() != c.Token {
			t.Errorf("Credit = %s, %v; want %s", sealed, err, c.Token)
		}
	}
}

func TestVectorEA11KeyChange(t *testing.T) {
	v := loadVectors(t)
	kv := v.EA11KeyChange
	old := mustHex(t, kv.Layout.OldKey)
	sgc, err := ParseSGC(kv.Fields.SGC)
	if err != nil {
		t.Fatal(err)
	}
	kc := KeyChange{NewKey: mustHex(t, kv.Layout.NewKey), KEN: kv.Fields.KEN, KRN: kv.Fields.KRN, RO: kv.Fields.RO == 1,
		KT: kv.Fields.KT, TI: kv.Fields.TI, SGC: sgc}
	// The new key is the DKGA04 vector's inputs with TI 02.
	d := v.DKGA04[0]
	id := keyID(t, d.KT, d.SGC, "02", d.KRN)
	nk, err := DKGA04(mustHex(t, d.VendingKey), id, PAN(d.PAN), BaseDate(d.BaseDate), EA11)
	if err != nil || !bytes.Equal(nk, kc.NewKey) {
		t.Errorf("DKGA04 with TI 02 = %x, %v; want %s", nk, err, kv.Layout.NewKey)
	}
	co, err := NewEA11(old)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := co.KeyChange(kc)
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) != len(kv.Tokens) {
		t.Fatalf("%d tokens, want %d", len(toks), len(kv.Tokens))
	}
	for i, c := range kv.Tokens {
		if toks[i].String() != c.Token {
			t.Errorf("section %d = %s, want %s", c.Section, toks[i], c.Token)
		}
		tok, _ := ParseToken(c.Token)
		p, err := co.Open(tok)
		if err != nil || p.Subclass != c.Subclass {
			t.Errorf("Open(section %d) = subclass %d, %v; want %d", c.Section, p.Subclass, err, c.Subclass)
		}
	}
}

// TestVectorsComplete guards the tests above: every section of the vector
// file is one they read, and none of them decoded to nothing.
func TestVectorsComplete(t *testing.T) {
	data, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var sections map[string]json.RawMessage
	if err := json.Unmarshal(data, &sections); err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{"crc16": true, "tid": true, "amount_field": true, "luhn": true, "pan_block": true,
		"control_block": true, "dkga02": true, "dkga04": true, "misty1": true, "ea07_sample_tables": true,
		"ea11_class0": true, "ea11_key_change_4_tokens": true}
	for k := range sections {
		if !known[k] {
			t.Errorf("vector section %q is not tested", k)
		}
	}
	v := loadVectors(t)
	for name, n := range map[string]int{
		"crc16": len(v.CRC16), "tid": len(v.TID), "amount_field": len(v.AmountField.Cases), "luhn": len(v.Luhn),
		"pan_block": len(v.PANBlock), "control_block": len(v.ControlBlock), "dkga02": len(v.DKGA02),
		"dkga04": len(v.DKGA04), "misty1": len(v.MISTY1), "ea07_sample_tables": len(v.EA07),
		"ea11_class0": len(v.EA11Class0.Tokens), "ea11_key_change_4_tokens": len(v.EA11KeyChange.Tokens),
	} {
		if n == 0 {
			t.Errorf("vector section %q decoded to no cases", name)
		}
	}
	if v.EA11Class0.Common.DecoderKey == "" || v.EA11KeyChange.Layout.NewKey == "" || v.EA07[0].Token == "" {
		t.Error("vector fields did not decode")
	}
}
