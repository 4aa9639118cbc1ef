package tariff

import (
	"errors"
	"fmt"
)

// MaxUsage bounds the litres a household may have bought in a month.
const MaxUsage Litres = 1_000_000_000_000_000

// ErrUnbalanced is returned by Breakdown.Check when lines do not add up.
var ErrUnbalanced = errors.New("tariff: breakdown does not balance")

// Usage is what a household has had this calendar month under the tariff,
// kept by the vending service (UsageAfter of its last breakdown).
type Usage struct {
	PaidLitres     Litres `json:"paid_litres"`     // paid water issued this month
	FreeIssued     bool   `json:"free_issued"`     // this month's free basic water token was issued
	FixedCollected Cents  `json:"fixed_collected"` // fixed charges collected this month
}

// Add returns the usage after purchase b: b.UsageAfter when b was computed
// from u. A month's usage is the fold of Add over its purchases.
func (u Usage) Add(b *Breakdown) Usage {
	return Usage{
		PaidLitres:     u.PaidLitres + b.Litres,
		FreeIssued:     u.FreeIssued || b.FreeLitres > 0,
		FixedCollected: u.FixedCollected + b.FixedTotal(),
	}
}

// Remove undoes Add for a purchase that was reversed: its litres, its fixed
// charges and, if it carried it, the month's free basic water are available
// again.
func (u Usage) Remove(b *Breakdown) Usage {
	return Usage{
		PaidLitres:     u.PaidLitres - b.Litres,
		FreeIssued:     u.FreeIssued && b.FreeLitres == 0,
		FixedCollected: u.FixedCollected - b.FixedTotal(),
	}
}

// Request is the household's position when it buys or asks for a quote.
// Usage must be for the calendar month of Date.
type Request struct {
	Date    Date
	Usage   Usage
	Debt    Cents  // outstanding debt before this purchase
	Quantum Litres // token resolution; 0 means 1 litre
}

// BlockLine is the water bought in one block. From and To are positions on
// the month's ladder in litres, including the free basic allowance.
type BlockLine struct {
	Block      int    `json:"block"` // 1-based block number
	From       Litres `json:"from_litres"`
	To         Litres `json:"to_litres"`
	Litres     Litres `json:"litres"`
	PricePerKL Cents  `json:"price_per_kl"`
	Amount     Cents  `json:"amount"` // VAT-inclusive, rounded half up
	VAT        Cents  `json:"vat"`    // VAT included in Amount
}

// ChargeLine is a fixed charge collected by this purchase (maybe in part).
type ChargeLine struct {
	Name   string `json:"name"`
	Amount Cents  `json:"amount"` // VAT-inclusive
	VAT    Cents  `json:"vat"`
}

// Breakdown itemises a purchase; it is what the receipt prints and what the
// ledger posts. Invariant (Check):
//
//	Tendered = Debt + sum(Fixed.Amount) + Water + Change
//	VAT      = sum(Fixed.VAT) + sum(Blocks.VAT)
type Breakdown struct {
	Tariff    string      `json:"tariff"`
	Effective Date        `json:"effective"` // version used
	Currency  string      `json:"currency"`
	VATRate   BasisPoints `json:"vat_bp"`
	Quantum   Litres      `json:"quantum_litres"`

	Tendered  Cents        `json:"tendered"`
	Debt      Cents        `json:"debt_recovered"`
	DebtAfter Cents        `json:"debt_after"`
	Fixed     []ChargeLine `json:"fixed_charges"`
	Blocks    []BlockLine  `json:"blocks"`
	Litres    Litres       `json:"litres"` // paid water, a multiple of Quantum
	Water     Cents        `json:"water"`  // sum of Blocks.Amount
	VAT       Cents        `json:"vat"`    // VAT included in Fixed and Water
	Change    Cents        `json:"change"` // not spent: returned to the customer

	// Free basic water due this month, to be issued as its own token.
	FreeLitres Litres `json:"free_litres"`
	// FreeValue is the free litres' worth at the block prices less VAT
	// (free basic water is zero-rated): the subsidy the ledger records.
	FreeValue Cents `json:"free_value"`

	UsageAfter Usage `json:"usage_after"`
}

