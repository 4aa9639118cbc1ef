package sqlstore

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"sluice/store"
)

// --- reports: read-only streaming queries (package report)

type reports struct{ *tx }

// Every report query starts from an indexed time range (ledger_entries_at,
// tokens_created) or an indexed account prefix (ledger_postings_account_unit)
// and reaches other tables by primary key; Explain shows the plans and a
// test asserts that no large table is scanned whole.
const (
	salesQuery = `SELECT e.seq, e.entry_id, e.type, e.at, p.id, v.code, o.username, m.number, m.kind, COALESCE(m.sgc, ''), m.area,
		p.state, p.tendered_cents, p.paid_cents, p.response
	FROM ledger_entries e
	JOIN purchases p ON p.id = CAST(e.purchase AS BIGINT)
	JOIN vendors v ON v.id = p.vendor_id
	JOIN operators o ON o.id = p.operator_id
	JOIN meters m ON m.id = p.meter_id
	WHERE e.at >= ? AND e.at < ? AND e.type IN ('purchase', 'reversal') AND e.purchase <> ''
		AND (? = '' OR v.code = ?) AND (? = '' OR o.username = ?) AND (? = '' OR m.sgc = ?)
	ORDER BY e.at, e.seq`

	postingsQuery = `SELECT e.seq, e.entry_id, e.type, e.at, p.account, p.unit, p.amount
	FROM ledger_entries e JOIN ledger_postings p ON p.entry_seq = e.seq
	WHERE e.at >= ? AND e.at < ? AND p.account >= ? AND p.account < ?
	ORDER BY e.at, e.seq, p.id`

	balancesQuery = `SELECT p.account, p.unit, SUM(p.amount)
	FROM ledger_postings p JOIN ledger_entries e ON e.seq = p.entry_seq
	WHERE p.account >= ? AND p.account < ? AND e.at < ?
	GROUP BY p.account, p.unit ORDER BY p.account, p.unit`

	tokensQuery = `SELECT t.created_at, t.kind, m.number, COALESCE(m.sgc, ''), COALESCE(v.code, ''), COALESCE(o.username, 'campaign:' || k.name, ''),
		COALESCE(t.purchase_id, 0), COALESCE(t.request_id, 0), t.litres
	FROM tokens t
	JOIN meters m ON m.id = t.meter_id
	LEFT JOIN purchases p ON p.id = t.purchase_id
	LEFT JOIN vendors v ON v.id = p.vendor_id
	LEFT JOIN engineering_requests r ON r.id = t.request_id
	LEFT JOIN operators o ON o.id = COALESCE(p.operator_id, r.decided_by)
	LEFT JOIN key_campaigns k ON k.id = t.campaign_id
	WHERE t.created_at >= ? AND t.created_at < ?
		AND (? = '' OR v.code = ?) AND (? = '' OR o.username = ?) AND (? = '' OR m.sgc = ?)
	ORDER BY t.created_at, t.id`

	readingsQuery = `SELECT r.meter_id, m.number, COALESCE(m.sgc, ''), m.area, r.time, r.forward, r.reverse
	FROM readings r JOIN meters m ON m.id = r.meter_id
	WHERE r.time >= ? AND r.time < ? AND (? = '' OR m.sgc = ?)
	ORDER BY r.meter_id, r.time`

	// Two index ranges, not one OR: unresolved alerts by state, resolved
	// ones by state and resolution time.
	alertsQuery = `SELECT ` + alertReportCols + ` FROM alerts a LEFT JOIN meters m ON m.id = a.meter_id
	WHERE a.state IN ('open', 'acknowledged') AND a.first_at < ? AND (? = '' OR m.sgc = ?)
	UNION ALL
	SELECT ` + alertReportCols + ` FROM alerts a LEFT JOIN meters m ON m.id = a.meter_id
	WHERE a.state = 'resolved' AND a.resolved_at >= ? AND a.first_at < ? AND (? = '' OR m.sgc = ?)`

	alertReportCols = `a.id, a.subject, COALESCE(a.meter_id, 0), a.rule, a.severity, a.state, a.summary, a.details, a.first_at, a.last_at, a.count,
		a.acked_by, a.acked_at, a.resolved_by, a.resolved_at, a.note`
)

