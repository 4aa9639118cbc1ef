// Package tariff turns money into water and water into money under a
// utility's water tariff: rising blocks per calendar month, a free basic
// water allowance, fixed monthly charges, VAT and debt recovery.
//
// It is a pure core: no I/O, no clock, no globals. The caller (the vending
// service) supplies the date of the purchase and what the household has
// already used this month, and stores what the breakdown says was used.
//
// # Units
//
// Money is an integer number of minor units (Cents: cents of a rand), volume
// an integer number of litres (Litres). There are no floats anywhere: block
// sizes arrive as decimal kilolitres ("10.5") and are parsed exactly into
// litres; products use 128-bit intermediates so nothing overflows silently.
//
// # The model, in the order a purchase is split
//
//  1. Debt recovery: a share (basis points) of the amount tendered, rounded
//     down, capped at the outstanding debt. Debt carries no VAT here (it was
//     charged when the debt arose).
//  2. Fixed monthly charges: collected from what is left, in the order the
//     tariff lists them, until the month's charges are paid; a purchase too
//     small to cover them collects part and the next purchase the rest.
//  3. Water: what is left buys the largest whole number of quanta (the
//     token's resolution, 1 litre by default, 100 litres for STS 0.1 m3
//     tokens) whose price through the rising blocks, starting at the
//     household's position on the month's ladder, fits.
//  4. Change: the cents that cannot buy one more quantum are returned in the
//     breakdown as Change; the vending service hands them back or refuses.
//
// Prices are VAT-inclusive: a block's price per kilolitre and a fixed charge
// are what the customer pays. VAT is extracted once per purchase from the
// taxable total (fixed charges plus water) and allocated back to the lines,
// so receipts and "sales by block" reports add up to the cent. The free basic
// allowance occupies the bottom of the ladder for every household on a tariff
// that grants it, issued or not: paid water starts above it.
//
// Rounding (see docs/tariffs.md): each block line is rounded half up to the
// cent, debt recovery is rounded down, VAT is rounded half up and allocated
// by largest remainder. Whatever the rounding, the breakdown's lines always
// add up exactly to the amount tendered (Breakdown.Check).
package tariff

import (
	"errors"
	"fmt"
	"time"
)

// Cents is an amount of money in minor units of the tariff's currency.
type Cents int64

// Litres is a volume of water.
type Litres int64

// BasisPoints is a rate in hundredths of a percent: 1500 is 15%.
type BasisPoints int64

// Limits that keep every product well inside int64. They are far above any
// real tariff or purchase (a billion rand, a million kilolitres).
const (
	MaxCents      Cents  = 100_000_000_000 // R1,000,000,000.00
	MaxPricePerKL Cents  = 100_000_000     // R1,000,000.00 per kl
	MaxLitres     Litres = 1_000_000_000   // 1,000,000 kl
	MaxQuantum    Litres = 1_000_000
	MaxBlocks            = 16
	MaxCharges           = 16
	MaxVersions          = 64
)

// Sentinel errors callers branch on.
var (
	// ErrInvalid wraps every error about a malformed tariff or request; the
	// concrete error is a *FieldError naming the field.
	ErrInvalid = errors.New("invalid")
	// ErrNoVersion means the tariff has no version in force on the date.
	ErrNoVersion = errors.New("tariff: no version in force on that date")
	// ErrTooLarge means the amount or volume asked for is beyond the limits.
	ErrTooLarge = errors.New("tariff: amount beyond limits")
)

// FieldError is a validation error naming the offending field, in the JSON
// spelling the API uses ("versions[1].blocks[0].up_to_kl").
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return "tariff: " + e.Field + ": " + e.Msg }

// Unwrap makes every FieldError match ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Date is a civil date in the utility's time zone. Tariff versions take
// effect on a date and blocks reset on the first of each month; both are
// civil notions, so the caller converts its clock to the local date.
type Date struct {
	Year  int
	Month time.Month
	Day   int
}

// DateOf returns the civil date of t in t's location.
func DateOf(t time.Time) Date {
	y, m, d := t.Date()
	return Date{y, m, d}
}

// ParseDate parses "2006-01-02".
func ParseDate(s string) (Date, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return Date{}, fmt.Errorf("not a YYYY-MM-DD date: %q", s)
	}
	return DateOf(t), nil
}

func (d Date) String() string { return fmt.Sprintf("%04d-%02d-%02d", d.Year, int(d.Month), d.Day) }

// Compare returns -1, 0 or +1 as d is before, equal to or after e.
func (d Date) Compare(e Date) int {
	switch {
	case d.Year != e.Year:
		return cmpInt(d.Year, e.Year)
	case d.Month != e.Month:
		return cmpInt(int(d.Month), int(e.Month))
	default:
		return cmpInt(d.Day, e.Day)
	}
}

// IsZero reports whether d is the zero Date.
func (d Date) IsZero() bool { return d == Date{} }

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Tariff is a named water tariff and its versions over time.
type Tariff struct {
	Code     string    // stable identifier, e.g. "DOM-2026"
	Name     string    // for receipts and the console
	Currency string    // ISO 4217, e.g. "ZAR"
	Versions []Version // strictly ascending Effective dates
}

// Version is the tariff as it stands from one date until the next version.
type Version struct {
	Effective    Date
	Blocks       []Block     // rising blocks; the last has UpTo == 0 (no bound)
	FreeBasic    Litres      // free basic water per household per month
	Fixed        []Charge    // fixed monthly charges, collected in this order
	VAT          BasisPoints // VAT rate included in every price
	DebtRecovery BasisPoints // share of each amount tendered taken for debt
}

// Block is one step of the monthly ladder: from the previous block's UpTo
// (0 for the first) to UpTo litres of the month, at PricePerKL (VAT-inclusive
// cents per kilolitre). UpTo is 0 for the last, unbounded block.
type Block struct {
	UpTo       Litres
	PricePerKL Cents
}

// Charge is a fixed monthly charge (VAT-inclusive).
type Charge struct {
	Name   string
	Amount Cents
}

// VersionOn returns the version in force on d: the last one whose Effective
// date is not after d.
func (t *Tariff) VersionOn(d Date) (*Version, error) {
	for i := len(t.Versions) - 1; i >= 0; i-- {
		if t.Versions[i].Effective.Compare(d) <= 0 {
			return &t.Versions[i], nil
		}
	}
	return nil, fmt.Errorf("%w: %s on %s", ErrNoVersion, t.Code, d)
}

// FixedTotal is the sum of the month's fixed charges.
func (v *Version) FixedTotal() Cents {
	var s Cents
	for _, c := range v.Fixed {
		s += c.Amount
	}
	return s
}

// blockRange returns block i's range [lo, hi) on the month's ladder; hi is
// -1 for the unbounded last block.
func (v *Version) blockRange(i int) (lo, hi Litres) {
	if i > 0 {
		lo = v.Blocks[i-1].UpTo
	}
	hi = v.Blocks[i].UpTo
	if i == len(v.Blocks)-1 {
		hi = -1
	}
	return lo, hi
}

// MarshalText writes "2006-01-02".
func (d Date) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads "2006-01-02".
func (d *Date) UnmarshalText(b []byte) error {
	p, err := ParseDate(string(b))
	if err != nil {
		return err
	}
	*d = p
	return nil
}
