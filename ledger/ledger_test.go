package ledger

import (
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"sluice/tariff"
)

var t0 = time.Date(2026, time.July, 15, 8, 30, 0, 0, time.UTC)

// domestic is the worked tariff of docs/tariffs.md (the 2026 version).
func domestic() *tariff.Tariff {
	return &tariff.Tariff{Code: "DOM-2026", Currency: "ZAR", Versions: []tariff.Version{{
		Effective: tariff.Date{Year: 2026, Month: time.July, Day: 1},
		Blocks:    []tariff.Block{{UpTo: 6000, PricePerKL: 2500}, {UpTo: 10000, PricePerKL: 3150}, {UpTo: 15000, PricePerKL: 4480}, {UpTo: 20000, PricePerKL: 6210}, {PricePerKL: 8995}},
		FreeBasic: 6000, Fixed: []tariff.Charge{{Name: "Basic charge", Amount: 11500}},
		VAT: 1500, DebtRecovery: 2000,
	}}}
}

func breakdown(t testing.TB, r tariff.Request, amount tariff.Cents) *tariff.Breakdown {
	t.Helper()
	b, err := domestic().Purchase(r, amount)
	if err != nil {
		t.Fatal(err)
	}
	return &b
}

var july = tariff.Date{Year: 2026, Month: time.July, Day: 15}

func acct(s string) Account {
	a, err := ParseAccount(s)
	if err != nil {
		panic(err)
	}
	return a
}

