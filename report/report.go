// Package report produces the head-end's operational reports (vendor
// settlement, sales by tariff block, free basic water, debt recovered,
// tokens issued, the purchase journal) for a date range, filtered by supply
// group, vending point and operator, as CSV or JSON.
//
// # Streaming
//
// A report never loads the rows it reads: the store hands them over one at
// a time from a database cursor (store.Reports), inside one read-only
// transaction so every figure comes from the same snapshot. Journal reports
// (vends) write each row as it is read. Summary reports fold rows into one
// accumulator per output line (vendor and day, tariff block, ...), so their
// memory grows with the size of the answer, never with the number of
// purchases behind it. Rows go to a Sink (CSV or JSON) as they are produced.
//
// # Agreement with the ledger
//
// Money figures are taken from the ledger's own entries: a purchase counts
// on the day of its purchase entry and a reversal, negated, on the day of the
// reversal entry, so every total over a range equals the ledger balance
// movement of the matching accounts over the same range, to the cent
// (docs/reports.md lists which total matches which account; a test checks
// each on SQLite and PostgreSQL). The tariff detail (blocks, fixed charges,
// VAT) comes from the receipt stored with the purchase in the same
// transaction as its ledger entry, so vend needs no extra table.
//
// Days are civil days in the utility's time zone, the same one vending uses
// for daily limits, so a settlement day lines up with the vendor's day.
package report

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"sluice/store"
)

// Sentinel errors callers branch on.
var (
	// ErrUnknown: no report has that name.
	ErrUnknown = errors.New("no such report")
	// ErrTooLarge: a buffered (non-streaming) answer would exceed MaxRows.
	ErrTooLarge = errors.New("report too large to buffer")
)

var errRetried = errors.New("report: read transaction retried after output began; run the report again")

// FieldError names the parameter at fault.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Params selects what a report covers: [From, To) and optional filters
// (supply group code, vending point code, operator username).
type Params struct {
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	SupplyGroup string    `json:"supply_group,omitempty"`
	Vendor      string    `json:"vendor,omitempty"`
	Operator    string    `json:"operator,omitempty"`
}

// MaxRange bounds one report: ten years of days.
const MaxRange = 10 * 366 * 24 * time.Hour

func (p Params) validate() error {
	if p.From.IsZero() {
		return fieldErr("from", "is required")
	}
	if p.To.IsZero() {
		return fieldErr("to", "is required")
	}
	if !p.From.Before(p.To) {
		return fieldErr("to", "must be after from")
	}
	if p.To.Sub(p.From) > MaxRange {
		return fieldErr("to", "range must not exceed ten years")
	}
	for _, f := range []struct{ name, v string }{{"supply_group", p.SupplyGroup}, {"vendor", p.Vendor}, {"operator", p.Operator}} {
		if len(f.v) > 64 || strings.ContainsAny(f.v, " \t\r\n") {
			return fieldErr(f.name, "is not a valid code")
		}
	}
	return nil
}

func (p Params) filter() store.ReportFilter {
	return store.ReportFilter{From: p.From, To: p.To, SupplyGroup: p.SupplyGroup, Vendor: p.Vendor, Operator: p.Operator}
}

// ParseRange reads a report range: each end is a civil date (YYYY-MM-DD, in
// loc) or an RFC 3339 time. A date as `to` includes that whole day.
func ParseRange(from, to string, loc *time.Location) (time.Time, time.Time, error) {
	f, _, err := parseTime("from", from, loc)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	t, isDate, err := parseTime("to", to, loc)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	if isDate {
		t = t.AddDate(0, 0, 1)
	}
	return f, t, nil
}

func parseTime(field, s string, loc *time.Location) (time.Time, bool, error) {
	if s == "" {
		return time.Time{}, false, fieldErr(field, "is required")
	}
	if t, err := time.ParseInLocation("2006-01-02", s, loc); err == nil {
		return t, true, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, false, fieldErr(field, "must be a date (YYYY-MM-DD) or an RFC 3339 time")
	}
	return t, false, nil
}

