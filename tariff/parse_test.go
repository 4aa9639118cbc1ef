package tariff

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func loadTariff(t testing.TB, name string) *Tariff {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	tf, err := Parse(b)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return tf
}

func TestParseGood(t *testing.T) {
	dom := loadTariff(t, "good_domestic.json")
	if dom.Code != "DOM-2026" || dom.Currency != "ZAR" || len(dom.Versions) != 2 {
		t.Fatalf("parsed %+v", dom)
	}
	v := dom.Versions[0]
	want := []Block{{6000, 2500}, {10000, 3150}, {15000, 4480}, {20000, 6210}, {0, 8995}}
	if !reflect.DeepEqual(v.Blocks, want) {
		t.Errorf("blocks = %v, want %v", v.Blocks, want)
	}
	if v.FreeBasic != 6000 || v.VAT != 1500 || v.DebtRecovery != 2000 || v.FixedTotal() != 11500 {
		t.Errorf("version = %+v", v)
	}
	std := loadTariff(t, "good_standard.json")
	if got := std.Versions[0].Blocks[1].UpTo; got != 10500 {
		t.Errorf(`"10.5" kl = %d litres, want 10500`, got)
	}
	if std.Versions[0].FreeBasic != 0 || std.Versions[0].DebtRecovery != 0 {
		t.Errorf("omitted optional fields should be zero: %+v", std.Versions[0])
	}
}

func TestParseFail(t *testing.T) {
	tests := map[string]string{ // file -> field the error must name
		"fail_bad_date.json":              "versions[0].effective",
		"fail_blocks_not_rising.json":     "versions[0].blocks[1].up_to_kl",
		"fail_currency.json":              "currency",
		"fail_duplicate_charge.json":      "versions[0].fixed_charges[1].name",
		"fail_free_last_block.json":       "versions[0].blocks[1].price_per_kl",
		"fail_kl_too_precise.json":        "versions[0].blocks[0].up_to_kl",
		"fail_last_block_bounded.json":    "versions[0].blocks[1].up_to_kl",
		"fail_price_fraction.json":        "versions[0].blocks[0].price_per_kl",
		"fail_trailing.json":              "(document)",
		"fail_unknown_field.json":         "vat_rate",
		"fail_vat_missing.json":           "versions[0].vat_bp",
		"fail_vat_range.json":             "versions[0].vat_bp",
		"fail_versions_out_of_order.json": "versions[1].effective",
	}
	files, _ := filepath.Glob("testdata/fail_*.json")
	if len(files) != len(tests) {
		t.Errorf("%d fail_ files, %d expectations", len(files), len(tests))
	}
	for name, field := range tests {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			tf, err := Parse(b)
			if err == nil {
				t.Fatalf("accepted: %+v", tf)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not a FieldError", err)
			}
			if fe.Field != field {
				t.Errorf("error %q names %q, want %q", err, fe.Field, field)
			}
		})
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	for _, name := range []string{"good_domestic.json", "good_standard.json"} {
		tf := loadTariff(t, name)
		b, err := json.Marshal(tf)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: re-parse: %v\n%s", name, err, b)
		}
		if !reflect.DeepEqual(tf, back) {
			t.Errorf("%s: round trip changed the tariff:\n%+v\n%+v", name, tf, back)
		}
	}
}

func TestParseKL(t *testing.T) {
	tests := []struct {
		in   string
		want Litres
		ok   bool
	}{
		{"6", 6000, true}, {"0", 0, true}, {"10.5", 10500, true}, {"0.001", 1, true},
		{"12.250", 12250, true}, {"1000000", 1000000000, true},
		{"1000001", 0, false}, {"-1", 0, false}, {"1e3", 0, false}, {"6.", 0, false},
		{".5", 0, false}, {"6.0001", 0, false}, {"", 0, false}, {"six", 0, false}, {"+6", 0, false},
	}
	for _, tc := range tests {
		got, err := parseKL(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseKL(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if back, err := parseKL(formatKL(got)); tc.ok && (err != nil || back != got) {
			t.Errorf("formatKL(%d) = %q does not parse back", got, formatKL(got))
		}
	}
}

// FuzzParse checks that Parse never panics, that whatever it accepts
// validates and survives a marshal round trip unchanged, and that every
// rejection is a FieldError.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tf, err := Parse(data)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a FieldError", err)
			}
			return
		}
		if err := tf.Validate(); err != nil {
			t.Fatalf("Parse accepted an invalid tariff: %v", err)
		}
		b, err := json.Marshal(tf)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(b)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", b, err)
		}
		if !reflect.DeepEqual(tf, back) {
			t.Fatalf("round trip changed the tariff")
		}
		b2, _ := json.Marshal(back)
		if !bytes.Equal(b, b2) {
			t.Fatalf("marshal not canonical:\n%s\n%s", b, b2)
		}
		// A parsed tariff must be usable: a purchase on its first date balances.
		r := Request{Date: tf.Versions[0].Effective, Debt: 1000}
		bd, err := tf.Purchase(r, 12345)
		if err != nil {
			t.Fatal(err)
		}
		if err := bd.Check(); err != nil {
			t.Fatal(err)
		}
	})
}
