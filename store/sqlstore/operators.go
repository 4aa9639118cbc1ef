package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"sluice/store"
)

type operators struct{ *tx }

const operatorCols = `id, username, display_name, role, password_hash, must_change_password, disabled, vendor_id, created_at, updated_at`

func scanOperator(scan func(...any) error) (store.Operator, error) {
	var o store.Operator
	var created, updated int64
	var vendor sql.NullInt64
	err := scan(&o.ID, &o.Username, &o.DisplayName, &o.Role, &o.PasswordHash, &o.MustChangePassword, &o.Disabled, &vendor, &created, &updated)
	o.CreatedAt, o.UpdatedAt, o.VendorID = fromMicros(created), fromMicros(updated), vendor.Int64
	return o, err
}

func (r operators) Create(ctx context.Context, o store.Operator) (store.Operator, error) {
	now := time.Now().UTC().Truncate(time.Microsecond)
	o.CreatedAt, o.UpdatedAt = now, now
	err := r.row(ctx, `INSERT INTO operators (username, display_name, role, password_hash, must_change_password, disabled, vendor_id, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		[]any{o.Username, o.DisplayName, o.Role, o.PasswordHash, o.MustChangePassword, o.Disabled, nullID(o.VendorID), micros(now), micros(now)}, &o.ID)
	if err != nil {
		return store.Operator{}, fmt.Errorf("create operator %q: %w", o.Username, err)
	}
	return o, nil
}

func (r operators) ByID(ctx context.Context, id int64) (store.Operator, error) {
	return r.get(ctx, fmt.Sprintf("operator %d", id), `SELECT `+operatorCols+` FROM operators WHERE id = ?`, id)
}

func (r operators) ByUsername(ctx context.Context, username string) (store.Operator, error) {
	return r.get(ctx, fmt.Sprintf("operator %q", username), `SELECT `+operatorCols+` FROM operators WHERE username = ?`, username)
}

func (r operators) get(ctx context.Context, what, q string, arg any) (store.Operator, error) {
	o, err := scanOperator(r.queryRow(ctx, q, arg).Scan)
	if err != nil {
		return store.Operator{}, fmt.Errorf("%s: %w", what, r.db.wrap(err))
	}
	return o, nil
}

func (r operators) List(ctx context.Context) ([]store.Operator, error) {
	rows, err := r.query(ctx, `SELECT `+operatorCols+` FROM operators ORDER BY username`)
	if err != nil {
		return nil, fmt.Errorf("list operators: %w", err)
	}
	defer rows.Close()
	var out []store.Operator
	for rows.Next() {
		o, err := scanOperator(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("list operators: %w", r.db.wrap(err))
		}
		out = append(out, o)
	}
	return out, r.db.wrap(rows.Err())
}

func (r operators) Count(ctx context.Context) (int, error) {
	var n int
	if err := r.row(ctx, `SELECT COUNT(*) FROM operators`, nil, &n); err != nil {
		return 0, fmt.Errorf("count operators: %w", err)
	}
	return n, nil
}

func (r operators) Update(ctx context.Context, o store.Operator) error {
	res, err := r.exec(ctx, `UPDATE operators SET display_name = ?, role = ?, password_hash = ?, must_change_password = ?, disabled = ?, vendor_id = ?, updated_at = ?
		WHERE id = ?`, o.DisplayName, o.Role, o.PasswordHash, o.MustChangePassword, o.Disabled, nullID(o.VendorID), micros(time.Now()), o.ID)
	if err != nil {
		return fmt.Errorf("update operator %d: %w", o.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("update operator %d: %w", o.ID, store.ErrNotFound)
	}
	return nil
}

type settings struct{ *tx }

func (r settings) Get(ctx context.Context, key string) (string, error) {
	var v string
	if err := r.row(ctx, `SELECT value FROM settings WHERE key = ?`, []any{key}, &v); err != nil {
		return "", fmt.Errorf("setting %q: %w", key, err)
	}
	return v, nil
}

func (r settings) PutIfAbsent(ctx context.Context, key, value string) (string, error) {
	if _, err := r.exec(ctx, `INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING`, key, value); err != nil {
		return "", fmt.Errorf("setting %q: %w", key, err)
	}
	return r.Get(ctx, key)
}

func (r settings) Put(ctx context.Context, key, value string) error {
	if _, err := r.exec(ctx, `INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value); err != nil {
		return fmt.Errorf("setting %q: %w", key, err)
	}
	return nil
}
