// Package ledger holds Sluice's double-entry bookkeeping rules: the chart of
// accounts, how each vending use case turns into balanced postings, how a
// posting is reversed, and the invariants that must hold over the whole,
// append-only stream of entries.
//
// It is a pure core. The store persists entries (append-only, in one
// database transaction with the purchase and its tokens) and enforces the
// hot-path float check with a constraint; this package says what an entry
// must look like and checks, over any stream of entries, that the rules
// held: `sluice ledger check` feeds it the database's entries in commit
// order and prints the violations.
//
// # Conventions
//
// Amounts are integers: minor units of a currency (cents of "ZAR"), or
// litres (unit "L") on the memo accounts. A posting's amount is positive
// for a debit and negative for a credit, so every entry sums to zero per
// unit. Asset and expense accounts (bank, debt, subsidy, credit) normally
// carry debit (positive) balances; liability and income accounts (float,
// vat, revenue, fees, issued) carry credit (negative) balances. A vendor's
// float available is therefore minus its account balance, and "no float
// negative" means a float account's balance is never above zero.
//
// Entries are never updated or deleted: a mistake is corrected by a
// reversal, an entry whose postings are the original's negated.
package ledger

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Sentinel errors callers branch on.
var (
	ErrInvalid       = errors.New("ledger: invalid entry")
	ErrUnbalanced    = errors.New("ledger: entry does not balance")
	ErrNotReversible = errors.New("ledger: entry cannot be reversed")
)

// UnitLitres is the unit of the memo accounts.
const UnitLitres = "L"

// Limits on one entry, far above any real one, that keep sums in int64.
const (
	MaxAmount   = 1_000_000_000_000_000 // per posting, in minor units or litres
	MaxPostings = 64
	MaxTokens   = 16
)

// Kind is the kind of an account; an account is a Kind plus an ID.
type Kind string

// The chart of accounts.
const (
	Float   Kind = "float"   // per vendor: prepaid float (liability)
	Bank    Kind = "bank"    // per bank account: deposits received (asset)
	Revenue Kind = "revenue" // "water", "fixed", "free-basic", "arrears" (income)
	VAT     Kind = "vat"     // "output": VAT payable (liability)
	Debt    Kind = "debt"    // per customer: debt receivable (asset)
	Subsidy Kind = "subsidy" // "free-basic": free basic water given (expense)
	Fees    Kind = "fees"    // per channel: fees charged to vendors (income)
	Credit  Kind = "credit"  // per meter: memo, litres of credit issued to it
	Issued  Kind = "issued"  // "water": memo, contra of every credit account
)

// Fixed account IDs.
const (
	RevenueWater     = "water"
	RevenueFixed     = "fixed"
	RevenueFreeBasic = "free-basic"
	RevenueArrears   = "arrears"
	VATOutput        = "output"
	SubsidyFreeBasic = "free-basic"
	IssuedWater      = "water"
)

var kinds = map[Kind]bool{Float: true, Bank: true, Revenue: true, VAT: true, Debt: true, Subsidy: true, Fees: true, Credit: true, Issued: true}

// memo reports whether accounts of kind k count litres rather than money.
func (k Kind) memo() bool { return k == Credit || k == Issued }

// Account names one ledger account.
type Account struct {
	Kind Kind
	ID   string
}

// String is the account's stored form, "kind:id".
func (a Account) String() string { return string(a.Kind) + ":" + a.ID }

// ParseAccount reads "kind:id".
func ParseAccount(s string) (Account, error) {
	k, id, ok := strings.Cut(s, ":")
	if !ok {
		return Account{}, fmt.Errorf("%w: account %q: want kind:id", ErrInvalid, s)
	}
	a := Account{Kind(k), id}
	if err := a.validate(); err != nil {
		return Account{}, err
	}
	return a, nil
}

