package wmbus

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"
)

func TestVolumeDecades(t *testing.T) {
	// 0x10..0x17: 10^-6 .. 10^1 m3; FB 10/11: 10^2, 10^3 m3. Raw value 1234.
	cases := []struct {
		rec  string
		want float64
	}{
		{"0410D2040000", 0.001234}, {"0411D2040000", 0.01234}, {"0412D2040000", 0.1234},
		{"0413D2040000", 1.234}, {"0414D2040000", 12.34}, {"0415D2040000", 123.4},
		{"0416D2040000", 1234}, {"0417D2040000", 12340},
		{"04FB10D2040000", 123400}, {"04FB11D2040000", 1234000},
		{"0A133412", 1.234}, {"0C1378563412", 12345.678}, {"0B13563412", 123.456},
		{"0C13785634F2", -2345.678}, // BCD, F in the top nibble: negative
		{"0213FEFF", -0.002},        // signed 16-bit
		{"0113FF", -0.001},
		{"031301 0080", -8388.607},
		{"0613010000000000", 0.001},
		{"0713FFFFFFFFFFFFFFFF", -0.001},
		{"0513 0000C03F", 0.0015}, // float32 1.5 x 10^-3
		{"0E13123456789012", 129078563.412},
	}
	for _, c := range cases {
		rs, err := ParseRecords(mustHex(t, spaceless(c.rec)))
		if err != nil || len(rs.List) != 1 {
			t.Fatalf("%s: %v %v", c.rec, rs.List, err)
		}
		r := rs.List[0]
		if r.Quantity != QuantityVolume || r.Unit != "m3" || math.Abs(r.Value-c.want) > 1e-9*math.Max(1, math.Abs(c.want)) {
			t.Errorf("%s: %s %v %s, want volume %v", c.rec, r.Quantity, r.Value, r.Unit, c.want)
		}
	}
}

func spaceless(s string) string {
	out := make([]byte, 0, len(s))
	for i := range len(s) {
		if s[i] != ' ' {
			out = append(out, s[i])
		}
	}
	return string(out)
}

func TestDatesAndFlags(t *testing.T) {
	// 04 6D type F 2020-07-30 10:40; 02 6C type G 2026-11-25; 06 6D type I;
	// 02 FD 17 error flags; 84 01 13: storage 2; 82 10 13: tariff 1 (not the total);
	// 04 93 3C: volume, backward flow; 0D 78: ASCII fabrication number.
	p := mustHex(t, spaceless("2F2F 046D 282A9E27 026C 593B 066D 050A0BBB3C00 02FD17 0400 840113 10000000"+
		" 821013 2000 04933C 05000000 0D78 03 333231 0413 E8030000 0F 0102"))
	rs, err := ParseRecords(p)
	if err != nil {
		t.Fatal(err)
	}
	l := rs.List
	if len(l) != 9 {
		t.Fatalf("%d records: %+v", len(l), l)
	}
	if want := time.Date(2020, 7, 30, 10, 40, 0, 0, time.UTC); !l[0].Time.Equal(want) || l[0].Quantity != QuantityDateTime {
		t.Errorf("type F = %v", l[0].Time)
	}
	if want := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC); !l[1].Time.Equal(want) || l[1].Quantity != QuantityDate {
		t.Errorf("type G = %v (%X)", l[1].Time, l[1].Data)
	}
	if want := time.Date(2029, 12, 27, 11, 10, 5, 0, time.UTC); !l[2].Time.Equal(want) {
		t.Errorf("type I = %v", l[2].Time)
	}
	if l[3].Quantity != QuantityErrorFlags || l[3].Value != 4 {
		t.Errorf("error flags = %+v", l[3])
	}
	if l[4].Storage != 2 || l[5].Tariff != 1 || l[6].VIFE[0] != 0x3C {
		t.Errorf("storage %d tariff %d vife %X", l[4].Storage, l[5].Tariff, l[6].VIFE)
	}
	if l[7].Text != "123" {
		t.Errorf("text = %q", l[7].Text)
	}
	if string(rs.Mfct) != "\x01\x02" || rs.More {
		t.Errorf("mfct = %X", rs.Mfct)
	}
	tg := Telegram{Records: l}
	if m3, ok := tg.TotalVolume(); !ok || m3 != 1 {
		t.Errorf("total = %v %v (must skip storage 2, tariff 1 and backward flow)", m3, ok)
	}
}

func TestInvalidValues(t *testing.T) {
	rs, err := ParseRecords(mustHex(t, "0C13FFFFFFFF046DFFFFFFFF"))
	if err != nil {
		t.Fatal(err)
	}
	if !rs.List[0].Invalid || !rs.List[1].Invalid {
		t.Errorf("invalid markers not seen: %+v", rs.List)
	}
	tg := Telegram{Records: rs.List}
	if _, ok := tg.TotalVolume(); ok {
		t.Error("an invalid BCD total was reported")
	}
}

func TestMalformedRecords(t *testing.T) {
	for _, h := range []string{
		"04",                           // no VIF
		"0413E803",                     // data cut
		"8413",                         // DIFE missing: 13 read as DIFE then no VIF
		"04FD",                         // extension code missing
		"0493",                         // VIFE missing
		"3F13",                         // special function in a response
		"8080808080808080808080800413", // 11 DIFE
		"0D13",                         // LVAR missing
		"0D13F5",                       // LVAR reserved
		"0D1305414243",                 // LVAR longer than data
		"0213",                         // 16-bit data missing
		"036C010203",                   // date in a 24-bit field
	} {
		if _, err := ParseRecords(mustHex(t, h)); !errors.Is(err, ErrRecord) {
			t.Errorf("%s: err = %v, want ErrRecord", h, err)
		}
	}
}

func TestManufacturerCode(t *testing.T) {
	for _, c := range []string{"KAM", "APA", "DME", "HYD", "AAA", "ZZZ"} {
		m, ok := MField(c)
		if !ok || ManufacturerCode(m) != c {
			t.Errorf("%s -> %04X -> %s", c, m, ManufacturerCode(m))
		}
	}
	if m, _ := MField("KAM"); m != 0x2C2D {
		t.Errorf("KAM = %04X, want 2C2D", m)
	}
	if _, ok := MField("K4M"); ok {
		t.Error("K4M accepted")
	}
}

func TestStatusFlags(t *testing.T) {
	cases := map[byte]string{0x00: "[]", 0x03: "[alarm]", 0x0E: "[error permanent_error power_low]", 0x14: "[power_low temporary_error]", 0xE0: "[]"}
	for b, want := range cases {
		h := TPL{Status: b}
		if got := fmt.Sprint(h.StatusFlags()); got != want {
			t.Errorf("%02X: %s, want %s", b, got, want)
		}
	}
}
