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

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// likePrefix escapes q for a LIKE prefix match.
func likePrefix(q string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return strings.ToLower(r.Replace(q)) + "%"
}

// --- vendors

type vendors struct{ *tx }

const vendorCols = `id, code, name, float_cents, daily_limit_cents, disabled, created_at`

func scanVendor(scan func(...any) error) (store.Vendor, error) {
	var v store.Vendor
	var created int64
	err := scan(&v.ID, &v.Code, &v.Name, &v.FloatCents, &v.DailyLimitCents, &v.Disabled, &created)
	v.CreatedAt = fromMicros(created)
	return v, err
}

func (r vendors) Create(ctx context.Context, v store.Vendor) (store.Vendor, error) {
	v.CreatedAt = now()
	err := r.row(ctx, `INSERT INTO vendors (code, name, float_cents, daily_limit_cents, disabled, created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
		[]any{v.Code, v.Name, v.FloatCents, v.DailyLimitCents, v.Disabled, micros(v.CreatedAt)}, &v.ID)
	if err != nil {
		return store.Vendor{}, fmt.Errorf("create vendor %q: %w", v.Code, err)
	}
	return v, nil
}

func (r vendors) ByID(ctx context.Context, id int64) (store.Vendor, error) {
	return one(r.tx, ctx, fmt.Sprintf("vendor %d", id), scanVendor, `SELECT `+vendorCols+` FROM vendors WHERE id = ?`, id)
}

func (r vendors) ByCode(ctx context.Context, code string) (store.Vendor, error) {
	return one(r.tx, ctx, fmt.Sprintf("vendor %q", code), scanVendor, `SELECT `+vendorCols+` FROM vendors WHERE code = ?`, code)
}

func (r vendors) List(ctx context.Context) ([]store.Vendor, error) {
	return collect(r.tx, ctx, "list vendors", scanVendor, `SELECT `+vendorCols+` FROM vendors ORDER BY code`)
}

func (r vendors) Update(ctx context.Context, v store.Vendor) error {
	res, err := r.exec(ctx, `UPDATE vendors SET name = ?, daily_limit_cents = ?, disabled = ? WHERE id = ?`, v.Name, v.DailyLimitCents, v.Disabled, v.ID)
	if err != nil {
		return fmt.Errorf("update vendor %d: %w", v.ID, err)
	}
	return rowsAffected(res, fmt.Sprintf("vendor %d", v.ID))
}

func (r vendors) AdjustFloat(ctx context.Context, id, delta int64) (int64, error) {
	var after int64
	err := r.steps(ctx, []step{floatStep(id, delta, &after)})
	if errors.Is(err, store.ErrFloatShort) {
		if err := r.exists(ctx, id); err != nil {
			return 0, err
		}
	}
	return after, err
}

// floatStep adds delta to a vendor's float, setting *after; ErrFloatShort
// (and ErrConstraint) when it would go below zero, or when the vendor does
// not exist.
func floatStep(id, delta int64, after *int64) step {
	// One conditional statement: the check and the debit cannot be split by
	// a concurrent vend, on any replica. The CHECK constraint backs it up.
	return step{
		q:    `UPDATE vendors SET float_cents = float_cents + ? WHERE id = ? AND float_cents + ? >= 0 RETURNING float_cents`,
		args: []any{delta, id, delta},
		dest: []any{after},
		done: func(_ int64, err error) error {
			if isNotFound(err) {
				return fmt.Errorf("vendor %d float: %w: %w", id, store.ErrConstraint, store.ErrFloatShort)
			}
			if err != nil {
				return fmt.Errorf("vendor %d float: %w", id, err)
			}
			return nil
		},
	}
}

func (r vendors) exists(ctx context.Context, id int64) error {
	var n int
	if err := r.row(ctx, `SELECT COUNT(*) FROM vendors WHERE id = ?`, []any{id}, &n); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("vendor %d: %w", id, store.ErrNotFound)
	}
	return nil
}

// daySalesStep counts cents against a vendor's daily limit; ErrOverDailyLimit
// (and ErrConstraint) when the limit would be exceeded, or when the vendor
// does not exist.
func daySalesStep(id int64, day string, cents int64) step {
	// Insert-or-add with the limit in the statement, read from the vendor's
	// row: concurrent vends on several replicas cannot both pass it, and
	// nothing is read first. A first sale of the day inserts only within
	// the limit (the SELECT yields no row otherwise).
	var sold int64
	return step{
		q: `INSERT INTO vendor_days (vendor_id, day, sold_cents)
		SELECT id, CAST(? AS TEXT), CAST(? AS BIGINT) FROM vendors WHERE id = ? AND daily_limit_cents >= ?
		ON CONFLICT (vendor_id, day) DO UPDATE SET sold_cents = vendor_days.sold_cents + excluded.sold_cents
		WHERE vendor_days.sold_cents + excluded.sold_cents <= (SELECT daily_limit_cents FROM vendors WHERE id = excluded.vendor_id)
		RETURNING sold_cents`,
		args: []any{day, cents, id, cents},
		dest: []any{&sold},
		done: func(_ int64, err error) error {
			if isNotFound(err) {
				return fmt.Errorf("vendor %d daily limit: %w: %w", id, store.ErrConstraint, store.ErrOverDailyLimit)
			}
			if err != nil {
				return fmt.Errorf("vendor %d daily limit: %w", id, err)
			}
			return nil
		},
	}
}

func (r vendors) DaySales(ctx context.Context, id int64, day string) (int64, error) {
	var sold int64
	err := r.row(ctx, `SELECT COALESCE(SUM(sold_cents), 0) FROM vendor_days WHERE vendor_id = ? AND day = ?`, []any{id, day}, &sold)
	return sold, err
}

// --- supply groups

type supplyGroups struct{ *tx }

const supplyGroupCols = `code, name, dkga, ea, base_date, krn, ti, created_at`

func scanSupplyGroup(scan func(...any) error) (store.SupplyGroup, error) {
	var g store.SupplyGroup
	var created int64
	err := scan(&g.Code, &g.Name, &g.DKGA, &g.EA, &g.BaseDate, &g.KRN, &g.TI, &created)
	g.CreatedAt = fromMicros(created)
	return g, err
}

func (r supplyGroups) Create(ctx context.Context, g store.SupplyGroup) error {
	_, err := r.exec(ctx, `INSERT INTO supply_groups (`+supplyGroupCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		g.Code, g.Name, g.DKGA, g.EA, g.BaseDate, g.KRN, g.TI, micros(now()))
	if err != nil {
		return fmt.Errorf("create supply group %s: %w", g.Code, err)
	}
	return nil
}

func (r supplyGroups) Get(ctx context.Context, code string) (store.SupplyGroup, error) {
	return one(r.tx, ctx, "supply group "+code, scanSupplyGroup, `SELECT `+supplyGroupCols+` FROM supply_groups WHERE code = ?`, code)
}

func (r supplyGroups) List(ctx context.Context) ([]store.SupplyGroup, error) {
	return collect(r.tx, ctx, "list supply groups", scanSupplyGroup, `SELECT `+supplyGroupCols+` FROM supply_groups ORDER BY code`)
}

func (r supplyGroups) Update(ctx context.Context, g store.SupplyGroup) error {
	res, err := r.exec(ctx, `UPDATE supply_groups SET name = ?, dkga = ?, ea = ?, base_date = ?, krn = ?, ti = ? WHERE code = ?`,
		g.Name, g.DKGA, g.EA, g.BaseDate, g.KRN, g.TI, g.Code)
	if err != nil {
		return fmt.Errorf("update supply group %s: %w", g.Code, err)
	}
	return rowsAffected(res, "supply group "+g.Code)
}

// --- tariffs

type tariffs struct{ *tx }

func scanTariff(scan func(...any) error) (store.Tariff, error) {
	var t store.Tariff
	var def string
	var updated int64
	err := scan(&t.Code, &def, &updated)
	t.Definition, t.UpdatedAt = []byte(def), fromMicros(updated)
	return t, err
}

func (r tariffs) Put(ctx context.Context, t store.Tariff) error {
	_, err := r.exec(ctx, `INSERT INTO tariffs (code, definition, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (code) DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at`,
		t.Code, string(t.Definition), micros(now()))
	if err != nil {
		return fmt.Errorf("put tariff %s: %w", t.Code, err)
	}
	return nil
}

func (r tariffs) Get(ctx context.Context, code string) (store.Tariff, error) {
	return one(r.tx, ctx, "tariff "+code, scanTariff, `SELECT code, definition, updated_at FROM tariffs WHERE code = ?`, code)
}

func (r tariffs) List(ctx context.Context) ([]store.Tariff, error) {
	return collect(r.tx, ctx, "list tariffs", scanTariff, `SELECT code, definition, updated_at FROM tariffs ORDER BY code`)
}

// --- customers

type customers struct{ *tx }

const customerCols = `id, account, name, address, phone, area, debt_cents, created_at`

func scanCustomer(scan func(...any) error) (store.Customer, error) {
	var c store.Customer
	var created int64
	err := scan(&c.ID, &c.Account, &c.Name, &c.Address, &c.Phone, &c.Area, &c.DebtCents, &created)
	c.CreatedAt = fromMicros(created)
	return c, err
}

func (r customers) Create(ctx context.Context, c store.Customer) (store.Customer, error) {
	c.CreatedAt = now()
	err := r.row(ctx, `INSERT INTO customers (account, name, address, phone, area, debt_cents, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		[]any{c.Account, c.Name, c.Address, c.Phone, c.Area, c.DebtCents, micros(c.CreatedAt)}, &c.ID)
	if err != nil {
		return store.Customer{}, fmt.Errorf("create customer %q: %w", c.Account, err)
	}
	return c, nil
}

func (r customers) ByID(ctx context.Context, id int64) (store.Customer, error) {
	return one(r.tx, ctx, fmt.Sprintf("customer %d", id), scanCustomer, `SELECT `+customerCols+` FROM customers WHERE id = ?`, id)
}

func (r customers) ByAccount(ctx context.Context, account string) (store.Customer, error) {
	return one(r.tx, ctx, fmt.Sprintf("customer %q", account), scanCustomer, `SELECT `+customerCols+` FROM customers WHERE account = ?`, account)
}

func (r customers) Search(ctx context.Context, q string, limit int) ([]store.Customer, error) {
	p := likePrefix(q)
	return collect(r.tx, ctx, "search customers", scanCustomer, `SELECT `+customerCols+` FROM customers
		WHERE lower(account) LIKE ? ESCAPE '\' OR lower(name) LIKE ? ESCAPE '\' OR phone LIKE ? ESCAPE '\'
		ORDER BY name, account LIMIT ?`, p, p, p, limit)
}

func (r customers) Update(ctx context.Context, c store.Customer) error {
	res, err := r.exec(ctx, `UPDATE customers SET name = ?, address = ?, phone = ?, area = ?, debt_cents = ? WHERE id = ?`,
		c.Name, c.Address, c.Phone, c.Area, c.DebtCents, c.ID)
	if err != nil {
		return fmt.Errorf("update customer %d: %w", c.ID, err)
	}
	return rowsAffected(res, fmt.Sprintf("customer %d", c.ID))
}

func (r customers) AdjustDebt(ctx context.Context, id, delta int64) error {
	return r.steps(ctx, []step{debtStep(id, delta)})
}

func debtStep(id, delta int64) step {
	return step{
		q:    `UPDATE customers SET debt_cents = debt_cents + ? WHERE id = ?`,
		args: []any{delta, id},
		done: func(n int64, err error) error {
			if err != nil {
				return fmt.Errorf("customer %d debt: %w", id, err)
			}
			if n == 0 {
				return fmt.Errorf("customer %d: %w", id, store.ErrNotFound)
			}
			return nil
		},
	}
}

// --- meters

type meters struct{ *tx }

const meterCols = `id, number, kind, customer_id, tariff_code, area, sgc, krn, ti, kt, base_date, last_tid, voucher_seq, key_version, key_root_version, provision_counter, provision_identity, status, created_at`

func scanMeter(scan func(...any) error) (store.Meter, error) {
	var m store.Meter
	var customer sql.NullInt64
	var sgc sql.NullString
	var created int64
	err := scan(&m.ID, &m.Number, &m.Kind, &customer, &m.TariffCode, &m.Area, &sgc, &m.KRN, &m.TI, &m.KT, &m.BaseDate,
		&m.LastTID, &m.VoucherSeq, &m.KeyVersion, &m.RootVersion, &m.ProvisionCounter, &m.ProvisionIdentity, &m.Status, &created)
	m.CustomerID, m.SGC, m.CreatedAt = customer.Int64, sgc.String, fromMicros(created)
	return m, err
}

func (r meters) Create(ctx context.Context, m store.Meter) (store.Meter, error) {
	m.CreatedAt = now()
	if m.Status == "" {
		m.Status = "active"
	}
	if m.KeyVersion == 0 {
		m.KeyVersion = 1
	}
	if m.RootVersion == 0 {
		m.RootVersion = 1
	}
	err := r.row(ctx, `INSERT INTO meters (number, kind, customer_id, tariff_code, area, sgc, krn, ti, kt, base_date, last_tid, voucher_seq, key_version, key_root_version, provision_counter, status, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		[]any{m.Number, m.Kind, nullID(m.CustomerID), m.TariffCode, m.Area, nullString(m.SGC), m.KRN, m.TI, m.KT, m.BaseDate,
			m.LastTID, m.VoucherSeq, m.KeyVersion, m.RootVersion, m.ProvisionCounter, m.Status, micros(m.CreatedAt)}, &m.ID)
	if err != nil {
		return store.Meter{}, fmt.Errorf("create meter %q: %w", m.Number, err)
	}
	return m, nil
}

func (r meters) ByID(ctx context.Context, id int64) (store.Meter, error) {
	return one(r.tx, ctx, fmt.Sprintf("meter %d", id), scanMeter, `SELECT `+meterCols+` FROM meters WHERE id = ?`, id)
}

func (r meters) ByNumber(ctx context.Context, number string) (store.Meter, error) {
	return one(r.tx, ctx, fmt.Sprintf("meter %q", number), scanMeter, `SELECT `+meterCols+` FROM meters WHERE number = ?`, number)
}

func (r meters) ForUpdate(ctx context.Context, id int64) (store.Meter, error) {
	return one(r.tx, ctx, fmt.Sprintf("meter %d", id), scanMeter, `SELECT `+meterCols+` FROM meters WHERE id = ?`+r.db.d.ForUpdate, id)
}

func (r meters) Search(ctx context.Context, q string, limit int) ([]store.Meter, error) {
	p := likePrefix(q)
	return collect(r.tx, ctx, "search meters", scanMeter, `SELECT `+prefixCols("m.", meterCols)+` FROM meters m
		LEFT JOIN customers c ON c.id = m.customer_id
		WHERE m.number LIKE ? ESCAPE '\' OR lower(c.account) LIKE ? ESCAPE '\' OR lower(c.name) LIKE ? ESCAPE '\'
		ORDER BY m.number LIMIT ?`, p, p, p, limit)
}

func (r meters) ByCustomer(ctx context.Context, customerID int64) ([]store.Meter, error) {
	return collect(r.tx, ctx, "meters of customer", scanMeter, `SELECT `+meterCols+` FROM meters WHERE customer_id = ? ORDER BY number`, customerID)
}

// Provisioned records that provisioning record counter was issued to the
// meter's board identity with keys under root version root. The update is
// conditional on the counter being above the stored one, so two issuers
// racing for one meter (two replicas, two clerks) cannot both hand out the
// same counter, and a board check made on the row as read still holds.
func (r meters) Provisioned(ctx context.Context, id int64, root int, counter int64, identity []byte) error {
	res, err := r.exec(ctx, `UPDATE meters SET key_root_version = ?, provision_counter = ?, provision_identity = ? WHERE id = ? AND provision_counter < ?`,
		root, counter, identity, id, counter)
	if err != nil {
		return fmt.Errorf("meter %d provisioned: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("meter %d: provisioning counter %d not above the last one: %w", id, counter, store.ErrConflict)
	}
	return nil
}

func (r meters) Update(ctx context.Context, m store.Meter) error {
	return r.steps(ctx, []step{meterUpdateStep(m)})
}

func meterUpdateStep(m store.Meter) step {
	return step{
		q: `UPDATE meters SET customer_id = ?, tariff_code = ?, area = ?, sgc = ?, krn = ?, ti = ?, kt = ?, base_date = ?,
		last_tid = ?, voucher_seq = ?, key_version = ?, status = ? WHERE id = ?`,
		args: []any{nullID(m.CustomerID), m.TariffCode, m.Area, nullString(m.SGC), m.KRN, m.TI, m.KT, m.BaseDate, m.LastTID, m.VoucherSeq, m.KeyVersion, m.Status, m.ID},
		done: func(n int64, err error) error {
			if err != nil {
				return fmt.Errorf("update meter %d: %w", m.ID, err)
			}
			if n == 0 {
				return fmt.Errorf("meter %d: %w", m.ID, store.ErrNotFound)
			}
			return nil
		},
	}
}

func (r meters) Count(ctx context.Context) (int64, error) {
	var n int64
	return n, r.row(ctx, `SELECT COUNT(*) FROM meters`, nil, &n)
}

// prefixCols qualifies a column list with a table alias.
func prefixCols(alias, cols string) string {
	parts := strings.Split(cols, ", ")
	for i, p := range parts {
		parts[i] = alias + p
	}
	return strings.Join(parts, ", ")
}

// --- meter months

type meterMonths struct{ *tx }

func (r meterMonths) Get(ctx context.Context, meterID int64, month string) (store.MeterMonth, error) {
	m := store.MeterMonth{MeterID: meterID, Month: month}
	err := r.row(ctx, `SELECT paid_litres, free_issued, fixed_collected FROM meter_months WHERE meter_id = ? AND month = ?`,
		[]any{meterID, month}, &m.PaidLitres, &m.FreeIssued, &m.FixedCollected)
	if err != nil && !isNotFound(err) {
		return m, fmt.Errorf("meter %d month %s: %w", meterID, month, err)
	}
	return m, nil
}

func (r meterMonths) Put(ctx context.Context, m store.MeterMonth) error {
	return r.steps(ctx, []step{monthPutStep(m)})
}

func monthPutStep(m store.MeterMonth) step {
	return step{
		q: `INSERT INTO meter_months (meter_id, month, paid_litres, free_issued, fixed_collected) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (meter_id, month) DO UPDATE SET paid_litres = excluded.paid_litres, free_issued = excluded.free_issued, fixed_collected = excluded.fixed_collected`,
		args: []any{m.MeterID, m.Month, m.PaidLitres, m.FreeIssued, m.FixedCollected},
		done: func(_ int64, err error) error {
			if err != nil {
				return fmt.Errorf("meter %d month %s: %w", m.MeterID, m.Month, err)
			}
			return nil
		},
	}
}
