package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"sluice/store"
)

// --- purchases

type purchases struct{ *tx }

const purchaseCols = `id, vendor_id, idempotency_key, request_hash, operator_id, meter_id, customer_id, tendered_cents, paid_cents, litres, state, response, created_at`

func scanPurchase(scan func(...any) error) (store.Purchase, error) {
	var p store.Purchase
	var customer sql.NullInt64
	var resp string
	var created int64
	err := scan(&p.ID, &p.VendorID, &p.IdempotencyKey, &p.RequestHash, &p.OperatorID, &p.MeterID, &customer,
		&p.TenderedCents, &p.PaidCents, &p.Litres, &p.State, &resp, &created)
	p.CustomerID, p.Response, p.CreatedAt = customer.Int64, []byte(resp), fromMicros(created)
	return p, err
}

func (r purchases) Start(ctx context.Context, vendorID int64, key, meterNumber string) (store.PurchaseStart, error) {
	var st store.PurchaseStart
	var err error
	// The meter's own columns are read under its lock (PostgreSQL reads a
	// locked row again if it changed while waiting). The key's use is
	// read from the statement's snapshot, possibly before a concurrent
	// purchase with the same key committed: the unique index refuses the
	// second Record (ErrKeyUsed), as it always settled that race.
	row := r.queryRow(ctx, `SELECT `+meterCols+`,
		EXISTS (SELECT 1 FROM purchases WHERE vendor_id = ? AND idempotency_key = ?), `+r.db.d.NextID("purchases")+`
		FROM meters WHERE number = ?`+r.db.d.ForUpdate, vendorID, key, meterNumber)
	st.Meter, err = scanMeter(func(dest ...any) error { return row.Scan(append(dest, &st.KeyUsed, &st.NextID)...) })
	if err != nil {
		return store.PurchaseStart{}, fmt.Errorf("meter %q: %w", meterNumber, r.db.wrap(err))
	}
	return st, nil
}

func (r purchases) Inputs(ctx context.Context, vendorID int64, m store.Meter, month string) (store.PurchaseInputs, error) {
	in := store.PurchaseInputs{Month: store.MeterMonth{MeterID: m.ID, Month: month}}
	var vCreated, cCreated, tUpdated int64
	var g struct {
		code, name, dkga, ea       sql.NullString
		baseDate, krn, ti, created sql.NullInt64
	}
	v, c := &in.Vendor, &in.Customer
	// The IDs are compared through CAST so that SQLite's planner does not
	// see an integer parameter: since 3.54 it estimates "col = ?" from
	// whether the value is 0 or 1 and re-prepares the statement whenever
	// the value bound changes to or from 0 or 1 (vendor 1, customer 1, meter
	// 1), a compile of this five-table join inside the single writer (2% of
	// the vend benchmark's CPU). The plan is the same look-ups by key.
	err := r.row(ctx, `SELECT v.id, v.code, v.name, v.float_cents, v.daily_limit_cents, v.disabled, v.created_at,
		c.id, c.account, c.name, c.address, c.phone, c.area, c.debt_cents, c.created_at,
		g.code, g.name, g.dkga, g.ea, g.base_date, g.krn, g.ti, g.created_at,
		t.updated_at,
		COALESCE(mm.paid_litres, 0), COALESCE(mm.free_issued, FALSE), COALESCE(mm.fixed_collected, 0)
		FROM vendors v
		JOIN customers c ON c.id = CAST(? AS BIGINT)
		JOIN tariffs t ON t.code = ?
		LEFT JOIN supply_groups g ON g.code = ?
		LEFT JOIN meter_months mm ON mm.meter_id = CAST(? AS BIGINT) AND mm.month = ?
		WHERE v.id = CAST(? AS BIGINT)`,
		[]any{nullID(m.CustomerID), m.TariffCode, nullString(m.SGC), m.ID, month, vendorID},
		&v.ID, &v.Code, &v.Name, &v.FloatCents, &v.DailyLimitCents, &v.Disabled, &vCreated,
		&c.ID, &c.Account, &c.Name, &c.Address, &c.Phone, &c.Area, &c.DebtCents, &cCreated,
		&g.code, &g.name, &g.dkga, &g.ea, &g.baseDate, &g.krn, &g.ti, &g.created,
		&tUpdated,
		&in.Month.PaidLitres, &in.Month.FreeIssued, &in.Month.FixedCollected)
	if err != nil {
		return store.PurchaseInputs{}, fmt.Errorf("vendor %d, customer %d, tariff %s of meter %s: %w", vendorID, m.CustomerID, m.TariffCode, m.Number, err)
	}
	v.CreatedAt, c.CreatedAt, in.TariffUpdatedAt = fromMicros(vCreated), fromMicros(cCreated), fromMicros(tUpdated)
	if g.code.Valid {
		in.SupplyGroup = store.SupplyGroup{Code: g.code.String, Name: g.name.String, DKGA: g.dkga.String, EA: g.ea.String,
			BaseDate: int(g.baseDate.Int64), KRN: int(g.krn.Int64), TI: int(g.ti.Int64), CreatedAt: fromMicros(g.created.Int64)}
	}
	return in, nil
}