// FixedTotal is the fixed charges this purchase collected.
func (b *Breakdown) FixedTotal() Cents {
	var s Cents
	for _, c := range b.Fixed {
		s += c.Amount
	}
	return s
}

// Paid is what the customer parts with: the amount tendered less change.
func (b *Breakdown) Paid() Cents { return b.Tendered - b.Change }

// Check verifies the breakdown's arithmetic: every line non-negative, the
// lines adding up to the amount tendered, VAT adding up, and the blocks
// contiguous. The ledger refuses to post a breakdown that fails it.
func (b *Breakdown) Check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrUnbalanced, fmt.Sprintf(format, args...))
	}
	if b.Tendered < 0 || b.Debt < 0 || b.DebtAfter < 0 || b.Change < 0 || b.Water < 0 || b.VAT < 0 ||
		b.Litres < 0 || b.FreeLitres < 0 || b.FreeValue < 0 {
		return bad("negative amount")
	}
	var fixed, vat, water Cents
	for _, c := range b.Fixed {
		if c.Amount < 0 || c.VAT < 0 || c.VAT > c.Amount {
			return bad("fixed charge %q: amount %d, VAT %d", c.Name, c.Amount, c.VAT)
		}
		fixed += c.Amount
		vat += c.VAT
	}
	var litres Litres
	for i, l := range b.Blocks {
		if l.Litres <= 0 || l.To-l.From != l.Litres || l.Amount < 0 || l.VAT < 0 || l.VAT > l.Amount {
			return bad("block line %d malformed", i)
		}
		if i > 0 && (l.From != b.Blocks[i-1].To || l.Block <= b.Blocks[i-1].Block) {
			return bad("block line %d does not follow line %d", i, i-1)
		}
		litres += l.Litres
		water += l.Amount
		vat += l.VAT
	}
	switch {
	case litres != b.Litres:
		return bad("block litres %d != litres %d", litres, b.Litres)
	case water != b.Water:
		return bad("block amounts %d != water %d", water, b.Water)
	case vat != b.VAT:
		return bad("line VAT %d != VAT %d", vat, b.VAT)
	case b.Debt+fixed+b.Water+b.Change != b.Tendered:
		return bad("debt %d + fixed %d + water %d + change %d != tendered %d", b.Debt, fixed, b.Water, b.Change, b.Tendered)
	}
	return nil
}

// Purchase splits an amount tendered under the version in force on r.Date.
func (t *Tariff) Purchase(r Request, tendered Cents) (Breakdown, error) {
	v, err := t.VersionOn(r.Date)
	if err != nil {
		return Breakdown{}, err
	}
	return v.checkedPurchase(t, r, tendered)
}

// Quote returns the breakdown of the smallest amount that buys at least
// litres (rounded up to the quantum) under the version in force on r.Date.
// Paying Quote's Tendered gives exactly Quote's breakdown.
func (t *Tariff) Quote(r Request, litres Litres) (Breakdown, error) {
	v, err := t.VersionOn(r.Date)
	if err != nil {
		return Breakdown{}, err
	}
	return v.quote(t, r, litres)
}

func (r *Request) check() (Litres, error) {
	switch {
	case r.Usage.PaidLitres < 0 || r.Usage.PaidLitres > MaxUsage:
		return 0, fieldErr("usage.paid_litres", "must be between 0 and %d", MaxUsage)
	case r.Usage.FixedCollected < 0 || r.Usage.FixedCollected > MaxCents:
		return 0, fieldErr("usage.fixed_collected", "must be between 0 and %d", MaxCents)
	case r.Debt < 0 || r.Debt > MaxCents:
		return 0, fieldErr("debt", "must be between 0 and %d", MaxCents)
	case r.Quantum < 0 || r.Quantum > MaxQuantum:
		return 0, fieldErr("quantum", "must be between 1 and %d litres", MaxQuantum)
	}
	if r.Quantum == 0 {
		return 1, nil
	}
	return r.Quantum, nil
}

