package ledger

import (
	"fmt"
	"time"

	"sluice/tariff"
)

// Purchase is a completed vend, ready to be posted.
type Purchase struct {
	ID        string // the client's purchase ID
	Vendor    string // vending point whose float pays
	Meter     string
	Customer  string // holder of the debt account
	Time      time.Time
	Breakdown *tariff.Breakdown
	Tokens    []Token // everything delivered: key-change, credit, free
}

// PurchaseEntry posts a vend (docs/ledger.md, "Purchase"):
//
//	Dr float:<vendor>          paid (tendered less change)
//	Cr debt:<customer>         debt recovered
//	Cr revenue:fixed           fixed charges less their VAT
//	Cr revenue:water           water less its VAT
//	Cr vat:output              VAT
//	Dr subsidy:free-basic      free basic water's value   } when free water
//	Cr revenue:free-basic      free basic water's value   } is issued
//	Dr credit:<meter>          litres (paid + free)       } memo, unit L
//	Cr issued:water            litres (paid + free)       }
//
// The breakdown must pass its own Check, and water must come with tokens
// for the meter: a purchase and its token set are one entry, so the ledger
// cannot hold a purchase whose tokens were issued twice.
func PurchaseEntry(p Purchase) (Entry, error) {
	b := p.Breakdown
	if b == nil {
		return Entry{}, fmt.Errorf("%w: purchase %q: no breakdown", ErrInvalid, p.ID)
	}
	if err := b.Check(); err != nil {
		return Entry{}, fmt.Errorf("%w: purchase %q: %w", ErrInvalid, p.ID, err)
	}
	for _, f := range []struct{ name, v string }{{"vendor", p.Vendor}, {"meter", p.Meter}, {"customer", p.Customer}, {"purchase", p.ID}} {
		if err := checkID(f.v); err != nil {
			return Entry{}, fmt.Errorf("%w: purchase %q: %s %v", ErrInvalid, p.ID, f.name, err)
		}
	}
	litres := int64(b.Litres + b.FreeLitres)
	if litres > 0 && len(p.Tokens) == 0 {
		return Entry{}, fmt.Errorf("%w: purchase %q issues %d litres without a token", ErrInvalid, p.ID, litres)
	}
	for i, t := range p.Tokens {
		if t.Meter != p.Meter {
			return Entry{}, fmt.Errorf("%w: purchase %q: token %d is for meter %q, not %q", ErrInvalid, p.ID, i, t.Meter, p.Meter)
		}
	}

	var fixedVAT, waterVAT tariff.Cents
	for _, c := range b.Fixed {
		fixedVAT += c.VAT
	}
	for _, l := range b.Blocks {
		waterVAT += l.VAT
	}
	cur := b.Currency
	e := Entry{
		ID: string(TypePurchase) + ":" + p.ID, Type: TypePurchase, Purchase: p.ID, Time: p.Time,
		Tokens: append([]Token(nil), p.Tokens...),
	}
	post := func(k Kind, id, unit string, amount int64) {
		if amount != 0 {
			e.Postings = append(e.Postings, Posting{Account{k, id}, unit, amount})
		}
	}
	post(Float, p.Vendor, cur, int64(b.Paid()))
	post(Debt, p.Customer, cur, -int64(b.Debt))
	post(Revenue, RevenueFixed, cur, -int64(b.FixedTotal()-fixedVAT))
	post(Revenue, RevenueWater, cur, -int64(b.Water-waterVAT))
	post(VAT, VATOutput, cur, -int64(b.VAT))
	post(Subsidy, SubsidyFreeBasic, cur, int64(b.FreeValue))
	post(Revenue, RevenueFreeBasic, cur, -int64(b.FreeValue))
	post(Credit, p.Meter, UnitLitres, litres)
	post(Issued, IssuedWater, UnitLitres, -litres)
	if len(e.Postings) == 0 {
		return Entry{}, fmt.Errorf("%w: purchase %q moves nothing", ErrInvalid, p.ID)
	}
	if err := e.Validate(); err != nil {
		return Entry{}, err
	}
	return e, nil
}

// Deposit is money a vendor hands in to top up its float.
type Deposit struct {
	ID       string
	Vendor   string
	Bank     string // the bank account (or cash office) that received it
	Currency string
	Amount   int64
	Time     time.Time
}

// DepositEntry posts a float top-up: Dr bank:<bank>, Cr float:<vendor>.
func DepositEntry(d Deposit) (Entry, error) {
	return simple(TypeDeposit, d.ID, d.Time, d.Currency, Account{Bank, d.Bank}, Account{Float, d.Vendor}, d.Amount)
}

// Fee is a charge a payment channel pays per vend or per period.
type Fee struct {
	ID       string
	Vendor   string // whose float pays
	Channel  string // fee income account
	Currency string
	Amount   int64
	Time     time.Time
}

// FeeEntry posts a fee: Dr float:<vendor>, Cr fees:<channel>.
func FeeEntry(f Fee) (Entry, error) {
	return simple(TypeFee, f.ID, f.Time, f.Currency, Account{Float, f.Vendor}, Account{Fees, f.Channel}, f.Amount)
}

// DebtTakeOn is arrears loaded onto a customer's debt account (from the
// billing system), to be recovered by purchases.
type DebtTakeOn struct {
	ID       string
	Customer string
	Currency string
	Amount   int64
	Time     time.Time
}

// DebtEntry posts arrears: Dr debt:<customer>, Cr revenue:arrears.
func DebtEntry(d DebtTakeOn) (Entry, error) {
	return simple(TypeDebt, d.ID, d.Time, d.Currency, Account{Debt, d.Customer}, Account{Revenue, RevenueArrears}, d.Amount)
}

// simple is a two-posting entry, Dr dr and Cr cr by amount. The amount
// must be positive: the direction is fixed by the entry's type, and a
// negative amount would post the opposite of what the type says.
func simple(t Type, id string, at time.Time, unit string, dr, cr Account, amount int64) (Entry, error) {
	if amount <= 0 {
		return Entry{}, fmt.Errorf("%w: %s %q: amount must be positive", ErrInvalid, t, id)
	}
	e := Entry{ID: string(t) + ":" + id, Type: t, Time: at, Postings: []Posting{{dr, unit, amount}, {cr, unit, -amount}}}
	if err := e.Validate(); err != nil {
		return Entry{}, err
	}
	return e, nil
}
