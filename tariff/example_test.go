package tariff_test

import (
	"fmt"
	"time"

	"sluice/tariff"
)

// A first purchase of the month: R200.00 tendered by a household with
// R500.00 of arrears, on the tariff of docs/tariffs.md.
func ExampleTariff_Purchase() {
	t, err := tariff.Parse([]byte(`{"code": "DOM-2026", "currency": "ZAR", "versions": [{
		"effective": "2026-07-01", "vat_bp": 1500, "debt_recovery_bp": 2000, "free_basic_kl": 6,
		"blocks": [{"up_to_kl": 6, "price_per_kl": 2500}, {"up_to_kl": 10, "price_per_kl": 3150},
		           {"up_to_kl": 15, "price_per_kl": 4480}, {"up_to_kl": 20, "price_per_kl": 6210},
		           {"price_per_kl": 8995}],
		"fixed_charges": [{"name": "Basic charge", "amount": 11500}]}]}`))
	if err != nil {
		panic(err)
	}
	at := time.Date(2026, time.July, 15, 10, 0, 0, 0, time.UTC)
	b, err := t.Purchase(tariff.Request{Date: tariff.DateOf(at), Debt: 50000}, 20000)
	if err != nil {
		panic(err)
	}
	fmt.Println("debt recovered:", b.Debt)
	for _, c := range b.Fixed {
		fmt.Printf("%s: %d (VAT %d)\n", c.Name, c.Amount, c.VAT)
	}
	for _, l := range b.Blocks {
		fmt.Printf("block %d: %d L at %d/kl = %d (VAT %d)\n", l.Block, l.Litres, l.PricePerKL, l.Amount, l.VAT)
	}
	fmt.Println("change:", b.Change, "free litres:", b.FreeLitres)
	fmt.Println("balances:", b.Check() == nil)
	// Output:
	// debt recovered: 4000
	// Basic charge: 11500 (VAT 1500)
	// block 2: 1428 L at 3150/kl = 4498 (VAT 587)
	// change: 2 free litres: 6000
	// balances: true
}
