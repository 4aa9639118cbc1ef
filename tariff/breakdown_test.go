package tariff

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

var july = Date{2026, time.July, 15}

// The worked examples of docs/tariffs.md, computed by hand.
func TestWorkedExamples(t *testing.T) {
	dom := loadTariff(t, "good_domestic.json")
	tests := []struct {
		name     string
		req      Request
		tendered Cents
		want     Breakdown
	}{
		{
			// First purchase of July: R200 with R500 arrears, keypad litres.
			name:     "first of month",
			req:      Request{Date: july, Debt: 50000},
			tendered: 20000,
			want: Breakdown{
				Tendered: 20000, Debt: 4000, DebtAfter: 46000,
				Fixed:  []ChargeLine{{"Basic charge", 11500, 1500}},
				Blocks: []BlockLine{{2, 6000, 7428, 1428, 3150, 4498, 587}},
				Litres: 1428, Water: 4498, VAT: 2087, Change: 2,
				FreeLitres: 6000, FreeValue: 13043,
				UsageAfter: Usage{PaidLitres: 1428, FreeIssued: true, FixedCollected: 11500},
			},
		},
		{
			// Later in July, an STS meter (0.1 m3 tokens) crossing blocks 2-4.
			name:     "crossing blocks, STS quantum",
			req:      Request{Date: july, Debt: 46000, Quantum: 100, Usage: Usage{PaidLitres: 3900, FreeIssued: true, FixedCollected: 11500}},
			tendered: 30000,
			want: Breakdown{
				Quantum: 100, Tendered: 30000, Debt: 6000, DebtAfter: 40000, Fixed: []ChargeLine{},
				Blocks: []BlockLine{
					{2, 9900, 10000, 100, 3150, 315, 41},
					{3, 10000, 15000, 5000, 4480, 22400, 2922},
					{4, 15000, 15200, 200, 6210, 1242, 162},
				},
				Litres: 5300, Water: 23957, VAT: 3125, Change: 43,
				UsageAfter: Usage{PaidLitres: 9200, FreeIssued: true, FixedCollected: 11500},
			},
		},
		{
			// R50 on the first day of the month does not cover the R115 basic
			// charge: it collects what it can (after 20% debt), buys no water,
			// and still releases the month's free basic water.
			name:     "too small for the fixed charge",
			req:      Request{Date: july, Debt: 1000},
			tendered: 5000,
			want: Breakdown{
				Tendered: 5000, Debt: 1000, DebtAfter: 0,
				Fixed:  []ChargeLine{{"Basic charge", 4000, 522}},
				Blocks: []BlockLine{}, VAT: 522,
				FreeLitres: 6000, FreeValue: 13043,
				UsageAfter: Usage{FreeIssued: true, FixedCollected: 4000},
			},
		},
		{
			// Free basic water alone: nothing tendered.
			name: "free basic water only",
			req:  Request{Date: july},
			want: Breakdown{
				Fixed: []ChargeLine{}, Blocks: []BlockLine{},
				FreeLitres: 6000, FreeValue: 13043,
				UsageAfter: Usage{FreeIssued: true},
			},
		},
		{
			// 2027 version: two fixed charges, the first already paid in part.
			name:     "second version, partly paid charges",
			req:      Request{Date: Date{2027, time.August, 1}, Usage: Usage{FreeIssued: true, FixedCollected: 10000}},
			tendered: 10000,
			want: Breakdown{
				Effective: Date{2027, time.July, 1}, Tendered: 10000,
				Fixed:  []ChargeLine{{"Basic charge", 2420, 316}, {"Meter maintenance", 1500, 195}},
				Blocks: []BlockLine{{2, 6000, 7787, 1787, 3402, 6079, 793}},
				Litres: 1787, Water: 6079, VAT: 1304, Change: 1,
				UsageAfter: Usage{PaidLitres: 1787, FreeIssued: true, FixedCollected: 13920},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := dom.Purchase(tc.req, tc.tendered)
			if err != nil {
				t.Fatal(err)
			}
			w := tc.want
			w.Tariff, w.Currency, w.VATRate = "DOM-2026", "ZAR", 1500
			if w.Effective.IsZero() {
				w.Effective = Date{2026, time.July, 1}
			}
			if w.Quantum == 0 {
				w.Quantum = 1
			}
			if !reflect.DeepEqual(got, w) {
				t.Errorf("got  %+v\nwant %+v", got, w)
			}
			if err := got.Check(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestNoVersionBeforeFirst(t *testing.T) {
	dom := loadTariff(t, "good_domestic.json")
	_, err := dom.Purchase(Request{Date: Date{2026, time.June, 30}}, 1000)
	if !errors.Is(err, ErrNoVersion) {
		t.Fatalf("err = %v, want ErrNoVersion", err)
	}
}

func TestRequestErrorsNameField(t *testing.T) {
	dom := loadTariff(t, "good_domestic.json")
	tests := []struct {
		req      Request
		tendered Cents
		field    string
	}{
		{Request{Date: july}, -1, "tendered"},
		{Request{Date: july, Debt: -5}, 100, "debt"},
		{Request{Date: july, Quantum: -1}, 100, "quantum"},
		{Request{Date: july, Quantum: MaxQuantum + 1}, 100, "quantum"},
		{Request{Date: july, Usage: Usage{PaidLitres: -1}}, 100, "usage.paid_litres"},
		{Request{Date: july, Usage: Usage{FixedCollected: -1}}, 100, "usage.fixed_collected"},
	}
	for _, tc := range tests {
		_, err := dom.Purchase(tc.req, tc.tendered)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%+v, %d: err = %v, want field %s", tc.req, tc.tendered, err, tc.field)
		}
	}
	if _, err := dom.Purchase(Request{Date: july}, MaxCents+1); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over MaxCents: err = %v", err)
	}
}

func TestQuoteWorked(t *testing.T) {
	dom := loadTariff(t, "good_domestic.json")
	// 10 kl on an STS meter mid-month, no debt, charges paid: starts at
	// 6 + 3.9 kl, so 0.1 kl in block 2, 5 kl in block 3, 4.9 kl in block 4.
	r := Request{Date: july, Quantum: 100, Usage: Usage{PaidLitres: 3900, FreeIssued: true, FixedCollected: 11500}}
	q, err := dom.Quote(r, 10000)
	if err != nil {
		t.Fatal(err)
	}
	// 315 + 22400 + round(4900 * 62.10 / 1000 = 304.29 rand) = 30429 cents.
	if q.Litres != 10000 || q.Tendered != 315+22400+30429 || q.Change != 0 {
		t.Errorf("quote = %d litres for %d (change %d)", q.Litres, q.Tendered, q.Change)
	}
}

// randTariff makes a valid random tariff; small numbers on purpose so that
// block edges, zero prices and rounding ties are hit often.
func randTariff(rng *rand.Rand) *Tariff {
	v := Version{
		Effective:    Date{2026, time.January, 1},
		VAT:          BasisPoints(rng.IntN(3) * 750),
		DebtRecovery: BasisPoints([]int{0, 1000, 2500, 10000}[rng.IntN(4)]),
		FreeBasic:    Litres([]int{0, 0, 6000, 50}[rng.IntN(4)]),
	}
	nb := 1 + rng.IntN(5)
	var edge Litres
	for i := range nb {
		edge += Litres(1 + rng.IntN(8000))
		b := Block{UpTo: edge, PricePerKL: Cents(rng.IntN(12000))}
		if i == nb-1 {
			b.UpTo = 0
			b.PricePerKL = Cents(1 + rng.IntN(15000))
		}
		v.Blocks = append(v.Blocks, b)
	}
	for i := range rng.IntN(3) {
		v.Fixed = append(v.Fixed, Charge{Name: string(rune('A' + i)), Amount: Cents(1 + rng.IntN(5000))})
	}
	t := &Tariff{Code: "RND", Currency: "ZAR", Versions: []Version{v}}
	if err := t.Validate(); err != nil {
		panic(err)
	}
	return t
}

func randRequest(rng *rand.Rand) Request {
	return Request{
		Date:    Date{2026, time.March, 3},
		Debt:    Cents([]int{0, 500, 100000}[rng.IntN(3)]),
		Quantum: Litres([]int{1, 1, 100, 7}[rng.IntN(4)]),
		Usage: Usage{
			PaidLitres:     Litres(rng.IntN(20000)),
			FreeIssued:     rng.IntN(2) == 0,
			FixedCollected: Cents(rng.IntN(3000)),
		},
	}
}

// Property: every breakdown balances to the cent, spends as much as it can
// (one more quantum would not fit), and its usage moves on by what it sold.
func TestPropertyBalances(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		tf := randTariff(rng)
		r := randRequest(rng)
		tendered := Cents(rng.IntN(200000))
		b, err := tf.Purchase(r, tendered)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Check(); err != nil {
			t.Fatalf("%v\n%+v\n%+v", err, tf.Versions[0], b)
		}
		v := &tf.Versions[0]
		start := v.FreeBasic + r.Usage.PaidLitres
		left := b.Water + b.Change
		if b.Litres%b.Quantum != 0 || v.cost(start, b.Litres) != b.Water || v.cost(start, b.Litres+b.Quantum) <= left {
			t.Fatalf("not maximal: %d litres for %d of %d\n%+v", b.Litres, b.Water, left, v)
		}
		if b.Debt > r.Debt || b.DebtAfter != r.Debt-b.Debt {
			t.Fatalf("debt %d of %d, after %d", b.Debt, r.Debt, b.DebtAfter)
		}
		if b.UsageAfter.PaidLitres != r.Usage.PaidLitres+b.Litres ||
			b.UsageAfter.FixedCollected != r.Usage.FixedCollected+b.FixedTotal() {
			t.Fatalf("usage after %+v", b.UsageAfter)
		}
		if b.UsageAfter.FixedCollected > max(v.FixedTotal(), r.Usage.FixedCollected) {
			t.Fatalf("collected %d of %d fixed", b.UsageAfter.FixedCollected, v.FixedTotal())
		}
	}
}

// Property: more money never buys less water (nor recovers less debt).
func TestPropertyMonotone(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 300 {
		tf := randTariff(rng)
		r := randRequest(rng)
		prev, _ := tf.Purchase(r, 0)
		step := Cents(1 + rng.IntN(50))
		for amt := step; amt < 30000; amt += step {
			b, err := tf.Purchase(r, amt)
			if err != nil {
				t.Fatal(err)
			}
			if b.Litres < prev.Litres || b.Debt < prev.Debt || b.FixedTotal() < prev.FixedTotal() {
				t.Fatalf("%d buys %d litres, %d bought %d\n%+v", amt, b.Litres, prev.Tendered, prev.Litres, tf.Versions[0])
			}
			prev = b
		}
	}
}

// Property: buying a month's water in several purchases walks the blocks in
// order and ends exactly where one purchase of the same litres ends; the
// money differs only by the per-line rounding (at most half a cent a line).
func TestPropertySplitEqualsWhole(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 1000 {
		tf := randTariff(rng)
		r := randRequest(rng)
		r.Debt = 0
		r.Usage.FixedCollected = tf.Versions[0].FixedTotal()
		var lines []BlockLine
		var paid Cents
		var total Litres
		u := r
		for range 1 + rng.IntN(6) {
			want := Litres(rng.IntN(6000))
			b, err := tf.Quote(u, want)
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, b.Blocks...)
			paid += b.Water
			total += b.Litres
			u.Usage = b.UsageAfter
		}
		// One purchase of the same litres (Quote may round a volume up when a
		// cent buys more than a quantum, so itemise the litres directly).
		v := &tf.Versions[0]
		start := v.FreeBasic + r.Usage.PaidLitres
		one := Breakdown{Blocks: v.lines(start, total), Water: v.cost(start, total)}
		// Concatenated split lines, merged per block, equal the whole's lines.
		var merged []BlockLine
		for _, l := range lines {
			if n := len(merged); n > 0 && merged[n-1].Block == l.Block {
				if merged[n-1].To != l.From {
					t.Fatalf("gap in block %d: %d..%d", l.Block, merged[n-1].To, l.From)
				}
				merged[n-1].To, merged[n-1].Litres = l.To, merged[n-1].Litres+l.Litres
				continue
			}
			merged = append(merged, l)
		}
		if len(merged) != len(one.Blocks) {
			t.Fatalf("split touched %d blocks, whole %d", len(merged), len(one.Blocks))
		}
		for i := range merged {
			m, o := merged[i], one.Blocks[i]
			if m.Block != o.Block || m.From != o.From || m.To != o.To {
				t.Fatalf("block %d: split %d..%d, whole %d..%d", m.Block, m.From, m.To, o.From, o.To)
			}
		}
		if d := paid - one.Water; 2*abs(d) > Cents(len(lines)+len(one.Blocks)) {
			t.Fatalf("split paid %d, whole %d: more than rounding (%d lines)", paid, one.Water, len(lines)+len(one.Blocks))
		}
	}
}

// Property: Quote is the least amount buying the volume, and paying it
// reproduces the quote exactly.
func TestPropertyQuoteInverse(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for range 2000 {
		tf := randTariff(rng)
		r := randRequest(rng)
		want := Litres(rng.IntN(30000))
		q, err := tf.Quote(r, want)
		if err != nil {
			t.Fatal(err)
		}
		if q.Litres < want {
			t.Fatalf("quote for %d litres gives %d", want, q.Litres)
		}
		b, _ := tf.Purchase(r, q.Tendered)
		if !reflect.DeepEqual(b, q) {
			t.Fatalf("paying the quote differs:\n%+v\n%+v", q, b)
		}
		if q.Tendered > 0 {
			less, _ := tf.Purchase(r, q.Tendered-1)
			if less.Litres >= want && want > 0 {
				t.Fatalf("%d also buys %d litres; quote said %d", q.Tendered-1, less.Litres, q.Tendered)
			}
		}
	}
}

func abs(c Cents) Cents {
	if c < 0 {
		return -c
	}
	return c
}

// Extreme values must neither overflow nor break the balance.
func TestLimits(t *testing.T) {
	tf := &Tariff{Code: "BIG", Currency: "ZAR", Versions: []Version{{
		Effective: Date{2026, 1, 1}, VAT: 10000, DebtRecovery: 10000, FreeBasic: MaxLitres,
		Blocks: []Block{{MaxLitres - 1, MaxPricePerKL}, {0, 1}},
		Fixed:  []Charge{{"X", MaxCents}},
	}}}
	if err := tf.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []Request{
		{Date: Date{2026, 1, 1}},
		{Date: Date{2026, 1, 1}, Debt: MaxCents, Quantum: MaxQuantum, Usage: Usage{PaidLitres: MaxUsage}},
		{Date: Date{2026, 1, 1}, Usage: Usage{FixedCollected: MaxCents}},
	} {
		for _, amt := range []Cents{0, 1, MaxCents / 3, MaxCents} {
			b, err := tf.Purchase(r, amt)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Check(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func BenchmarkPurchase(b *testing.B) {
	dom := loadTariff(b, "good_domestic.json")
	r := Request{Date: july, Debt: 50000, Quantum: 100, Usage: Usage{PaidLitres: 3900, FreeIssued: true}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dom.Purchase(r, 30000); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "breakdowns/s")
}

func BenchmarkQuote(b *testing.B) {
	dom := loadTariff(b, "good_domestic.json")
	r := Request{Date: july, Debt: 50000, Quantum: 100, Usage: Usage{PaidLitres: 3900, FreeIssued: true}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dom.Quote(r, 12000); err != nil {
			b.Fatal(err)
		}
	}
}

// A month's usage is the fold of its purchases; removing a reversed
// purchase gives the usage as if it had never happened.
func TestUsageFold(t *testing.T) {
	dom := loadTariff(t, "good_domestic.json")
	var u Usage
	var bs []Breakdown
	for _, amt := range []Cents{5000, 20000, 0, 30000} {
		b, err := dom.Purchase(Request{Date: july, Usage: u, Quantum: 100}, amt)
		if err != nil {
			t.Fatal(err)
		}
		if b.UsageAfter != u.Add(&b) {
			t.Fatalf("UsageAfter %+v != Add %+v", b.UsageAfter, u.Add(&b))
		}
		u = b.UsageAfter
		bs = append(bs, b)
	}
	if u.PaidLitres != bs[1].Litres+bs[3].Litres || !u.FreeIssued || u.FixedCollected != 11500 {
		t.Errorf("month usage %+v", u)
	}
	// Reverse the first purchase, which carried the free water.
	if got := u.Remove(&bs[0]); got.FreeIssued || got.FixedCollected != 11500-5000 || got.PaidLitres != u.PaidLitres {
		t.Errorf("after removing the first purchase: %+v", got)
	}
}

// FuzzPurchase drives the arithmetic with arbitrary tariffs and requests:
// whatever validates must give a balanced, maximal breakdown, and the quote
// for the litres bought must cost no more than was tendered.
func FuzzPurchase(f *testing.F) {
	f.Add(uint16(6000), uint16(4000), int64(2500), int64(3150), int64(8995), uint16(1500), uint16(2000), uint16(6000), int64(11500),
		int64(50000), int64(0), uint16(1), int64(20000))
	f.Add(uint16(1), uint16(1), int64(0), int64(1), int64(1), uint16(10000), uint16(10000), uint16(0), int64(1),
		int64(1), int64(99), uint16(100), int64(1))
	f.Fuzz(func(t *testing.T, e1, e2 uint16, p1, p2, p3 int64, vat, debtBP, free uint16, fixed, debt, paid int64, quantum uint16, tendered int64) {
		tf := &Tariff{Code: "F", Currency: "ZAR", Versions: []Version{{
			Effective: Date{2026, 1, 1}, VAT: BasisPoints(vat), DebtRecovery: BasisPoints(debtBP), FreeBasic: Litres(free),
			Blocks: []Block{{Litres(e1), Cents(p1)}, {Litres(e1) + Litres(e2), Cents(p2)}, {0, Cents(p3)}},
		}}}
		if fixed > 0 {
			tf.Versions[0].Fixed = []Charge{{"fixed", Cents(fixed)}}
		}
		if tf.Validate() != nil {
			return
		}
		r := Request{Date: Date{2026, 2, 1}, Debt: Cents(debt), Quantum: Litres(quantum), Usage: Usage{PaidLitres: Litres(paid)}}
		b, err := tf.Purchase(r, Cents(tendered))
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if err := b.Check(); err != nil {
			t.Fatal(err)
		}
		v := &tf.Versions[0]
		start := v.FreeBasic + r.Usage.PaidLitres
		if v.cost(start, b.Litres+b.Quantum) <= b.Water+b.Change {
			t.Fatalf("not maximal: %+v", b)
		}
		q, err := tf.Quote(r, b.Litres)
		if err != nil {
			t.Fatal(err)
		}
		if q.Tendered > b.Tendered || q.Litres < b.Litres {
			t.Fatalf("quote for %d litres costs %d > %d tendered", b.Litres, q.Tendered, b.Tendered)
		}
	})
}
