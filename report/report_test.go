package report

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"sluice/ledger"
	"sluice/store"
	"sluice/store/sqlstore"
	"sluice/store/storetest"
	"sluice/vend"
)

var day1 = time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)

// rows collects a report in memory (tests only).
type rows struct {
	meta   Meta
	lines  []map[string]any
	totals map[string]int64
}

func (r *rows) Begin(m Meta) error { r.meta = m; return nil }
func (r *rows) Row(v []any) error {
	m := map[string]any{}
	for i, c := range r.meta.Columns {
		m[c.Name] = v[i]
	}
	r.lines = append(r.lines, m)
	return nil
}
func (r *rows) End(t map[string]int64) error { r.totals = t; return nil }

func (r *rows) sum(col string, where func(map[string]any) bool) int64 {
	var n int64
	for _, l := range r.lines {
		if where == nil || where(l) {
			n += l[col].(int64)
		}
	}
	return n
}

// ledgerView sums the ledger independently of the reports: every stored
// entry, filtered by time in Go.
type ledgerView struct {
	byAccount     map[string]int64 // account -> sum
	byKindAndType map[string]int64 // "kind|type" -> sum
	floatByType   map[string]map[string]int64
	tokens        map[string]int64 // purpose -> count, purchase entries
	closing       map[string]int64 // float account -> balance before to
}