// split applies steps 1 and 2 of the model (debt, then fixed charges) and
// returns the amounts taken and what is left for water.
func (v *Version) split(r *Request, tendered Cents) (debt, fixed, left Cents) {
	share, _, _ := mulDiv(int64(tendered), int64(v.DebtRecovery), 10000)
	debt = min(Cents(share), r.Debt)
	left = tendered - debt
	due := max(v.FixedTotal()-r.Usage.FixedCollected, 0)
	fixed = min(due, left)
	return debt, fixed, left - fixed
}

// cost is the VAT-inclusive price of n litres starting at ladder position
// start: each block's share rounded half up to the cent. It is monotone in
// n, which is what makes the searches below exact.
func (v *Version) cost(start, n Litres) Cents {
	var total int64
	end := start + n
	for i, b := range v.Blocks {
		lo, hi := v.blockRange(i)
		a, z := max(lo, start), end
		if hi >= 0 {
			z = min(hi, end)
		}
		if z <= a {
			continue
		}
		total = satAdd(total, mulDivHalfUp(int64(z-a), int64(b.PricePerKL), 1000))
	}
	return Cents(total)
}

// lines itemises n litres from start, block by block.
func (v *Version) lines(start, n Litres) []BlockLine {
	var out []BlockLine
	end := start + n
	for i, b := range v.Blocks {
		lo, hi := v.blockRange(i)
		a, z := max(lo, start), end
		if hi >= 0 {
			z = min(hi, end)
		}
		if z <= a {
			continue
		}
		out = append(out, BlockLine{
			Block: i + 1, From: a, To: z, Litres: z - a, PricePerKL: b.PricePerKL,
			Amount: Cents(mulDivHalfUp(int64(z-a), int64(b.PricePerKL), 1000)),
		})
	}
	return out
}

// litresFor is the largest multiple of q whose cost from start fits budget.
func (v *Version) litresFor(start Litres, budget Cents, q Litres) Litres {
	// Past the last bound, budget*1000/price + 1000 litres cost at least
	// budget + 1: an upper bound where the search can start.
	last := v.Blocks[len(v.Blocks)-1]
	lastLo, _ := v.blockRange(len(v.Blocks) - 1)
	hiL := max(lastLo-start, 0) + Litres(int64(budget)*1000/int64(last.PricePerKL)) + 1000
	lo, hi := int64(0), int64(hiL/q)+1 // cost(lo*q) <= budget < cost(hi*q)
	for v.cost(start, Litres(hi)*q) <= budget {
		hi *= 2 // unreachable by the bound above; kept so the search is exact regardless
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if v.cost(start, Litres(mid)*q) <= budget {
			lo = mid
		} else {
			hi = mid
		}
	}
	return Litres(lo) * q
}

// checkedPurchase validates the request and splits tendered under this
// version; t supplies the tariff's code and currency for the breakdown.
func (v *Version) checkedPurchase(t *Tariff, r Request, tendered Cents) (Breakdown, error) {
	q, err := r.check()
	if err != nil {
		return Breakdown{}, err
	}
	if tendered < 0 {
		return Breakdown{}, fieldErr("tendered", "must not be negative")
	}
	if tendered > MaxCents {
		return Breakdown{}, fmt.Errorf("%w: tendered %d > %d", ErrTooLarge, tendered, MaxCents)
	}
	return v.purchase(t, &r, tendered, q), nil
}

