package store

import (
	"context"
	"time"
)

// ReportFilter selects what a report covers: a half-open time range
// [From, To) and, optionally, one supply group, vending point (code) and
// operator (username). Empty strings select everything.
type ReportFilter struct {
	From, To    time.Time
	SupplyGroup string
	Vendor      string
	Operator    string
}

// SaleRow is one purchase or purchase reversal as the ledger recorded it,
// with what reports group by. Sign is +1 for the purchase entry and -1 for
// its reversal, so sums over a range agree with the ledger's.
type SaleRow struct {
	EntrySeq    int64
	EntryID     string
	Sign        int64
	At          time.Time
	PurchaseID  int64
	Vendor      string
	Operator    string
	Meter       string
	MeterKind   string
	SupplyGroup string
	Area        string
	State       string
	Tendered    int64
	Paid        int64
	// Receipt is the stored purchase response (vend.Receipt JSON), which
	// holds the tariff breakdown: blocks, fixed charges, VAT, debt, free
	// water.
	Receipt []byte
}

// PostingRow is one ledger posting with its entry's time and type.
type PostingRow struct {
	EntrySeq  int64
	EntryID   string
	EntryType string
	At        time.Time
	Account   string
	Unit      string
	Amount    int64
}

// TokenReportRow is one issued token with who issued it, for the token
// report.
type TokenReportRow struct {
	At          time.Time
	Kind        string
	Meter       string
	SupplyGroup string
	Vendor      string // "" for engineering tokens
	Operator    string // the purchase's operator, the approver of an engineering request, or "campaign:<name>"
	PurchaseID  int64
	RequestID   int64
	Litres      int64
}

// ReadingRow is one meter reading with the meter's place, for consumption
// reports.
type ReadingRow struct {
	MeterID     int64
	Meter       string
	SupplyGroup string
	Area        string
	Time        time.Time
	Forward     int64 // litres, cumulative
	Reverse     int64 // litres, cumulative
}

// Reports are the read-only, streaming queries behind package report. Each
// calls fn once per row as the database cursor yields it and never holds the
// result set in memory; an error from fn stops the scan and is returned.
type Reports interface {
	// Sales streams purchase and reversal entries whose time is in range,
	// in commit order.
	Sales(ctx context.Context, f ReportFilter, fn func(SaleRow) error) error
	// Postings streams the postings on accounts starting with prefix ("" for
	// all) of entries whose time is in range, in commit order. Only the
	// filter's time range applies.
	Postings(ctx context.Context, f ReportFilter, prefix string, fn func(PostingRow) error) error
	// Balances sums, per account and unit, the postings on accounts starting
	// with prefix of entries before t.
	Balances(ctx context.Context, prefix string, before time.Time, fn func(account, unit string, amount int64) error) error
	// Tokens streams tokens issued in range, in time order.
	Tokens(ctx context.Context, f ReportFilter, fn func(TokenReportRow) error) error
	// Readings streams the readings taken in range, by meter and time.
	// Only the time range and the supply group apply.
	Readings(ctx context.Context, f ReportFilter, fn func(ReadingRow) error) error
	// Alerts streams the alerts that were open at some time in range (raised
	// before its end, and unresolved or resolved after its start), oldest
	// first within each of the two groups (unresolved, then resolved).
	// Only the time range and the supply group apply.
	Alerts(ctx context.Context, f ReportFilter, fn func(Alert) error) error
	// Explain returns the database's plan for each report query, by name,
	// for tests and for `sluice report explain`.
	Explain(ctx context.Context) (map[string]string, error)
}