// MarshalText writes the stored form.
func (a Account) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText reads the stored form.
func (a *Account) UnmarshalText(b []byte) error {
	p, err := ParseAccount(string(b))
	if err != nil {
		return err
	}
	*a = p
	return nil
}

func (a Account) validate() error {
	if !kinds[a.Kind] {
		return fmt.Errorf("%w: account %q: unknown kind %q", ErrInvalid, a, a.Kind)
	}
	if err := checkID(a.ID); err != nil {
		return fmt.Errorf("%w: account %q: id %v", ErrInvalid, a, err)
	}
	return nil
}

// checkID accepts the identifiers used across Sluice: vendor codes, meter
// and customer numbers, purchase IDs, references such as "V-017/2026-07-15":
// 1 to 128 bytes of printable UTF-8 without spaces or colons (the colon
// separates an account's kind from its ID).
func checkID(s string) error {
	if s == "" || len(s) > 128 || !utf8.ValidString(s) {
		return errors.New("must be 1 to 128 bytes of UTF-8")
	}
	for _, r := range s {
		if r == ':' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("may not contain spaces, colons or control characters, got %q", s)
		}
	}
	return nil
}

func checkUnit(k Kind, unit string) error {
	if k.memo() {
		if unit != UnitLitres {
			return fmt.Errorf("memo account needs unit %q, got %q", UnitLitres, unit)
		}
		return nil
	}
	if len(unit) != 3 || strings.Trim(unit, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
		return fmt.Errorf("money account needs an ISO 4217 currency, got %q", unit)
	}
	return nil
}

// Posting moves Amount of Unit into (debit, positive) or out of (credit,
// negative) an account.
type Posting struct {
	Account Account `json:"account"`
	Unit    string  `json:"unit"`
	Amount  int64   `json:"amount"`
}

// Type says which use case made an entry.
type Type string

// Entry types.
const (
	TypePurchase Type = "purchase" // a vend: money in, credit out (and free basic water)
	TypeDeposit  Type = "deposit"  // a vendor tops up its float
	TypeFee      Type = "fee"      // a channel fee drawn from a vendor's float
	TypeDebt     Type = "debt"     // arrears taken on to a customer's debt account
	TypeReversal Type = "reversal" // compensates an earlier entry
)

var types = map[Type]bool{TypePurchase: true, TypeDeposit: true, TypeFee: true, TypeDebt: true, TypeReversal: true}

// Token is one token or voucher an entry delivered to a meter, with the
// identifiers the meter will refuse to see twice.
type Token struct {
	Meter   string `json:"meter"`
	Purpose string `json:"purpose"`       // PurposeCredit, PurposeFree, PurposeKeyChange, PurposeEngineering
	TID     uint32 `json:"tid,omitempty"` // STS token identifier; 0 when the token has none (key-change tokens)
	// Base is the STS base date (year: 1993, 2014, 2035) the TID counts
	// minutes from. A key change that rolls a meter over to a new base date
	// clears its TID memory, so TIDs are unique per meter and base.
	Base uint16 `json:"base,omitempty"`
	Seq  uint64 `json:"seq,omitempty"` // voucher sequence number; 0 for STS tokens
}

// Token purposes.
const (
	PurposeCredit      = "credit"
	PurposeFree        = "free"
	PurposeKeyChange   = "key-change"
	PurposeEngineering = "engineering"
)

// Entry is one balanced, atomic ledger transaction.
type Entry struct {
	Seq      uint64    `json:"seq,omitempty"` // commit order, assigned by the store
	ID       string    `json:"id"`            // unique: "purchase:<purchase id>", ...
	Type     Type      `json:"type"`
	Purchase string    `json:"purchase,omitempty"` // purchase ID, on purchases and their reversals
	Reverses string    `json:"reverses,omitempty"` // the entry a reversal compensates
	Time     time.Time `json:"time"`
	Postings []Posting `json:"postings"`
	Tokens   []Token   `json:"tokens,omitempty"`
}