func (v *Version) purchase(t *Tariff, r *Request, tendered Cents, q Litres) Breakdown {
	b := Breakdown{
		Tariff: t.Code, Effective: v.Effective, Currency: t.Currency, VATRate: v.VAT, Quantum: q,
		Tendered: tendered, Fixed: []ChargeLine{}, Blocks: []BlockLine{},
	}
	debt, fixed, left := v.split(r, tendered)
	b.Debt, b.DebtAfter = debt, r.Debt-debt

	// Fixed charges in tariff order, skipping what earlier purchases paid.
	paid, take := r.Usage.FixedCollected, fixed
	for _, c := range v.Fixed {
		owed := c.Amount - min(paid, c.Amount)
		paid -= c.Amount - owed
		if owed == 0 || take == 0 {
			continue
		}
		n := min(owed, take)
		b.Fixed = append(b.Fixed, ChargeLine{Name: c.Name, Amount: n})
		take -= n
	}

	start := v.FreeBasic + r.Usage.PaidLitres
	n := v.litresFor(start, left, q)
	if n > 0 {
		b.Blocks = v.lines(start, n)
	}
	b.Litres = n
	for _, l := range b.Blocks {
		b.Water += l.Amount
	}
	b.Change = left - b.Water
	v.allocateVAT(&b)

	if v.FreeBasic > 0 && !r.Usage.FreeIssued {
		b.FreeLitres = v.FreeBasic
		gross := v.cost(0, v.FreeBasic)
		b.FreeValue = gross - Cents(mulDivHalfUp(int64(gross), int64(v.VAT), 10000+int64(v.VAT)))
	}
	b.UsageAfter = r.Usage.Add(&b)
	return b
}

// allocateVAT extracts VAT once from the taxable total (fixed charges and
// water, both VAT-inclusive), rounded half up, and spreads it over the lines
// by largest remainder so the lines' VAT adds up to the total exactly.
func (v *Version) allocateVAT(b *Breakdown) {
	den := 10000 + int64(v.VAT)
	type share struct {
		vat *Cents
		rem int64
	}
	var shares []share
	var taxable, floors int64
	add := func(amount Cents, vat *Cents) {
		f, r, _ := mulDiv(int64(amount), int64(v.VAT), den)
		*vat = Cents(f)
		floors += f
		taxable += int64(amount)
		shares = append(shares, share{vat, r})
	}
	for i := range b.Fixed {
		add(b.Fixed[i].Amount, &b.Fixed[i].VAT)
	}
	for i := range b.Blocks {
		add(b.Blocks[i].Amount, &b.Blocks[i].VAT)
	}
	total := mulDivHalfUp(taxable, int64(v.VAT), den)
	b.VAT = Cents(total)
	// total - floors < len(shares): hand out the missing cents one each to
	// the largest remainders, earlier lines first on ties.
	for extra := total - floors; extra > 0; extra-- {
		best := -1
		for i, s := range shares {
			if s.rem >= 0 && (best < 0 || s.rem > shares[best].rem) {
				best = i
			}
		}
		*shares[best].vat++
		shares[best].rem = -1
	}
}

// quote finds, by bisection over the amount tendered, the smallest amount
// whose purchase yields at least litres. Purchase is monotone in the amount
// (see docs/tariffs.md), so the bisection is exact.
func (v *Version) quote(t *Tariff, r Request, litres Litres) (Breakdown, error) {
	q, err := r.check()
	if err != nil {
		return Breakdown{}, err
	}
	if litres < 0 || litres > MaxUsage {
		return Breakdown{}, fieldErr("litres", "must be between 0 and %d", MaxUsage)
	}
	want := (litres + q - 1) / q * q
	start := v.FreeBasic + r.Usage.PaidLitres
	enough := func(amount int64) bool {
		_, _, left := v.split(&r, Cents(amount))
		return v.litresFor(start, left, q) >= want
	}
	// Enough by construction: whatever debt and charges take, the rest pays
	// for want litres. Capped at MaxCents, where it must be checked.
	due := max(v.FixedTotal()-r.Usage.FixedCollected, 0)
	hi := satAdd(int64(r.Debt)+int64(due), int64(v.cost(start, want)))
	if hi > int64(MaxCents) {
		hi = int64(MaxCents)
		if !enough(hi) {
			return Breakdown{}, fmt.Errorf("%w: %d litres would cost more than %d", ErrTooLarge, litres, MaxCents)
		}
	}
	lo := int64(0)
	for lo < hi {
		mid := lo + (hi-lo)/2
		if enough(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return v.purchase(t, &r, Cents(lo), q), nil
}
