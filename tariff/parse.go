package tariff

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The JSON form of a tariff, as the API receives it. Money is an integer of
// minor units; volumes are decimal kilolitres with at most three decimals
// (whole litres), written as a JSON number or a string ("10.5").
//
//	{"code": "DOM-2026", "name": "Domestic", "currency": "ZAR",
//	 "versions": [{"effective": "2026-07-01", "vat_bp": 1500,
//	   "debt_recovery_bp": 2000, "free_basic_kl": 6,
//	   "blocks": [{"up_to_kl": 6, "price_per_kl": 2468}, ..., {"price_per_kl": 9120}],
//	   "fixed_charges": [{"name": "Basic charge", "amount": 11500}]}]}
type wireTariff struct {
	Code     string        `json:"code"`
	Name     string        `json:"name"`
	Currency string        `json:"currency"`
	Versions []wireVersion `json:"versions"`
}

type wireVersion struct {
	Effective    string       `json:"effective"`
	VAT          *json.Number `json:"vat_bp"`
	DebtRecovery *json.Number `json:"debt_recovery_bp,omitempty"`
	FreeBasicKL  *kl          `json:"free_basic_kl,omitempty"`
	Blocks       []wireBlock  `json:"blocks"`
	Fixed        []wireCharge `json:"fixed_charges,omitempty"`
}

type wireBlock struct {
	UpToKL     *kl          `json:"up_to_kl,omitempty"`
	PricePerKL *json.Number `json:"price_per_kl"`
}

type wireCharge struct {
	Name   string       `json:"name"`
	Amount *json.Number `json:"amount"`
}

// kl is a decimal kilolitre figure kept as text until validation, so that
// its error can name the field.
type kl string

func (k *kl) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*k = kl(s)
		return nil
	}
	*k = kl(b)
	return nil
}

func (k kl) MarshalJSON() ([]byte, error) { return []byte(k), nil }

// parseKL turns "10.5" into 10500 litres exactly. It accepts only plain
// decimals: no sign, no exponent, at most three decimals.
func parseKL(s string) (Litres, error) {
	whole, frac, dot := strings.Cut(s, ".")
	if whole == "" || (dot && frac == "") || len(frac) > 3 || len(whole) > 7 {
		return 0, fmt.Errorf("must be a plain decimal number of kilolitres with at most 3 decimals, got %q", s)
	}
	for _, r := range whole + frac {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("must be a plain decimal number of kilolitres with at most 3 decimals, got %q", s)
		}
	}
	w, _ := strconv.ParseInt(whole, 10, 64)
	var f int64
	if frac != "" {
		f, _ = strconv.ParseInt((frac + "00")[:3], 10, 64)
	}
	l := Litres(w*1000 + f)
	if l > MaxLitres {
		return 0, fmt.Errorf("must be at most %s kl", formatKL(MaxLitres))
	}
	return l, nil
}

// formatKL writes litres as the shortest exact decimal of kilolitres.
func formatKL(l Litres) string {
	s := strconv.FormatInt(int64(l/1000), 10)
	if f := l % 1000; f != 0 {
		s += strings.TrimRight(fmt.Sprintf(".%03d", f), "0")
	}
	return s
}

// parseInt reads an integer JSON number in [lo, hi].
func parseInt(n *json.Number, field string, lo, hi int64, unit string) (int64, error) {
	if n == nil {
		return 0, fieldErr(field, "required")
	}
	v, err := strconv.ParseInt(string(*n), 10, 64)
	if err != nil {
		return 0, fieldErr(field, "must be an integer number of %s, got %s", unit, string(*n))
	}
	if v < lo || v > hi {
		return 0, fieldErr(field, "must be between %d and %d %s, got %d", lo, hi, unit, v)
	}
	return v, nil
}

// Parse decodes and validates a tariff from its JSON form. Unknown fields
// and trailing data are rejected; every error is a *FieldError.
func Parse(data []byte) (*Tariff, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var w wireTariff
	if err := dec.Decode(&w); err != nil {
		return nil, jsonFieldErr(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fieldErr("(document)", "unexpected data after the tariff object")
	}
	return fromWire(&w)
}

// jsonFieldErr turns encoding/json's errors into FieldErrors.
func jsonFieldErr(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		f := te.Field
		if f == "" {
			f = "(document)"
		}
		return fieldErr(f, "must be a JSON %s", jsonKind(te.Type.Kind().String()))
	}
	if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
		return fieldErr(strings.Trim(strings.TrimPrefix(msg, "json: unknown field "), `"`), "unknown field")
	}
	return fieldErr("(document)", "malformed JSON: %v", err)
}