// Validate checks an entry on its own: well-formed, balanced per unit,
// tokens only on purchases and none repeated within it.
func (e *Entry) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s", ErrInvalid, e.ID, fmt.Sprintf(format, args...))
	}
	if !types[e.Type] {
		return bad("unknown type %q", e.Type)
	}
	if rest, ok := strings.CutPrefix(e.ID, string(e.Type)+":"); !ok || checkID(rest) != nil {
		return bad("id must be %q followed by an identifier", string(e.Type)+":")
	}
	switch {
	case e.Time.IsZero():
		return bad("time required")
	case len(e.Postings) > MaxPostings:
		return bad("more than %d postings", MaxPostings)
	case len(e.Postings) == 0:
		return bad("no postings")
	case (e.Type == TypeReversal) != (e.Reverses != ""):
		return bad("reverses must be set on reversals and only on them")
	case (e.Type == TypePurchase) && e.Purchase == "":
		return bad("purchase ID required")
	case e.Type != TypePurchase && len(e.Tokens) > 0:
		return bad("only purchases deliver tokens")
	case len(e.Tokens) > MaxTokens:
		return bad("more than %d tokens", MaxTokens)
	}
	if e.Purchase != "" {
		if err := checkID(e.Purchase); err != nil {
			return bad("purchase %v", err)
		}
	}
	sums := map[string]int64{}
	for i, p := range e.Postings {
		if err := p.Account.validate(); err != nil {
			return bad("posting %d: %v", i, err)
		}
		if err := checkUnit(p.Account.Kind, p.Unit); err != nil {
			return bad("posting %d (%s): %v", i, p.Account, err)
		}
		if p.Amount == 0 || p.Amount > MaxAmount || p.Amount < -MaxAmount {
			return bad("posting %d (%s): amount must be non-zero and within ±%d", i, p.Account, MaxAmount)
		}
		sums[p.Unit] += p.Amount // cannot overflow: MaxPostings * MaxAmount < 2^63
	}
	for unit, s := range sums {
		if s != 0 {
			return fmt.Errorf("%w: %q: %s postings sum to %d", ErrUnbalanced, e.ID, unit, s)
		}
	}
	tids, seqs := map[meterTID]bool{}, map[meterID]bool{}
	for i, t := range e.Tokens {
		if err := checkID(t.Meter); err != nil {
			return bad("token %d: meter %v", i, err)
		}
		switch t.Purpose {
		case PurposeCredit, PurposeFree, PurposeKeyChange, PurposeEngineering:
		default:
			return bad("token %d: unknown purpose %q", i, t.Purpose)
		}
		if t.TID != 0 {
			k := meterTID{t.Meter, t.Base, t.TID}
			if tids[k] {
				return bad("token %d repeats TID %d", i, t.TID)
			}
			tids[k] = true
		}
		if t.Seq != 0 {
			k := meterID{t.Meter, t.Seq}
			if seqs[k] {
				return bad("token %d repeats sequence %d", i, t.Seq)
			}
			seqs[k] = true
		}
	}
	return nil
}

// Reverse returns the entry that compensates e: its postings negated, in
// the same order, no tokens (the tokens' TIDs and sequence numbers stay
// used). id identifies the reversal ("reversal:<id>"); t is its time.
func Reverse(e *Entry, id string, t time.Time) (Entry, error) {
	if e.Type == TypeReversal {
		return Entry{}, fmt.Errorf("%w: %q is itself a reversal; post a new entry instead", ErrNotReversible, e.ID)
	}
	if err := e.Validate(); err != nil {
		return Entry{}, err
	}
	r := Entry{ID: string(TypeReversal) + ":" + id, Type: TypeReversal, Purchase: e.Purchase, Reverses: e.ID, Time: t}
	for _, p := range e.Postings {
		r.Postings = append(r.Postings, Posting{p.Account, p.Unit, -p.Amount})
	}
	if err := r.Validate(); err != nil {
		return Entry{}, err
	}
	return r, nil
}