func viewLedger(t *testing.T, db *sqlstore.DB, from, to time.Time) ledgerView {
	t.Helper()
	v := ledgerView{byAccount: map[string]int64{}, byKindAndType: map[string]int64{}, floatByType: map[string]map[string]int64{},
		tokens: map[string]int64{}, closing: map[string]int64{}}
	err := db.Read(context.Background(), func(tx store.Tx) error {
		return tx.Ledger().Each(context.Background(), func(se store.LedgerEntry) error {
			e, err := vend.LedgerEntry(se)
			if err != nil {
				return err
			}
			if e.Time.Before(to) {
				for _, p := range e.Postings {
					if p.Account.Kind == ledger.Float {
						v.closing[p.Account.ID] += p.Amount
					}
				}
			}
			if e.Time.Before(from) || !e.Time.Before(to) {
				return nil
			}
			for _, p := range e.Postings {
				if p.Unit == ledger.UnitLitres {
					continue
				}
				v.byAccount[p.Account.String()] += p.Amount
				v.byKindAndType[string(p.Account.Kind)+"|"+string(e.Type)] += p.Amount
				if p.Account.Kind == ledger.Float {
					if v.floatByType[p.Account.ID] == nil {
						v.floatByType[p.Account.ID] = map[string]int64{}
					}
					v.floatByType[p.Account.ID][string(e.Type)] += p.Amount
				}
			}
			if e.Type == ledger.TypePurchase {
				for _, tk := range e.Tokens {
					v.tokens[tk.Purpose]++
				}
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// story makes two days of business: deposits, purchases at two vending
// points on three kinds of meter (free basic water, fixed charges, debt
// recovery, a key change), an engineering token, a channel fee, a reversal
// of an undelivered AMI voucher and a compensated STS purchase.
func story(t *testing.T, e *env) {
	t.Helper()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	e.now = day1
	_, err := e.svc.Deposit(ctx, e.supervisor, vend.DepositRequest{Vendor: "OFFICE1", AmountCents: 500_000, Reference: "SLIP-1"})
	must(err)
	_, err = e.svc.Deposit(ctx, e.supervisor, vend.DepositRequest{Vendor: "SHOP2", AmountCents: 300_000, Reference: "SLIP-2"})
	must(err)
	_, err = e.svc.TakeOnDebt(ctx, e.supervisor, vend.DebtRequest{Account: "ACC-001", AmountCents: 5000, Reference: "ARREARS-1"})
	must(err)
	e.now = day1.Add(time.Hour)
	_, err = e.svc.Purchase(ctx, e.cashier1, "d1-1", vend.PurchaseRequest{Meter: pan, AmountCents: 20000})
	must(err)
	e.now = day1.Add(2 * time.Hour)
	_, err = e.svc.Purchase(ctx, e.cashier2, "d1-2", vend.PurchaseRequest{Meter: cardMeter, AmountCents: 35000})
	must(err)
	// A channel fee, as package channel posts it.
	fee, err := ledger.FeeEntry(ledger.Fee{ID: "SHOP2.d1-2", Vendor: "SHOP2", Channel: "SHOP2", Currency: "ZAR", Amount: 150, Time: e.now})
	must(err)
	must(e.db.Tx(ctx, func(tx store.Tx) error {
		se := store.LedgerEntry{ID: fee.ID, Type: string(fee.Type), Time: fee.Time}
		for _, p := range fee.Postings {
			se.Postings = append(se.Postings, store.Posting{Account: p.Account.String(), Unit: p.Unit, Amount: p.Amount})
		}
		if _, err := tx.Ledger().Append(ctx, se); err != nil {
			return err
		}
		_, err := tx.Vendors().AdjustFloat(ctx, e.cashier2.VendorID, -150)
		return err
	}))

	day2 := day1.Add(24 * time.Hour)
	e.now = day2
	_, err = e.svc.Deposit(ctx, e.supervisor, vend.DepositRequest{Vendor: "OFFICE1", AmountCents: 100_000, Reference: "SLIP-3"})
	must(err)
	e.now = day2.Add(time.Hour)
	r3, err := e.svc.Purchase(ctx, e.cashier1, "d2-1", vend.PurchaseRequest{Meter: pan, AmountCents: 50000})
	must(err)
	e.now = day2.Add(2 * time.Hour)
	r4, err := e.svc.Purchase(ctx, e.cashier2, "d2-2", vend.PurchaseRequest{Meter: amiMeter, AmountCents: 40000})
	must(err)
	e.now = day2.Add(3 * time.Hour)
	rev, err := e.svc.Reverse(ctx, e.supervisor, r4.Receipt.PurchaseID, vend.ReversalRequest{Reason: "voucher never sent"})
	must(err)
	if rev.Mode != "reversed" {
		t.Fatalf("AMI reversal mode %s", rev.Mode)
	}
	comp, err := e.svc.Reverse(ctx, e.supervisor, r3.Receipt.PurchaseID, vend.ReversalRequest{Reason: "wrong meter keyed", Compensate: true})
	must(err)
	if comp.Mode != "compensated" {
		t.Fatalf("STS reversal mode %s", comp.Mode)
	}
	e.now = day2.Add(4 * time.Hour)
	req, err := e.svc.RequestEngineering(ctx, e.engineer, vend.EngineeringRequest{Meter: pan, Action: vend.ActClearTamper, Reason: "cover replaced after inspection"})
	must(err)
	_, err = e.svc.ApproveEngineering(ctx, e.supervisor, req.ID)
	must(err)
	e.now = day2.Add(5 * time.Hour)
	_, err = e.svc.Purchase(ctx, e.cashier2, "d2-3", vend.PurchaseRequest{Meter: cardMeter, AmountCents: 12345})
	must(err)
}

func run(t *testing.T, s *Service, name string, p Params) *rows {
	t.Helper()
	r := &rows{}
	totals, err := s.Run(context.Background(), name, p, r)
	if err != nil {
		t.Fatalf("report %s: %v", name, err)
	}
	for k, v := range totals {
		if r.totals[k] != v {
			t.Fatalf("report %s: returned totals differ from written ones", name)
		}
	}
	return r
}

func TestTotalsAgreeWithTheLedger(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		e := newEnv(t, db, day1)
		story(t, e)
		s := New(db, time.UTC, func() time.Time { return e.now })
		ranges := []struct {
			name     string
			from, to time.Time
		}{
			{"both days", day1.Truncate(24 * time.Hour), day1.Truncate(24*time.Hour).AddDate(0, 0, 2)},
			{"day 2", day1.Truncate(24*time.Hour).AddDate(0, 0, 1), day1.Truncate(24*time.Hour).AddDate(0, 0, 2)},
			{"day 1 afternoon", day1.Add(90 * time.Minute), day1.Add(12 * time.Hour)},
		}
		for _, rg := range ranges {
			t.Run(rg.name, func(t *testing.T) {
				p := Params{From: rg.from, To: rg.to}
				lv := viewLedger(t, db, rg.from, rg.to)

				sales := run(t, s, "sales", p)
				isBlock := func(l map[string]any) bool { return l["kind"] == "block" }
				isFixed := func(l map[string]any) bool { return l["kind"] == "fixed" }
				if got, want := sales.sum("net_cents", isBlock), -lv.byAccount["revenue:water"]; got != want {
					t.Errorf("sales: water net %d, ledger revenue:water %d", got, want)
				}
				if got, want := sales.sum("net_cents", isFixed), -lv.byAccount["revenue:fixed"]; got != want {
					t.Errorf("sales: fixed net %d, ledger revenue:fixed %d", got, want)
				}
				if got, want := sales.totals["vat_cents"], -lv.byAccount["vat:output"]; got != want {
					t.Errorf("sales: VAT %d, ledger vat:output %d", got, want)
				}

				free := run(t, s, "free-water", p)
				if got, want := free.totals["value_cents"], lv.byAccount["subsidy:free-basic"]; got != want {
					t.Errorf("free water: value %d, ledger subsidy:free-basic %d", got, want)
				}

				debt := run(t, s, "debt", p)
				if got, want := debt.totals["net_cents"], -(lv.byKindAndType["debt|purchase"] + lv.byKindAndType["debt|reversal"]); got != want {
					t.Errorf("debt: net recovered %d, ledger debt postings of purchases and reversals %d", got, want)
				}

				vends := run(t, s, "vends", p)
				if got, want := vends.totals["paid_cents"], lv.byKindAndType["float|purchase"]+lv.byKindAndType["float|reversal"]; got != want {
					t.Errorf("vends: paid %d, ledger float postings of purchases and reversals %d", got, want)
				}
				if got, want := vends.totals["debt_cents"], debt.totals["net_cents"]; got != want {
					t.Errorf("vends: debt %d, debt report %d", got, want)
				}

				settle := run(t, s, "settlement", p)
				for vendor, byType := range lv.floatByType {
					is := func(l map[string]any) bool { return l["vendor"] == vendor }
					for col, typ := range map[string]string{"deposits_cents": "deposit", "vends_cents": "purchase", "refunds_cents": "reversal", "fees_cents": "fee"} {
						got, want := settle.sum(col, is), byType[typ]
						if col != "vends_cents" && col != "fees_cents" {
							want = -want
						}
						if got != want {
							t.Errorf("settlement %s %s = %d, ledger %d", vendor, col, got, want)
						}
					}
					var last map[string]any
					for _, l := range settle.lines {
						if is(l) {
							last = l
						}
					}
					if last["closing_cents"].(int64) != -lv.closing[vendor] {
						t.Errorf("settlement %s closing %d, ledger float balance %d", vendor, last["closing_cents"], -lv.closing[vendor])
					}
				}

				toks := run(t, s, "tokens", p)
				isClass := func(c string) func(map[string]any) bool {
					return func(l map[string]any) bool { return l["class"] == c }
				}
				if got, want := toks.sum("tokens", isClass(ClassCredit)), lv.tokens[ledger.PurposeCredit]+lv.tokens[ledger.PurposeFree]; got != want {
					t.Errorf("tokens: credit %d, ledger %d", got, want)
				}
				if got, want := toks.sum("tokens", isClass(ClassKeyChange)), lv.tokens[ledger.PurposeKeyChange]; got != want {
					t.Errorf("tokens: key change %d, ledger %d", got, want)
				}
			})
		}

		// The whole story: the closing floats are the vendors' floats now,
		// and the daily-limit counters agree with the ledger's vends.
		all := Params{From: day1.AddDate(0, 0, -1), To: day1.AddDate(0, 0, 3)}
		settle := run(t, s, "settlement", all)
		if settle.totals["difference_cents"] != 0 {
			t.Errorf("settlement differences %d: %v", settle.totals["difference_cents"], settle.lines)
		}
		err := db.Read(context.Background(), func(tx store.Tx) error {
			vs, err := tx.Vendors().List(context.Background())
			for _, v := range vs {
				var closing int64 = -1
				for _, l := range settle.lines {
					if l["vendor"] == v.Code {
						closing = l["closing_cents"].(int64)
					}
				}
				if closing != v.FloatCents {
					t.Errorf("vendor %s: settlement closes at %d, float is %d", v.Code, closing, v.FloatCents)
				}
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		toks := run(t, s, "tokens", all)
		if toks.sum("tokens", func(l map[string]any) bool { return l["class"] == ClassEngineering && l["operator"] == "super1" }) != 1 {
			t.Errorf("tokens: want one engineering token issued on super1's approval: %v", toks.lines)
		}
	})
}

func TestFilters(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		e := newEnv(t, db, day1)
		story(t, e)
		s := New(db, time.UTC, nil)
		all := Params{From: day1.AddDate(0, 0, -1), To: day1.AddDate(0, 0, 3)}
		whole := run(t, s, "vends", all)
		var parts int64
		for _, v := range []string{"OFFICE1", "SHOP2"} {
			p := all
			p.Vendor = v
			r := run(t, s, "vends", p)
			for _, l := range r.lines {
				if l["vendor"] != v {
					t.Fatalf("vendor filter %s let through %v", v, l)
				}
			}
			parts += r.totals["paid_cents"]
		}
		if parts != whole.totals["paid_cents"] {
			t.Errorf("vendor parts %d, whole %d", parts, whole.totals["paid_cents"])
		}
		p := all
		p.SupplyGroup = sgc
		for _, l := range run(t, s, "vends", p).lines {
			if l["meter"] != pan {
				t.Errorf("supply group filter let through %v", l)
			}
		}
		p = all
		p.Operator = "cashier2"
		for _, l := range run(t, s, "settlement", p).lines {
			if l["vendor"] != "SHOP2" {
				t.Errorf("operator filter on settlement let through %v", l)
			}
		}
		p = all
		p.SupplyGroup = sgc
		_, err := s.Run(context.Background(), "settlement", p, &rows{})
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "supply_group" {
			t.Errorf("settlement by supply group: %v, want a field error", err)
		}
		if _, err := s.Run(context.Background(), "nope", all, &rows{}); !errors.Is(err, ErrUnknown) {
			t.Errorf("unknown report: %v", err)
		}
		if _, err := s.Run(context.Background(), "sales", Params{From: all.To, To: all.From}, &rows{}); !errors.As(err, &fe) || fe.Field != "to" {
			t.Errorf("reversed range: %v", err)
		}
	})
}

func TestFormats(t *testing.T) {
	db := storetest.OpenSQLite(t, false)
	e := newEnv(t, db, day1)
	story(t, e)
	s := New(db, time.UTC, nil)
	p := Params{From: day1.AddDate(0, 0, -1), To: day1.AddDate(0, 0, 3)}
	for _, name := range names() {
		var cb, jb bytes.Buffer
		cs, _ := NewSink(CSV, &cb)
		ct, err := s.Run(context.Background(), name, p, cs)
		if err != nil {
			t.Fatal(err)
		}
		js, _ := NewSink(JSON, &jb)
		if _, err := s.Run(context.Background(), name, p, js); err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(&cb).ReadAll()
		if err != nil {
			t.Fatalf("%s: CSV: %v", name, err)
		}
		var doc Document
		if err := json.Unmarshal(jb.Bytes(), &doc); err != nil {
			t.Fatalf("%s: JSON: %v\n%s", name, err, jb.String())
		}
		if len(recs) != len(doc.Rows)+2 || recs[len(recs)-1][0] != "total" {
			t.Fatalf("%s: %d CSV records for %d JSON rows", name, len(recs), len(doc.Rows))
		}
		for k, v := range ct {
			if doc.Totals[k] != v {
				t.Errorf("%s: JSON total %s = %d, CSV %d", name, k, doc.Totals[k], v)
			}
		}
	}
}

// TestQueriesUseIndexes asserts that no report query reads a large table
// whole. SQLite's plan names a full scan "SCAN <table>"; PostgreSQL's "Seq
// Scan on <table>" (sequential scans are disabled for the EXPLAIN, so one
// shows only where no index can serve).
func TestQueriesUseIndexes(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		var plans map[string]string
		err := db.Read(context.Background(), func(tx store.Tx) error {
			var err error
			plans, err = tx.Reports().Explain(context.Background())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(plans) != 6 {
			t.Fatalf("plans: %v", plans)
		}
		// Aliases of the big tables in the queries: e ledger_entries, p
		// purchases or ledger_postings, t tokens.
		bad := regexp.MustCompile(`(?m)^\s*SCAN (a|e|p|r|t|alerts|ledger_entries|ledger_postings|purchases|readings|tokens)\b|Seq Scan on (alerts|ledger_entries|ledger_postings|purchases|readings\w*|tokens)\b`)
		for name, plan := range plans {
			t.Logf("%s:\n%s", name, plan)
			if bad.MatchString(plan) {
				t.Errorf("%s scans a large table whole:\n%s", name, plan)
			}
			if !strings.Contains(strings.ToLower(plan), "index") {
				t.Errorf("%s uses no index:\n%s", name, plan)
			}
		}
	})
}

func TestCSVDefusesFormulas(t *testing.T) {
	var b bytes.Buffer
	sink, _ := NewSink(CSV, &b)
	sink.Begin(Meta{Columns: []Column{{Name: "summary"}, {Name: "n", Sum: true}}})
	sink.Row([]any{"=HYPERLINK(\"http://evil\")", int64(-5)})
	sink.Row([]any{"+1", int64(3)})
	sink.End(map[string]int64{"n": -2})
	want := "summary,n\n\"'=HYPERLINK(\"\"http://evil\"\")\",-5\n'+1,3\ntotal,-2\n"
	if b.String() != want {
		t.Fatalf("CSV:\n%s\nwant\n%s", b.String(), want)
	}
}

func FuzzParseRange(f *testing.F) {
	f.Add("2026-11-01", "2026-11-30")
	f.Add("2026-11-01T00:00:00Z", "2026-11-30T12:00:00+02:00")
	f.Add("2026-02-30", "x")
	loc, _ := time.LoadLocation("Africa/Johannesburg")
	if loc == nil {
		loc = time.FixedZone("SAST", 2*3600)
	}
	f.Fuzz(func(t *testing.T, from, to string) {
		a, b, err := ParseRange(from, to, loc)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || (fe.Field != "from" && fe.Field != "to") {
				t.Fatalf("error %v does not name from or to", err)
			}
			return
		}
		if a.IsZero() || b.IsZero() {
			t.Fatalf("accepted %q %q as a zero time", from, to)
		}
	})
}