// Column describes one column of a report. Sum columns are added up into
// the report's totals; the others (names, balances) are not.
type Column struct {
	Name string `json:"name"`
	Sum  bool   `json:"sum,omitempty"`
}

// Meta describes a report being written.
type Meta struct {
	Report  string    `json:"report"`
	Title   string    `json:"title"`
	Params  Params    `json:"params"`
	Columns []Column  `json:"columns"`
	Created time.Time `json:"created"`
}

// Sink receives a report as it is produced: Begin once, Row per line (each
// value a string or an int64, in column order), End once with the totals of
// the Sum columns.
type Sink interface {
	Begin(m Meta) error
	Row(values []any) error
	End(totals map[string]int64) error
}

// Info describes an available report.
type Info struct {
	Name  string `json:"name"`
	Title string `json:"title"`
	// Filters lists the filters the report honours.
	Filters []string `json:"filters"`
}

type definition struct {
	Info
	columns []Column
	run     func(ctx context.Context, s *Service, tx store.Tx, p Params, emit func(...any) error) error
}

// Service runs reports over a store.
type Service struct {
	st  store.Store
	loc *time.Location
	now func() time.Time
}

// New returns a Service. loc is the utility's time zone (the one vending
// counts days in); nil means UTC. now is the clock; nil means time.Now.
func New(st store.Store, loc *time.Location, now func() time.Time) *Service {
	if loc == nil {
		loc = time.UTC
	}
	if now == nil {
		now = time.Now
	}
	return &Service{st: st, loc: loc, now: now}
}

// Location is the time zone days are counted in.
func (s *Service) Location() *time.Location { return s.loc }

// List describes the reports, in name order.
func List() []Info {
	var out []Info
	for _, d := range definitions() {
		out = append(out, d.Info)
	}
	return out
}

func lookup(name string) (definition, error) {
	for _, d := range definitions() {
		if d.Name == name {
			return d, nil
		}
	}
	return definition{}, fmt.Errorf("%w: %q (have %s)", ErrUnknown, name, strings.Join(names(), ", "))
}

func names() []string {
	var n []string
	for _, d := range definitions() {
		n = append(n, d.Name)
	}
	return n
}

// Run writes report name for p to sink, streaming, inside one read-only
// transaction, and returns the totals it wrote.
func (s *Service) Run(ctx context.Context, name string, p Params, sink Sink) (map[string]int64, error) {
	d, err := lookup(name)
	if err != nil {
		return nil, err
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	for _, f := range []struct{ name, v string }{{"supply_group", p.SupplyGroup}, {"vendor", p.Vendor}, {"operator", p.Operator}} {
		if f.v != "" && !slices.Contains(d.Filters, f.name) {
			return nil, fieldErr(f.name, "report %s cannot be filtered by %s", name, strings.ReplaceAll(f.name, "_", " "))
		}
	}
	p.From, p.To = p.From.UTC(), p.To.UTC()
	totals := map[string]int64{}
	begun := false
	err = s.st.Read(ctx, func(tx store.Tx) error {
		// The store may run a transaction again after a transient
		// conflict; output already written cannot be taken back.
		if begun {
			return errRetried
		}
		begun = true
		if err := sink.Begin(Meta{Report: d.Name, Title: d.Title, Params: p, Columns: d.columns, Created: s.now().UTC()}); err != nil {
			return err
		}
		emit := func(vals ...any) error {
			if len(vals) != len(d.columns) {
				return fmt.Errorf("report %s: %d values for %d columns", d.Name, len(vals), len(d.columns))
			}
			for i, c := range d.columns {
				if c.Sum {
					totals[c.Name] += vals[i].(int64)
				}
			}
			return sink.Row(vals)
		}
		if err := d.run(ctx, s, tx, p, emit); err != nil {
			return err
		}
		return sink.End(totals)
	})
	if err != nil {
		return nil, err
	}
	return totals, nil
}

// day is the civil date of t in the service's zone.
func (s *Service) day(t time.Time) string { return t.In(s.loc).Format("2006-01-02") }