// purchaseStep inserts p under the ID its Start reserved; ErrKeyUsed (and
// ErrConflict) when the vendor used p's idempotency key already.
func purchaseStep(p store.Purchase) step {
	if p.CreatedAt.IsZero() {
		p.CreatedAt = now()
	}
	return step{
		q: `INSERT INTO purchases (vendor_id, idempotency_key, request_hash, operator_id, meter_id, customer_id, tendered_cents, paid_cents, litres, state, response, created_at, id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		args: []any{p.VendorID, p.IdempotencyKey, p.RequestHash, p.OperatorID, p.MeterID, nullID(p.CustomerID), p.TenderedCents, p.PaidCents,
			p.Litres, p.State, string(p.Response), micros(p.CreatedAt), p.ID},
		done: func(_ int64, err error) error {
			if errors.Is(err, store.ErrConflict) {
				return fmt.Errorf("purchase %d: %w: %w", p.ID, store.ErrKeyUsed, err)
			}
			if err != nil {
				return fmt.Errorf("create purchase: %w", err)
			}
			return nil
		},
	}
}

func (r purchases) Record(ctx context.Context, rec store.PurchaseRecord) error {
	p := rec.Purchase
	if p.ID == 0 {
		return fmt.Errorf("record purchase: no ID reserved")
	}
	ss := []step{purchaseStep(p)}
	for i := range rec.Tokens {
		t := rec.Tokens[i]
		t.PurchaseID = p.ID
		ss = append(ss, tokenStep(&t))
	}
	ss = append(ss, meterUpdateStep(rec.Meter), monthPutStep(rec.Month))
	var seq int64
	ss = append(ss, ledgerSteps(rec.Ledger, &seq)...)
	ss = append(ss, auditStep(rec.Audit))
	var after int64
	ss = append(ss, floatStep(p.VendorID, -p.PaidCents, &after), daySalesStep(p.VendorID, rec.Day, p.PaidCents))
	if rec.DebtRecovered > 0 {
		ss = append(ss, debtStep(p.CustomerID, -rec.DebtRecovered))
	}
	return r.steps(ctx, ss)
}

func (r purchases) ByID(ctx context.Context, id int64) (store.Purchase, error) {
	return one(r.tx, ctx, fmt.Sprintf("purchase %d", id), scanPurchase, `SELECT `+purchaseCols+` FROM purchases WHERE id = ?`, id)
}

func (r purchases) ByKey(ctx context.Context, vendorID int64, key string) (store.Purchase, error) {
	return one(r.tx, ctx, "purchase by idempotency key", scanPurchase, `SELECT `+purchaseCols+` FROM purchases WHERE vendor_id = ? AND idempotency_key = ?`, vendorID, key)
}

func (r purchases) ByMeter(ctx context.Context, meterID int64, limit int) ([]store.Purchase, error) {
	return collect(r.tx, ctx, "purchases of meter", scanPurchase, `SELECT `+purchaseCols+` FROM purchases WHERE meter_id = ? ORDER BY created_at DESC, id DESC LIMIT ?`, meterID, limit)
}

func (r purchases) SetState(ctx context.Context, id int64, state string) error {
	res, err := r.exec(ctx, `UPDATE purchases SET state = ? WHERE id = ?`, state, id)
	if err != nil {
		return fmt.Errorf("purchase %d: %w", id, err)
	}
	return rowsAffected(res, fmt.Sprintf("purchase %d", id))
}

// --- tokens

type tokens struct{ *tx }

const tokenCols = `id, meter_id, purchase_id, request_id, ordinal, kind, class, subclass, tid, digits, voucher, voucher_seq, litres, created_at, delivered_at`

func scanToken(scan func(...any) error) (store.Token, error) {
	var t store.Token
	var purchase, request, tid, seq, delivered sql.NullInt64
	var digits sql.NullString
	var created int64
	err := scan(&t.ID, &t.MeterID, &purchase, &request, &t.Ordinal, &t.Kind, &t.Class, &t.Subclass, &tid, &digits, &t.Voucher, &seq, &t.Litres, &created, &delivered)
	t.PurchaseID, t.RequestID, t.TID, t.Digits, t.VoucherSeq = purchase.Int64, request.Int64, tid.Int64, digits.String, seq.Int64
	t.CreatedAt, t.DeliveredAt = fromMicros(created), fromMicros(delivered.Int64)
	return t, err
}

func (r tokens) Create(ctx context.Context, t store.Token) (store.Token, error) {
	if err := r.steps(ctx, []step{tokenStep(&t)}); err != nil {
		return store.Token{}, err
	}
	return t, nil
}

// tokenStep inserts t and sets its ID.
func tokenStep(t *store.Token) step {
	if t.CreatedAt.IsZero() {
		t.CreatedAt = now()
	}
	var tid any
	if t.Digits != "" && t.TID != 0 {
		tid = t.TID
	}
	return step{
		q: `INSERT INTO tokens (meter_id, purchase_id, request_id, ordinal, kind, class, subclass, tid, digits, voucher, voucher_seq, litres, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		args: []any{t.MeterID, nullID(t.PurchaseID), nullID(t.RequestID), t.Ordinal, t.Kind, t.Class, t.Subclass, tid, nullString(t.Digits),
			nullBytes(t.Voucher), nullID(t.VoucherSeq), t.Litres, micros(t.CreatedAt)},
		dest: []any{&t.ID},
		done: func(_ int64, err error) error {
			if err != nil {
				return fmt.Errorf("create token for meter %d: %w", t.MeterID, err)
			}
			return nil
		},
	}
}

func (r tokens) ByPurchase(ctx context.Context, purchaseID int64) ([]store.Token, error) {
	return collect(r.tx, ctx, "tokens of purchase", scanToken, `SELECT `+tokenCols+` FROM tokens WHERE purchase_id = ? ORDER BY ordinal`, purchaseID)
}

func (r tokens) ByMeter(ctx context.Context, meterID int64, limit int) ([]store.Token, error) {
	return collect(r.tx, ctx, "tokens of meter", scanToken, `SELECT `+tokenCols+` FROM tokens WHERE meter_id = ? ORDER BY id DESC LIMIT ?`, meterID, limit)
}

func (r tokens) MarkDelivered(ctx context.Context, meterID, voucherSeq int64, at time.Time) (bool, error) {
	res, err := r.exec(ctx, `UPDATE tokens SET delivered_at = ? WHERE meter_id = ? AND voucher_seq = ? AND delivered_at IS NULL`, micros(at), meterID, voucherSeq)
	if err != nil {
		return false, fmt.Errorf("voucher %d of meter %d: %w", voucherSeq, meterID, err)
	}
	n, _ := res.RowsAffected()
	if n == 1 {
		return true, nil
	}
	var exists int
	if err := r.row(ctx, `SELECT COUNT(*) FROM tokens WHERE meter_id = ? AND voucher_seq = ?`, []any{meterID, voucherSeq}, &exists); err != nil {
		return false, err
	}
	if exists == 0 {
		return false, fmt.Errorf("voucher %d of meter %d: %w", voucherSeq, meterID, store.ErrNotFound)
	}
	return false, nil
}

// --- ledger

type ledger struct{ *tx }

func (r ledger) Append(ctx context.Context, e store.LedgerEntry) (int64, error) {
	var seq int64
	if err := r.steps(ctx, ledgerSteps(e, &seq)); err != nil {
		return 0, err
	}
	return seq, nil
}

// ledgerSteps insert an entry, setting *seq, and its postings.
func ledgerSteps(e store.LedgerEntry, seq *int64) []step {
	if len(e.Tokens) == 0 {
		e.Tokens = []byte("[]")
	}
	ss := []step{{
		q:    `INSERT INTO ledger_entries (entry_id, type, purchase, reverses, at, tokens) VALUES (?, ?, ?, ?, ?, ?) RETURNING seq`,
		args: []any{e.ID, e.Type, e.Purchase, e.Reverses, e.Time.UnixMicro(), string(e.Tokens)},
		dest: []any{seq},
		done: func(_ int64, err error) error {
			if err != nil {
				return fmt.Errorf("ledger entry %s: %w", e.ID, err)
			}
			return nil
		},
	}}
	if len(e.Postings) == 0 {
		return ss
	}
	// One statement for all postings: a round trip each was a fifth of a
	// purchase's statements. Rows are inserted, and take their ids, in the
	// order given, which is the order scan returns them in. The entry's
	// seq is found by its ID, so that the statement needs nothing back
	// from the one before (they may be sent together).
	var q strings.Builder
	q.WriteString(`INSERT INTO ledger_postings (entry_seq, account, unit, amount) VALUES `)
	args := make([]any, 0, 4*len(e.Postings))
	for i, p := range e.Postings {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("((SELECT seq FROM ledger_entries WHERE entry_id = ?), ?, ?, ?)")
		args = append(args, e.ID, p.Account, p.Unit, p.Amount)
	}
	return append(ss, step{q: q.String(), args: args, done: func(_ int64, err error) error {
		if err != nil {
			return fmt.Errorf("ledger entry %s postings: %w", e.ID, err)
		}
		return nil
	}})
}

func (r ledger) ByID(ctx context.Context, id string) (store.LedgerEntry, error) {
	var found *store.LedgerEntry
	err := r.scan(ctx, `WHERE e.entry_id = ?`, []any{id}, func(e store.LedgerEntry) error { found = &e; return nil })
	if err != nil {
		return store.LedgerEntry{}, err
	}
	if found == nil {
		return store.LedgerEntry{}, fmt.Errorf("ledger entry %s: %w", id, store.ErrNotFound)
	}
	return *found, nil
}

func (r ledger) Each(ctx context.Context, fn func(store.LedgerEntry) error) error {
	return r.scan(ctx, "", nil, fn)
}

// scan streams entries with their postings, grouped, in commit order.
func (r ledger) scan(ctx context.Context, where string, args []any, fn func(store.LedgerEntry) error) error {
	rows, err := r.query(ctx, `SELECT e.seq, e.entry_id, e.type, e.purchase, e.reverses, e.at, e.tokens, p.account, p.unit, p.amount
		FROM ledger_entries e JOIN ledger_postings p ON p.entry_seq = e.seq `+where+` ORDER BY e.seq, p.id`, args...)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	defer rows.Close()
	var cur store.LedgerEntry
	for rows.Next() {
		var e store.LedgerEntry
		var at int64
		var toks string
		var p store.Posting
		if err := rows.Scan(&e.Seq, &e.ID, &e.Type, &e.Purchase, &e.Reverses, &at, &toks, &p.Account, &p.Unit, &p.Amount); err != nil {
			return fmt.Errorf("ledger: %w", r.db.wrap(err))
		}
		if e.Seq != cur.Seq {
			if cur.Seq != 0 {
				if err := fn(cur); err != nil {
					return err
				}
			}
			e.Time, e.Tokens = fromMicros(at), []byte(toks)
			cur = e
		}
		cur.Postings = append(cur.Postings, p)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("ledger: %w", r.db.wrap(err))
	}
	if cur.Seq != 0 {
		return fn(cur)
	}
	return nil
}

func (r ledger) Balance(ctx context.Context, account, unit string) (int64, error) {
	var b int64
	err := r.row(ctx, `SELECT COALESCE(SUM(amount), 0) FROM ledger_postings WHERE account = ? AND unit = ?`, []any{account, unit}, &b)
	return b, err
}

// --- credentials

type credentials struct{ *tx }

func (r credentials) CreateSession(ctx context.Context, s store.Session) error {
	_, err := r.exec(ctx, `INSERT INTO sessions (token_hash, operator_id, created_at, expires_at) VALUES (?, ?, ?, ?)`,
		s.TokenHash, s.OperatorID, micros(s.CreatedAt), micros(s.ExpiresAt))
	if err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	return nil
}

func (r credentials) Session(ctx context.Context, tokenHash []byte) (store.Session, error) {
	var s store.Session
	var created, expires int64
	err := r.row(ctx, `SELECT token_hash, operator_id, created_at, expires_at FROM sessions WHERE token_hash = ?`, []any{tokenHash},
		&s.TokenHash, &s.OperatorID, &created, &expires)
	s.CreatedAt, s.ExpiresAt = fromMicros(created), fromMicros(expires)
	if err != nil {
		return store.Session{}, fmt.Errorf("session: %w", err)
	}
	return s, nil
}

func (r credentials) DeleteSession(ctx context.Context, tokenHash []byte) error {
	_, err := r.exec(ctx, `DELETE FROM sessions WHERE token_hash = ?`, tokenHash)
	return err
}

func (r credentials) DeleteSessionsOf(ctx context.Context, operatorID int64) error {
	_, err := r.exec(ctx, `DELETE FROM sessions WHERE operator_id = ?`, operatorID)
	return err
}

const apiKeyCols = `id, key_hash, prefix, operator_id, label, created_at, revoked_at`

func scanAPIKey(scan func(...any) error) (store.APIKey, error) {
	var k store.APIKey
	var created int64
	var revoked sql.NullInt64
	err := scan(&k.ID, &k.KeyHash, &k.Prefix, &k.OperatorID, &k.Label, &created, &revoked)
	k.CreatedAt, k.RevokedAt = fromMicros(created), fromMicros(revoked.Int64)
	return k, err
}

func (r credentials) CreateAPIKey(ctx context.Context, k store.APIKey) (store.APIKey, error) {
	k.CreatedAt = now()
	err := r.row(ctx, `INSERT INTO api_keys (key_hash, prefix, operator_id, label, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id`,
		[]any{k.KeyHash, k.Prefix, k.OperatorID, k.Label, micros(k.CreatedAt)}, &k.ID)
	if err != nil {
		return store.APIKey{}, fmt.Errorf("create API key: %w", err)
	}
	return k, nil
}

func (r credentials) APIKeyOperator(ctx context.Context, keyHash []byte) (store.APIKey, store.Operator, error) {
	row := r.queryRow(ctx, `SELECT `+prefixCols("k.", apiKeyCols)+`, `+prefixCols("o.", operatorCols)+`
		FROM api_keys k JOIN operators o ON o.id = k.operator_id WHERE k.key_hash = ?`, keyHash)
	// One row, the key's columns then the operator's: each table's scanner
	// names its half of the destinations and finishes its struct, so the
	// join cannot drift from what ByID and APIKeys read.
	var o store.Operator
	k, err := scanAPIKey(func(kDest ...any) error {
		var err error
		o, err = scanOperator(func(oDest ...any) error { return row.Scan(append(kDest, oDest...)...) })
		return err
	})
	if err != nil {
		return store.APIKey{}, store.Operator{}, fmt.Errorf("API key: %w", r.db.wrap(err))
	}
	return k, o, nil
}

func (r credentials) APIKeys(ctx context.Context) ([]store.APIKey, error) {
	return collect(r.tx, ctx, "list API keys", scanAPIKey, `SELECT `+apiKeyCols+` FROM api_keys ORDER BY id`)
}

func (r credentials) RevokeAPIKey(ctx context.Context, id int64, at time.Time) error {
	res, err := r.exec(ctx, `UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, micros(at), id)
	if err != nil {
		return fmt.Errorf("revoke API key %d: %w", id, err)
	}
	return rowsAffected(res, fmt.Sprintf("active API key %d", id))
}

func (r credentials) RecordLoginFailure(ctx context.Context, username, remote string, at time.Time) error {
	_, err := r.exec(ctx, `INSERT INTO login_failures (username, remote, at) VALUES (?, ?, ?)`, username, remote, micros(at))
	return err
}

func (r credentials) LoginFailures(ctx context.Context, username, remote string, since time.Time) (int, int, error) {
	var byUser, byRemote int
	if err := r.row(ctx, `SELECT COUNT(*) FROM login_failures WHERE username = ? AND at >= ?`, []any{username, micros(since)}, &byUser); err != nil {
		return 0, 0, err
	}
	if err := r.row(ctx, `SELECT COUNT(*) FROM login_failures WHERE remote = ? AND at >= ?`, []any{remote, micros(since)}, &byRemote); err != nil {
		return 0, 0, err
	}
	return byUser, byRemote, nil
}

func (r credentials) ClearLoginFailures(ctx context.Context, username string) error {
	_, err := r.exec(ctx, `DELETE FROM login_failures WHERE username = ?`, username)
	return err
}

// --- engineering requests

type engRequests struct{ *tx }

const engCols = `id, meter_id, action, params, reason, state, requested_by, requested_at, decided_by, decided_at`

func scanEng(scan func(...any) error) (store.EngineeringRequest, error) {
	var e store.EngineeringRequest
	var params string
	var reqAt int64
	var by, at sql.NullInt64
	err := scan(&e.ID, &e.MeterID, &e.Action, &params, &e.Reason, &e.State, &e.RequestedBy, &reqAt, &by, &at)
	e.Params, e.RequestedAt, e.DecidedBy, e.DecidedAt = []byte(params), fromMicros(reqAt), by.Int64, fromMicros(at.Int64)
	return e, err
}

func (r engRequests) Create(ctx context.Context, e store.EngineeringRequest) (store.EngineeringRequest, error) {
	e.State, e.RequestedAt = store.RequestPending, now()
	err := r.row(ctx, `INSERT INTO engineering_requests (meter_id, action, params, reason, state, requested_by, requested_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		[]any{e.MeterID, e.Action, string(e.Params), e.Reason, e.State, e.RequestedBy, micros(e.RequestedAt)}, &e.ID)
	if err != nil {
		return store.EngineeringRequest{}, fmt.Errorf("create engineering request: %w", err)
	}
	return e, nil
}

func (r engRequests) ByID(ctx context.Context, id int64) (store.EngineeringRequest, error) {
	return one(r.tx, ctx, fmt.Sprintf("engineering request %d", id), scanEng, `SELECT `+engCols+` FROM engineering_requests WHERE id = ?`, id)
}

func (r engRequests) List(ctx context.Context, state string, limit int) ([]store.EngineeringRequest, error) {
	if state == "" {
		return collect(r.tx, ctx, "engineering requests", scanEng, `SELECT `+engCols+` FROM engineering_requests ORDER BY id DESC LIMIT ?`, limit)
	}
	return collect(r.tx, ctx, "engineering requests", scanEng, `SELECT `+engCols+` FROM engineering_requests WHERE state = ? ORDER BY id DESC LIMIT ?`, state, limit)
}

func (r engRequests) Decide(ctx context.Context, id int64, state string, by int64, at time.Time) error {
	res, err := r.exec(ctx, `UPDATE engineering_requests SET state = ?, decided_by = ?, decided_at = ? WHERE id = ? AND state = 'pending'`,
		state, by, micros(at), id)
	if err != nil {
		return fmt.Errorf("decide engineering request %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := r.ByID(ctx, id); err != nil {
			return err
		}
		return fmt.Errorf("engineering request %d is not pending: %w", id, store.ErrConflict)
	}
	return nil
}