func jsonKind(k string) string {
	switch k {
	case "slice":
		return "array"
	case "struct", "map":
		return "object"
	case "ptr":
		return "value"
	}
	return k
}

func fromWire(w *wireTariff) (*Tariff, error) {
	t := &Tariff{Code: w.Code, Name: w.Name, Currency: w.Currency}
	for i := range w.Versions {
		wv := &w.Versions[i]
		p := fmt.Sprintf("versions[%d]", i)
		v := Version{}
		if wv.Effective == "" {
			return nil, fieldErr(p+".effective", "required")
		}
		d, err := ParseDate(wv.Effective)
		if err != nil {
			return nil, fieldErr(p+".effective", "%v", err)
		}
		v.Effective = d
		vat, err := parseInt(wv.VAT, p+".vat_bp", 0, 10000, "basis points")
		if err != nil {
			return nil, err
		}
		v.VAT = BasisPoints(vat)
		if wv.DebtRecovery != nil {
			dr, err := parseInt(wv.DebtRecovery, p+".debt_recovery_bp", 0, 10000, "basis points")
			if err != nil {
				return nil, err
			}
			v.DebtRecovery = BasisPoints(dr)
		}
		if wv.FreeBasicKL != nil {
			l, err := parseKL(string(*wv.FreeBasicKL))
			if err != nil {
				return nil, fieldErr(p+".free_basic_kl", "%v", err)
			}
			v.FreeBasic = l
		}
		for j, wb := range wv.Blocks {
			bp := fmt.Sprintf("%s.blocks[%d]", p, j)
			var b Block
			if wb.UpToKL != nil {
				l, err := parseKL(string(*wb.UpToKL))
				if err != nil {
					return nil, fieldErr(bp+".up_to_kl", "%v", err)
				}
				b.UpTo = l
			}
			price, err := parseInt(wb.PricePerKL, bp+".price_per_kl", 0, int64(MaxPricePerKL), "minor units")
			if err != nil {
				return nil, err
			}
			b.PricePerKL = Cents(price)
			v.Blocks = append(v.Blocks, b)
		}
		for j, wc := range wv.Fixed {
			cp := fmt.Sprintf("%s.fixed_charges[%d]", p, j)
			amt, err := parseInt(wc.Amount, cp+".amount", 0, int64(MaxCents), "minor units")
			if err != nil {
				return nil, err
			}
			v.Fixed = append(v.Fixed, Charge{Name: wc.Name, Amount: Cents(amt)})
		}
		t.Versions = append(t.Versions, v)
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return t, nil
}

// Validate checks a tariff built in Go (Parse calls it too). Errors are
// *FieldErrors named as in the JSON form.
func (t *Tariff) Validate() error {
	if err := checkCode(t.Code); err != nil {
		return fieldErr("code", "%v", err)
	}
	if !utf8.ValidString(t.Name) || len(t.Name) > 200 {
		return fieldErr("name", "must be valid UTF-8 of at most 200 bytes")
	}
	if len(t.Currency) != 3 || strings.Trim(t.Currency, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
		return fieldErr("currency", "must be a 3-letter ISO 4217 code such as ZAR, got %q", t.Currency)
	}
	if len(t.Versions) == 0 {
		return fieldErr("versions", "at least one version is required")
	}
	if len(t.Versions) > MaxVersions {
		return fieldErr("versions", "at most %d versions", MaxVersions)
	}
	for i := range t.Versions {
		p := fmt.Sprintf("versions[%d]", i)
		if i > 0 && t.Versions[i].Effective.Compare(t.Versions[i-1].Effective) <= 0 {
			return fieldErr(p+".effective", "must be after the previous version's (%s)", t.Versions[i-1].Effective)
		}
		if err := t.Versions[i].validate(p); err != nil {
			return err
		}
	}
	return nil
}

func checkCode(s string) error {
	if s == "" || len(s) > 64 {
		return errors.New("must be 1 to 64 characters")
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("may contain only letters, digits, '-', '_' and '.', got %q", s)
		}
	}
	return nil
}