// The worked purchase of docs/ledger.md: R200 tendered, R500 arrears, first
// purchase of the month (docs/tariffs.md, example 1).
func TestPurchaseEntryWorked(t *testing.T) {
	b := breakdown(t, tariff.Request{Date: july, Debt: 50000}, 20000)
	e, err := PurchaseEntry(Purchase{
		ID: "P-0001", Vendor: "V-017", Meter: "01234567890", Customer: "C-42", Time: t0, Breakdown: b,
		Tokens: []Token{{Meter: "01234567890", Purpose: PurposeCredit, TID: 17284001}, {Meter: "01234567890", Purpose: PurposeFree, TID: 17284002}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Posting{
		{acct("float:V-017"), "ZAR", 19998},
		{acct("debt:C-42"), "ZAR", -4000},
		{acct("revenue:fixed"), "ZAR", -10000},
		{acct("revenue:water"), "ZAR", -3911},
		{acct("vat:output"), "ZAR", -2087},
		{acct("subsidy:free-basic"), "ZAR", 13043},
		{acct("revenue:free-basic"), "ZAR", -13043},
		{acct("credit:01234567890"), "L", 7428},
		{acct("issued:water"), "L", -7428},
	}
	if !reflect.DeepEqual(e.Postings, want) {
		t.Errorf("postings:\n got %v\nwant %v", e.Postings, want)
	}
	if e.ID != "purchase:P-0001" || e.Purchase != "P-0001" || e.Type != TypePurchase || len(e.Tokens) != 2 {
		t.Errorf("entry = %+v", e)
	}

	rev, err := Reverse(&e, "P-0001", t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if rev.ID != "reversal:P-0001" || rev.Reverses != e.ID || rev.Purchase != "P-0001" || len(rev.Tokens) != 0 {
		t.Errorf("reversal = %+v", rev)
	}
	for i, p := range rev.Postings {
		if p.Account != want[i].Account || p.Amount != -want[i].Amount {
			t.Errorf("reversal posting %d = %v", i, p)
		}
	}
	if _, err := Reverse(&rev, "again", t0); !errors.Is(err, ErrNotReversible) {
		t.Errorf("reversing a reversal: %v", err)
	}
}

func TestPurchaseEntryRejects(t *testing.T) {
	good := Purchase{ID: "P-1", Vendor: "V-1", Meter: "M-1", Customer: "C-1", Time: t0,
		Breakdown: breakdown(t, tariff.Request{Date: july}, 5000), Tokens: []Token{{Meter: "M-1", Purpose: PurposeCredit, TID: 5}}}
	if _, err := PurchaseEntry(good); err != nil {
		t.Fatal(err)
	}
	tests := map[string]func(p *Purchase){
		"no breakdown":      func(p *Purchase) { p.Breakdown = nil },
		"no tokens":         func(p *Purchase) { p.Tokens = nil },
		"token other meter": func(p *Purchase) { p.Tokens = []Token{{Meter: "M-2", Purpose: PurposeCredit, TID: 5}} },
		"bad vendor":        func(p *Purchase) { p.Vendor = "V 1" },
		"colon in meter":    func(p *Purchase) { p.Meter = "M:1" },
		"no time":           func(p *Purchase) { p.Time = time.Time{} },
		"doctored breakdown": func(p *Purchase) {
			b := *p.Breakdown
			b.Change++
			p.Breakdown = &b
		},
		"bad purpose": func(p *Purchase) { p.Tokens = []Token{{Meter: "M-1", Purpose: "gift", TID: 5}} },
		"repeated token": func(p *Purchase) {
			p.Tokens = []Token{{Meter: "M-1", Purpose: PurposeCredit, TID: 5}, {Meter: "M-1", Purpose: PurposeCredit, TID: 5}}
		},
	}
	for name, mod := range tests {
		p := good
		mod(&p)
		if _, err := PurchaseEntry(p); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

func TestSimpleEntries(t *testing.T) {
	d, err := DepositEntry(Deposit{ID: "V-1/D-1", Vendor: "V-1", Bank: "main", Currency: "ZAR", Amount: 100000, Time: t0})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Posting{{acct("bank:main"), "ZAR", 100000}, {acct("float:V-1"), "ZAR", -100000}}; !reflect.DeepEqual(d.Postings, want) {
		t.Errorf("deposit postings %v", d.Postings)
	}
	f, err := FeeEntry(Fee{ID: "F-1", Vendor: "V-1", Channel: "mpesa", Currency: "ZAR", Amount: 150, Time: t0})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Posting{{acct("float:V-1"), "ZAR", 150}, {acct("fees:mpesa"), "ZAR", -150}}; !reflect.DeepEqual(f.Postings, want) {
		t.Errorf("fee postings %v", f.Postings)
	}
	g, err := DebtEntry(DebtTakeOn{ID: "A-1", Customer: "C-1", Currency: "ZAR", Amount: 50000, Time: t0})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Posting{{acct("debt:C-1"), "ZAR", 50000}, {acct("revenue:arrears"), "ZAR", -50000}}; !reflect.DeepEqual(g.Postings, want) {
		t.Errorf("debt postings %v", g.Postings)
	}
	for _, err := range []error{
		func() error {
			_, err := DepositEntry(Deposit{ID: "D-2", Vendor: "V-1", Bank: "main", Currency: "ZAR", Amount: 0, Time: t0})
			return err
		}(),
		func() error {
			_, err := DepositEntry(Deposit{ID: "D-3", Vendor: "V-1", Bank: "main", Currency: "R", Amount: 5, Time: t0})
			return err
		}(),
		func() error {
			_, err := FeeEntry(Fee{ID: "F-2", Vendor: "V-1", Channel: "", Currency: "ZAR", Amount: 5, Time: t0})
			return err
		}(),
		func() error {
			_, err := DebtEntry(DebtTakeOn{ID: "", Customer: "C", Currency: "ZAR", Amount: 5, Time: t0})
			return err
		}(),
		func() error {
			_, err := FeeEntry(Fee{ID: "F-3", Vendor: "V-1", Channel: "momo", Currency: "ZAR", Amount: -5, Time: t0})
			return err
		}(),
		func() error {
			_, err := DebtEntry(DebtTakeOn{ID: "A-2", Customer: "C", Currency: "ZAR", Amount: 0, Time: t0})
			return err
		}(),
	} {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("err = %v, want ErrInvalid", err)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := func() Entry {
		return Entry{ID: "deposit:D-1", Type: TypeDeposit, Time: t0, Postings: []Posting{
			{acct("bank:main"), "ZAR", 500}, {acct("float:V-1"), "ZAR", -500}}}
	}
	e := ok()
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mod  func(e *Entry)
		want error
	}{
		{"unbalanced", func(e *Entry) { e.Postings[0].Amount = 501 }, ErrUnbalanced},
		{"balanced across units only", func(e *Entry) { e.Postings[1].Unit = "USD" }, ErrUnbalanced},
		{"zero posting", func(e *Entry) { e.Postings = append(e.Postings, Posting{acct("fees:x"), "ZAR", 0}) }, ErrInvalid},
		{"litres on money account", func(e *Entry) { e.Postings[0].Unit, e.Postings[1].Unit = "L", "L" }, ErrInvalid},
		{"money on memo account", func(e *Entry) {
			e.Postings = []Posting{{acct("credit:M-1"), "ZAR", 5}, {acct("issued:water"), "ZAR", -5}}
		}, ErrInvalid},
		{"unknown kind", func(e *Entry) { e.Postings[0].Account.Kind = "cash" }, ErrInvalid},
		{"id prefix", func(e *Entry) { e.ID = "purchase:D-1" }, ErrInvalid},
		{"no time", func(e *Entry) { e.Time = time.Time{} }, ErrInvalid},
		{"tokens on deposit", func(e *Entry) { e.Tokens = []Token{{Meter: "M", Purpose: PurposeCredit, TID: 1}} }, ErrInvalid},
		{"reverses on deposit", func(e *Entry) { e.Reverses = "deposit:D-0" }, ErrInvalid},
		{"no postings", func(e *Entry) { e.Postings = nil }, ErrInvalid},
		{"huge amount", func(e *Entry) { e.Postings[0].Amount, e.Postings[1].Amount = MaxAmount+1, -MaxAmount-1 }, ErrInvalid},
	}
	for _, tc := range tests {
		e := ok()
		tc.mod(&e)
		if err := e.Validate(); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestParseAccount(t *testing.T) {
	for _, s := range []string{"float:V-1", "credit:01234567890", "revenue:free-basic", "debt:C.42_x", "bank:FNB/0042", "debt:Dépôt-7"} {
		a, err := ParseAccount(s)
		if err != nil || a.String() != s {
			t.Errorf("ParseAccount(%q) = %v, %v", s, a, err)
		}
	}
	for _, s := range []string{"", "float", "float:", ":x", "cash:main", "float:V 1", "float:V:1", "Float:V1", "float:V\x001", "float:\xff"} {
		if _, err := ParseAccount(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseAccount(%q) accepted", s)
		}
	}
}

// The stream of a small day: deposits, purchases, a fee, a reversal. The
// checker finds nothing wrong with it and then each planted fault.
func day(t testing.TB) []*Entry {
	var out []*Entry
	add := func(e Entry, err error) *Entry {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		e.Seq = uint64(len(out) + 1)
		out = append(out, &e)
		return &e
	}
	add(DepositEntry(Deposit{ID: "D-1", Vendor: "V-1", Bank: "main", Currency: "ZAR", Amount: 60000, Time: t0}))
	add(DebtEntry(DebtTakeOn{ID: "A-1", Customer: "C-1", Currency: "ZAR", Amount: 50000, Time: t0}))
	p1 := add(PurchaseEntry(Purchase{ID: "P-1", Vendor: "V-1", Meter: "M-1", Customer: "C-1", Time: t0,
		Breakdown: breakdown(t, tariff.Request{Date: july, Debt: 50000}, 20000),
		Tokens:    []Token{{Meter: "M-1", Purpose: PurposeCredit, TID: 100}, {Meter: "M-1", Purpose: PurposeFree, TID: 101}}}))
	add(FeeEntry(Fee{ID: "F-1", Vendor: "V-1", Channel: "shop", Currency: "ZAR", Amount: 200, Time: t0}))
	add(PurchaseEntry(Purchase{ID: "P-2", Vendor: "V-1", Meter: "M-2", Customer: "C-2", Time: t0,
		Breakdown: breakdown(t, tariff.Request{Date: july, Quantum: 100}, 30000),
		Tokens:    []Token{{Meter: "M-2", Purpose: PurposeKeyChange}, {Meter: "M-2", Purpose: PurposeKeyChange}, {Meter: "M-2", Purpose: PurposeCredit, TID: 100}, {Meter: "M-2", Purpose: PurposeFree, TID: 101}}}))
	add(Reverse(p1, "P-1", t0))
	return out
}

func all(es []*Entry) iter.Seq2[*Entry, error] {
	return func(yield func(*Entry, error) bool) {
		for _, e := range es {
			if !yield(e, nil) {
				return
			}
		}
	}
}

func violations(t testing.TB, es []*Entry) []Violation {
	var out []Violation
	for v, err := range Check(all(es)) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func TestCheckCleanDay(t *testing.T) {
	es := day(t)
	if vs := violations(t, es); len(vs) != 0 {
		t.Fatalf("clean day: %v", vs)
	}
	c := NewChecker()
	for _, e := range es {
		c.Add(e)
	}
	// 60000 deposited, P-1 reversed, P-2 paid 30000 - change, fee 200.
	p2 := es[4].Postings[0].Amount
	if got := -c.Balance(acct("float:V-1"), "ZAR"); got != 60000-200-p2 {
		t.Errorf("float = %d, want %d", got, 60000-200-p2)
	}
	if got := c.Balance(acct("debt:C-1"), "ZAR"); got != 50000 {
		t.Errorf("debt after reversal = %d, want 50000", got)
	}
	sums := map[string]int64{}
	for _, b := range c.Balances() {
		sums[b.Unit] += b.Amount
	}
	if len(sums) != 2 || sums["ZAR"] != 0 || sums["L"] != 0 {
		t.Errorf("trial balance sums %v", sums)
	}
	// P-2 sold litres on M-2; P-1's were reversed.
	if got, want := c.Balance(acct("credit:M-2"), "L"), es[4].Postings[len(es[4].Postings)-2].Amount; got != want || c.Balance(acct("credit:M-1"), "L") != 0 {
		t.Errorf("credit memo M-2 = %d, want %d; M-1 = %d", got, want, c.Balance(acct("credit:M-1"), "L"))
	}
}

func TestCheckFindsFaults(t *testing.T) {
	tests := []struct {
		name  string
		plant func(es []*Entry) []*Entry
		rule  Rule
		seq   uint64
	}{
		{"unbalanced", func(es []*Entry) []*Entry { es[3].Postings[0].Amount++; return es }, RuleMalformed, 4},
		{"float overdrawn", func(es []*Entry) []*Entry { return es[1:] }, RuleFloatNegative, 3},
		{"debt overrecovered", func(es []*Entry) []*Entry { return slices.Delete(es, 1, 2) }, RuleDebtNegative, 3},
		{"purchase twice", func(es []*Entry) []*Entry {
			dup := *es[4]
			dup.ID, dup.Seq = "purchase:P-2b", 7
			dup.Purchase = es[2].Purchase
			dup.Tokens = []Token{{Meter: "M-2", Purpose: PurposeCredit, TID: 300}}
			return append(es, &dup)
		}, RulePurchaseTwice, 7},
		{"same entry twice", func(es []*Entry) []*Entry {
			dup := *es[3]
			dup.Seq = 7
			return append(es, &dup)
		}, RuleDuplicateEntry, 7},
		{"TID reused", func(es []*Entry) []*Entry { es[4].Tokens[2].Meter, es[4].Tokens[3].Meter = "M-1", "M-1"; return es }, RuleTIDReused, 5},
		{"TID reused after base change is fine, not before", func(es []*Entry) []*Entry {
			es[4].Tokens[2].Meter, es[4].Tokens[3].Meter = "M-1", "M-1"
			es[2].Tokens[0].Base, es[2].Tokens[1].Base = 1993, 1993
			es[4].Tokens[2].Base, es[4].Tokens[3].Base = 2014, 1993 // only the second collides
			return es
		}, RuleTIDReused, 5},
		{"voucher sequence reused", func(es []*Entry) []*Entry {
			es[2].Tokens = []Token{{Meter: "M-1", Purpose: PurposeCredit, Seq: 9}}
			es[4].Tokens = []Token{{Meter: "M-1", Purpose: PurposeCredit, Seq: 9}}
			return es
		}, RuleSeqReused, 5},
		{"reversal of unknown", func(es []*Entry) []*Entry { es[5].Reverses = "purchase:P-9"; return es }, RuleReversalUnknown, 6},
		{"reversal twice", func(es []*Entry) []*Entry {
			again := *es[5]
			again.ID, again.Seq = "reversal:P-1b", 7
			return append(es, &again)
		}, RuleReversalTwice, 7},
		{"reversal not a mirror", func(es []*Entry) []*Entry {
			es[5].Postings[0].Amount -= 100
			es[5].Postings[1].Amount += 100
			return es
		}, RuleReversalWrong, 6},
		{"out of order", func(es []*Entry) []*Entry { es[3].Seq, es[4].Seq = 5, 4; return es }, RuleOrder, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vs := violations(t, tc.plant(day(t)))
			if len(vs) == 0 {
				t.Fatal("no violation found")
			}
			if vs[0].Rule != tc.rule || vs[0].Seq != tc.seq {
				t.Errorf("first violation %v; want %s at entry %d (all: %v)", vs[0], tc.rule, tc.seq, vs)
			}
		})
	}
}

func TestCheckStreamError(t *testing.T) {
	boom := errors.New("db gone")
	src := func(yield func(*Entry, error) bool) { yield(nil, boom) }
	for _, err := range Check(src) {
		if !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
		return
	}
	t.Fatal("stream error not reported")
}

// Property: random purchases over random households and vendors, with
// deposits to keep floats positive and random reversals, always validate,
// never trip the checker, and leave every unit's postings summing to zero
// with floats equal to deposits less what was paid.
func TestPropertyRandomDays(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	tf := domestic()
	for round := range 50 {
		var es []*Entry
		c := NewChecker()
		sums := map[string]int64{}
		floats := map[string]int64{}
		usage := map[string]tariff.Usage{}
		debt := map[string]tariff.Cents{}
		var tid uint32
		push := func(e Entry, err error) *Entry {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
			e.Seq = uint64(len(es) + 1)
			es = append(es, &e)
			if vs := c.Add(&e); len(vs) > 0 {
				t.Fatalf("round %d: %v", round, vs)
			}
			for _, p := range e.Postings {
				sums[p.Unit] += p.Amount
			}
			return &e
		}
		for i := range 200 {
			vendor := fmt.Sprintf("V-%d", rng.IntN(3))
			meter := fmt.Sprintf("M-%d", rng.IntN(10))
			if floats[vendor] < 100000 {
				push(DepositEntry(Deposit{ID: fmt.Sprintf("D-%d", i), Vendor: vendor, Bank: "main", Currency: "ZAR", Amount: 500000, Time: t0}))
				floats[vendor] += 500000
			}
			if rng.IntN(10) == 0 {
				push(DebtEntry(DebtTakeOn{ID: fmt.Sprintf("A-%d", i), Customer: meter, Currency: "ZAR", Amount: 20000, Time: t0}))
				debt[meter] += 20000
			}
			b, err := tf.Purchase(tariff.Request{Date: july, Usage: usage[meter], Debt: debt[meter], Quantum: 100}, tariff.Cents(rng.IntN(90000)))
			if err != nil {
				t.Fatal(err)
			}
			var tokens []Token
			if b.Litres > 0 {
				tid++
				tokens = append(tokens, Token{Meter: meter, Purpose: PurposeCredit, TID: tid})
			}
			if b.FreeLitres > 0 {
				tid++
				tokens = append(tokens, Token{Meter: meter, Purpose: PurposeFree, TID: tid})
			}
			e, err := PurchaseEntry(Purchase{ID: fmt.Sprintf("P-%d", i), Vendor: vendor, Meter: meter, Customer: meter, Time: t0, Breakdown: &b, Tokens: tokens})
			if errors.Is(err, ErrInvalid) && b.Paid() == 0 && b.FreeLitres == 0 {
				continue // nothing to post
			}
			pe := push(e, err)
			if rng.IntN(8) == 0 {
				push(Reverse(pe, pe.Purchase, t0)) // credit never reached the meter
				continue
			}
			usage[meter], debt[meter] = b.UsageAfter, b.DebtAfter
			floats[vendor] -= int64(b.Paid())
		}
		for unit, s := range sums {
			if s != 0 {
				t.Fatalf("round %d: %s postings sum to %d", round, unit, s)
			}
		}
		for v, f := range floats {
			if got := -c.Balance(Account{Float, v}, "ZAR"); got != f {
				t.Fatalf("float %s = %d, want %d", v, got, f)
			}
		}
		for m, d := range debt {
			if got := c.Balance(Account{Debt, m}, "ZAR"); got != int64(d) {
				t.Fatalf("debt %s = %d, want %d", m, got, d)
			}
		}
	}
}

// FuzzEntry: whatever JSON an entry arrives as (from the store, from an
// export), Validate and the checker never panic; a valid entry's reversal
// is valid and accepted by the checker.
func FuzzEntry(f *testing.F) {
	for _, e := range day(f) {
		b, _ := json.Marshal(e)
		f.Add(b)
	}
	f.Add([]byte(`{"id":"fee:x","type":"fee","time":"2026-07-15T08:30:00Z","postings":[{"account":"float:a","unit":"ZAR","amount":5},{"account":"fees:b","unit":"ZAR","amount":-5}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Entry
		if json.Unmarshal(b, &e) != nil {
			return
		}
		c := NewChecker()
		vs := c.Add(&e)
		if e.Validate() != nil {
			if len(vs) == 0 || vs[0].Rule != RuleMalformed {
				t.Fatalf("invalid entry not reported malformed: %v", vs)
			}
			return
		}
		if e.Type == TypeReversal {
			return
		}
		r, err := Reverse(&e, "fuzz", t0)
		if err != nil {
			t.Fatalf("valid entry not reversible: %v", err)
		}
		for _, v := range c.Add(&r) {
			if v.Rule != RuleFloatNegative && v.Rule != RuleDebtNegative {
				t.Fatalf("reversal rejected: %v", v)
			}
		}
	})
}

// FuzzParseAccount: the stored account form round-trips exactly.
func FuzzParseAccount(f *testing.F) {
	for _, s := range []string{"float:V-1", "credit:01234567890", "revenue:free-basic", "x:y", "float:", ":"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAccount(s)
		if err != nil {
			return
		}
		if a.String() != s || strings.Count(s, ":") != 1 {
			t.Fatalf("ParseAccount(%q) = %v", s, a)
		}
	})
}

func BenchmarkPurchaseEntry(b *testing.B) {
	bd := breakdown(b, tariff.Request{Date: july, Debt: 50000}, 20000)
	p := Purchase{ID: "P-0001", Vendor: "V-017", Meter: "01234567890", Customer: "C-42", Time: t0, Breakdown: bd,
		Tokens: []Token{{Meter: "01234567890", Purpose: PurposeCredit, TID: 1}, {Meter: "01234567890", Purpose: PurposeFree, TID: 2}}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := PurchaseEntry(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheck(b *testing.B) {
	tf := domestic()
	var es []*Entry
	dep, _ := DepositEntry(Deposit{ID: "D", Vendor: "V", Bank: "main", Currency: "ZAR", Amount: 1e12, Time: t0})
	es = append(es, &dep)
	for i := range 10000 {
		m := fmt.Sprintf("M-%d", i%500)
		bd, _ := tf.Purchase(tariff.Request{Date: july, Usage: tariff.Usage{FreeIssued: true, FixedCollected: 11500}}, 10000)
		e, err := PurchaseEntry(Purchase{ID: fmt.Sprint("P-", i), Vendor: "V", Meter: m, Customer: m, Time: t0, Breakdown: &bd,
			Tokens: []Token{{Meter: m, Purpose: PurposeCredit, TID: uint32(i + 1)}}})
		if err != nil {
			b.Fatal(err)
		}
		es = append(es, &e)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for v := range Check(all(es)) {
			b.Fatal(v)
		}
	}
	b.ReportMetric(float64(b.N)*float64(len(es))/b.Elapsed().Seconds(), "entries/s")
}
