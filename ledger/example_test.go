package ledger_test

import (
	"fmt"
	"time"

	"sluice/ledger"
	"sluice/tariff"
)

// A vendor deposits R1,000.00, sells R200.00 of water, and the sale is
// reversed before the token reached the meter; the checker streams the
// entries and finds the books in order.
func ExampleCheck() {
	at := time.Date(2026, 7, 15, 8, 0, 0, 0, time.UTC)
	t := &tariff.Tariff{Code: "DOM", Currency: "ZAR", Versions: []tariff.Version{{
		Effective: tariff.Date{Year: 2026, Month: time.July, Day: 1}, VAT: 1500,
		Blocks: []tariff.Block{{UpTo: 6000, PricePerKL: 2500}, {PricePerKL: 4480}},
	}}}
	b, _ := t.Purchase(tariff.Request{Date: tariff.DateOf(at)}, 20000)

	dep, _ := ledger.DepositEntry(ledger.Deposit{ID: "V-1/0001", Vendor: "V-1", Bank: "main", Currency: "ZAR", Amount: 100000, Time: at})
	buy, err := ledger.PurchaseEntry(ledger.Purchase{ID: "P-1", Vendor: "V-1", Meter: "0123456789", Customer: "C-1", Time: at,
		Breakdown: &b, Tokens: []ledger.Token{{Meter: "0123456789", Purpose: ledger.PurposeCredit, TID: 1001}}})
	if err != nil {
		panic(err)
	}
	rev, _ := ledger.Reverse(&buy, "P-1", at.Add(time.Minute))
	for _, p := range buy.Postings {
		fmt.Printf("%-22s %-3s %7d\n", p.Account, p.Unit, p.Amount)
	}

	entries := func(yield func(*ledger.Entry, error) bool) {
		for i, e := range []*ledger.Entry{&dep, &buy, &rev} {
			e.Seq = uint64(i + 1)
			if !yield(e, nil) {
				return
			}
		}
	}
	n := 0
	for v, err := range ledger.Check(entries) {
		fmt.Println(v, err)
		n++
	}
	fmt.Println("violations:", n)
	// Output:
	// float:V-1              ZAR   20000
	// revenue:water          ZAR  -17391
	// vat:output             ZAR   -2609
	// credit:0123456789      L      7116
	// issued:water           L     -7116
	// violations: 0
}