func (v *Version) validate(p string) error {
	if v.Effective.IsZero() {
		return fieldErr(p+".effective", "required")
	}
	if d := v.Effective; DateOf(time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, time.UTC)) != d || d.Year < 1900 || d.Year > 9999 {
		return fieldErr(p+".effective", "not a valid date: %s", d)
	}
	if v.VAT < 0 || v.VAT > 10000 {
		return fieldErr(p+".vat_bp", "must be between 0 and 10000 basis points, got %d", v.VAT)
	}
	if v.DebtRecovery < 0 || v.DebtRecovery > 10000 {
		return fieldErr(p+".debt_recovery_bp", "must be between 0 and 10000 basis points, got %d", v.DebtRecovery)
	}
	if v.FreeBasic < 0 || v.FreeBasic > MaxLitres {
		return fieldErr(p+".free_basic_kl", "must be between 0 and %s kl", formatKL(MaxLitres))
	}
	if len(v.Blocks) == 0 {
		return fieldErr(p+".blocks", "at least one block is required")
	}
	if len(v.Blocks) > MaxBlocks {
		return fieldErr(p+".blocks", "at most %d blocks", MaxBlocks)
	}
	var prev Litres
	for j, b := range v.Blocks {
		bp := fmt.Sprintf("%s.blocks[%d]", p, j)
		last := j == len(v.Blocks)-1
		switch {
		case last && b.UpTo != 0:
			return fieldErr(bp+".up_to_kl", "the last block must be open-ended (omit up_to_kl)")
		case !last && b.UpTo <= prev:
			return fieldErr(bp+".up_to_kl", "must be greater than the previous block's bound (%s kl)", formatKL(prev))
		case !last && b.UpTo > MaxLitres:
			return fieldErr(bp+".up_to_kl", "must be at most %s kl", formatKL(MaxLitres))
		case b.PricePerKL < 0 || b.PricePerKL > MaxPricePerKL:
			return fieldErr(bp+".price_per_kl", "must be between 0 and %d minor units", MaxPricePerKL)
		case last && b.PricePerKL == 0:
			// An open-ended free block would sell unlimited water for any amount.
			return fieldErr(bp+".price_per_kl", "the open-ended last block must have a price above zero")
		}
		prev = b.UpTo
	}
	if len(v.Fixed) > MaxCharges {
		return fieldErr(p+".fixed_charges", "at most %d charges", MaxCharges)
	}
	seen := map[string]bool{}
	for j, c := range v.Fixed {
		cp := fmt.Sprintf("%s.fixed_charges[%d]", p, j)
		if c.Name == "" || len(c.Name) > 64 || !utf8.ValidString(c.Name) {
			return fieldErr(cp+".name", "must be valid UTF-8 of 1 to 64 bytes")
		}
		if seen[c.Name] {
			return fieldErr(cp+".name", "duplicate charge name %q", c.Name)
		}
		seen[c.Name] = true
		if c.Amount <= 0 || c.Amount > MaxCents {
			return fieldErr(cp+".amount", "must be between 1 and %d minor units", MaxCents)
		}
	}
	return nil
}

// MarshalJSON writes the tariff in the form Parse reads.
func (t *Tariff) MarshalJSON() ([]byte, error) {
	w := wireTariff{Code: t.Code, Name: t.Name, Currency: t.Currency, Versions: []wireVersion{}}
	num := func(v int64) *json.Number { n := json.Number(strconv.FormatInt(v, 10)); return &n }
	for _, v := range t.Versions {
		wv := wireVersion{
			Effective:    v.Effective.String(),
			VAT:          num(int64(v.VAT)),
			DebtRecovery: num(int64(v.DebtRecovery)),
			Blocks:       []wireBlock{},
		}
		fb := kl(formatKL(v.FreeBasic))
		wv.FreeBasicKL = &fb
		for _, b := range v.Blocks {
			wb := wireBlock{PricePerKL: num(int64(b.PricePerKL))}
			if b.UpTo != 0 {
				u := kl(formatKL(b.UpTo))
				wb.UpToKL = &u
			}
			wv.Blocks = append(wv.Blocks, wb)
		}
		for _, c := range v.Fixed {
			wv.Fixed = append(wv.Fixed, wireCharge{Name: c.Name, Amount: num(int64(c.Amount))})
		}
		w.Versions = append(w.Versions, wv)
	}
	return json.Marshal(w)
}