func alertArgs(f store.ReportFilter) []any {
	return []any{micros(f.To), f.SupplyGroup, f.SupplyGroup, micros(f.From), micros(f.To), f.SupplyGroup, f.SupplyGroup}
}

func filterArgs(f store.ReportFilter) []any {
	return []any{micros(f.From), micros(f.To), f.Vendor, f.Vendor, f.Operator, f.Operator, f.SupplyGroup, f.SupplyGroup}
}

// prefixRange turns an account prefix into a half-open string range, which
// both databases answer from the index (LIKE would not, on PostgreSQL with a
// non-C collation or SQLite with case-insensitive LIKE).
func prefixRange(prefix string) (lo, hi string) {
	if prefix == "" {
		return "", "\U0010FFFF"
	}
	b := []byte(prefix)
	b[len(b)-1]++
	return prefix, string(b)
}

func (r reports) Sales(ctx context.Context, f store.ReportFilter, fn func(store.SaleRow) error) error {
	rows, err := r.query(ctx, salesQuery, filterArgs(f)...)
	if err != nil {
		return fmt.Errorf("sales report: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var s store.SaleRow
		var typ, resp string
		var at int64
		if err := rows.Scan(&s.EntrySeq, &s.EntryID, &typ, &at, &s.PurchaseID, &s.Vendor, &s.Operator, &s.Meter, &s.MeterKind,
			&s.SupplyGroup, &s.Area, &s.State, &s.Tendered, &s.Paid, &resp); err != nil {
			return fmt.Errorf("sales report: %w", r.db.wrap(err))
		}
		s.At, s.Receipt, s.Sign = fromMicros(at), []byte(resp), 1
		if typ == "reversal" {
			s.Sign = -1
		}
		if err := fn(s); err != nil {
			return err
		}
	}
	return r.db.wrap(rows.Err())
}

func (r reports) Postings(ctx context.Context, f store.ReportFilter, prefix string, fn func(store.PostingRow) error) error {
	lo, hi := prefixRange(prefix)
	rows, err := r.query(ctx, postingsQuery, micros(f.From), micros(f.To), lo, hi)
	if err != nil {
		return fmt.Errorf("postings report: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var p store.PostingRow
		var at int64
		if err := rows.Scan(&p.EntrySeq, &p.EntryID, &p.EntryType, &at, &p.Account, &p.Unit, &p.Amount); err != nil {
			return fmt.Errorf("postings report: %w", r.db.wrap(err))
		}
		p.At = fromMicros(at)
		if err := fn(p); err != nil {
			return err
		}
	}
	return r.db.wrap(rows.Err())
}

func (r reports) Balances(ctx context.Context, prefix string, before time.Time, fn func(account, unit string, amount int64) error) error {
	lo, hi := prefixRange(prefix)
	rows, err := r.query(ctx, balancesQuery, lo, hi, micros(before))
	if err != nil {
		return fmt.Errorf("balances: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var account, unit string
		var amount int64
		if err := rows.Scan(&account, &unit, &amount); err != nil {
			return fmt.Errorf("balances: %w", r.db.wrap(err))
		}
		if err := fn(account, unit, amount); err != nil {
			return err
		}
	}
	return r.db.wrap(rows.Err())
}

func (r reports) Tokens(ctx context.Context, f store.ReportFilter, fn func(store.TokenReportRow) error) error {
	rows, err := r.query(ctx, tokensQuery, filterArgs(f)...)
	if err != nil {
		return fmt.Errorf("token report: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var t store.TokenReportRow
		var at int64
		if err := rows.Scan(&at, &t.Kind, &t.Meter, &t.SupplyGroup, &t.Vendor, &t.Operator, &t.PurchaseID, &t.RequestID, &t.Litres); err != nil {
			return fmt.Errorf("token report: %w", r.db.wrap(err))
		}
		t.At = fromMicros(at)
		if err := fn(t); err != nil {
			return err
		}
	}
	return r.db.wrap(rows.Err())
}

func (r reports) Readings(ctx context.Context, f store.ReportFilter, fn func(store.ReadingRow) error) error {
	rows, err := r.query(ctx, readingsQuery, micros(f.From), micros(f.To), f.SupplyGroup, f.SupplyGroup)
	if err != nil {
		return fmt.Errorf("readings report: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var x store.ReadingRow
		var at int64
		if err := rows.Scan(&x.MeterID, &x.Meter, &x.SupplyGroup, &x.Area, &at, &x.Forward, &x.Reverse); err != nil {
			return fmt.Errorf("readings report: %w", r.db.wrap(err))
		}
		x.Time = fromMicros(at)
		if err := fn(x); err != nil {
			return err
		}
	}
	return r.db.wrap(rows.Err())
}

func (r reports) Alerts(ctx context.Context, f store.ReportFilter, fn func(store.Alert) error) error {
	rows, err := r.query(ctx, alertsQuery, alertArgs(f)...)
	if err != nil {
		return fmt.Errorf("alerts report: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a store.Alert
		var details string
		var first, last, acked, resolved int64
		if err := rows.Scan(&a.ID, &a.Subject, &a.MeterID, &a.Rule, &a.Severity, &a.State, &a.Summary, &details, &first, &last, &a.Count,
			&a.AckedBy, &acked, &a.ResolvedBy, &resolved, &a.Note); err != nil {
			return fmt.Errorf("alerts report: %w", r.db.wrap(err))
		}
		a.Details, a.FirstAt, a.LastAt, a.AckedAt, a.ResolvedAt = []byte(details), fromMicros(first), fromMicros(last), fromMicros(acked), fromMicros(resolved)
		if err := fn(a); err != nil {
			return err
		}
	}
	return r.db.wrap(rows.Err())
}

// Explain plans every report query with representative arguments. On
// PostgreSQL sequential scans are disabled for the transaction first: on a
// small table the planner rightly prefers them, and what a test must show is
// that an index path exists (a query without one still plans a Seq Scan).
func (r reports) Explain(ctx context.Context) (map[string]string, error) {
	lo, hi := prefixRange("float:")
	f := filterArgs(store.ReportFilter{From: time.Unix(1, 0), To: time.Unix(2, 0), Vendor: "V", Operator: "o", SupplyGroup: "123456"})
	queries := map[string]struct {
		q    string
		args []any
	}{
		"sales":    {salesQuery, f},
		"postings": {postingsQuery, []any{f[0], f[1], lo, hi}},
		"balances": {balancesQuery, []any{lo, hi, f[0]}},
		"tokens":   {tokensQuery, f},
		"readings": {readingsQuery, []any{f[0], f[1], f[6], f[7]}},
		"alerts":   {alertsQuery, alertArgs(store.ReportFilter{From: time.Unix(1, 0), To: time.Unix(2, 0), SupplyGroup: "123456"})},
	}
	prefix := "EXPLAIN QUERY PLAN "
	if r.db.d.Name == "postgres" {
		prefix = "EXPLAIN "
		if _, err := r.exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
			return nil, fmt.Errorf("explain: %w", err)
		}
	}
	names := make([]string, 0, len(queries))
	for n := range queries {
		names = append(names, n)
	}
	sort.Strings(names)
	out := map[string]string{}
	for _, name := range names {
		q := queries[name]
		rows, err := r.query(ctx, prefix+q.q, q.args...)
		if err != nil {
			return nil, fmt.Errorf("explain %s: %w", name, err)
		}
		cols, _ := rows.Columns()
		var lines []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return nil, fmt.Errorf("explain %s: %w", name, err)
			}
			lines = append(lines, fmt.Sprint(vals[len(vals)-1]))
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("explain %s: %w", name, err)
		}
		out[name] = strings.Join(lines, "\n")
	}
	return out, nil
}
