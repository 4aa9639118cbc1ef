package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"math/bits"
	"strings"

	"sluice/store"
)

type auditLog struct{ *tx }

const auditCols = `id, at, actor, action, object, details, seq, prev_hash, hash, anchor`

func scanAudit(scan func(...any) error) (store.AuditRecord, error) {
	var a store.AuditRecord
	var at int64
	var seq sql.NullInt64
	err := scan(&a.ID, &at, &a.Actor, &a.Action, &a.Object, &a.Details, &seq, &a.PrevHash, &a.Hash, &a.Anchor)
	a.At, a.Seq = fromMicros(at), seq.Int64
	if a.Details == nil {
		a.Details = []byte{}
	}
	return a, err
}

func (r auditLog) Append(ctx context.Context, a store.AuditRecord) error {
	return r.steps(ctx, []step{auditStep(a)})
}

func auditStep(a store.AuditRecord) step {
	if a.Details == nil {
		a.Details = []byte{}
	}
	return step{
		q:    `INSERT INTO audit_log (at, actor, action, object, details) VALUES (?, ?, ?, ?, ?)`,
		args: []any{a.At.UnixMicro(), a.Actor, a.Action, a.Object, a.Details},
		done: func(_ int64, err error) error {
			if err != nil {
				return fmt.Errorf("audit %s: %w", a.Action, err)
			}
			return nil
		},
	}
}

func (r auditLog) Head(ctx context.Context) (store.AuditRecord, error) {
	return one(r.tx, ctx, "audit head", scanAudit, `SELECT `+auditCols+` FROM audit_log WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1`)
}

func (r auditLog) Pending(ctx context.Context, limit int) ([]store.AuditRecord, error) {
	return collect(r.tx, ctx, "pending audit", scanAudit, `SELECT `+auditCols+` FROM audit_log WHERE seq IS NULL ORDER BY id LIMIT ?`, limit)
}

// Seal stores the records' places in the chain with one statement per
// rowsPerStatement records, instead of one per record: the sealer's writes
// run in SQLite's single writer beside the purchases, and each statement on
// PostgreSQL is a round trip. A statement's text depends on its row count,
// so a short batch is padded with rows whose NULL id matches nothing, up to
// the next power of two: at most ten texts for the statement caches.
//
// Every record must still be pending (seq IS NULL), as with one statement
// each: if any is not, Seal fails and the caller's transaction rolls back,
// so a sealer that lost a race can never overwrite or fork the chain.
func (r auditLog) Seal(ctx context.Context, rs ...store.AuditRecord) error {
	for len(rs) > 0 {
		n := min(len(rs), rowsPerStatement)
		if err := r.seal(ctx, rs[:n]); err != nil {
			return err
		}
		rs = rs[n:]
	}
	return nil
}

func (r auditLog) seal(ctx context.Context, rs []store.AuditRecord) error {
	rows := 1 << bits.Len(uint(len(rs)-1))
	args := make([]any, 0, 5*rows)
	for _, a := range rs {
		args = append(args, a.ID, a.Seq, a.PrevHash, a.Hash, nullBytes(a.Anchor))
	}
	for range rows - len(rs) {
		args = append(args, nil, nil, nil, nil, nil)
	}
	res, err := r.exec(ctx, sealStatement(r.db.d.Name == "postgres", rows), args...)
	if err != nil {
		return fmt.Errorf("seal audit %d-%d: %w", rs[0].ID, rs[len(rs)-1].ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("seal audit %d-%d: %w", rs[0].ID, rs[len(rs)-1].ID, err)
	}
	if n != int64(len(rs)) {
		return fmt.Errorf("seal audit %d-%d: %d of %d records were pending: %w", rs[0].ID, rs[len(rs)-1].ID, n, len(rs), store.ErrNotFound)
	}
	return nil
}

// sealStatement is the UPDATE sealing rows records. VALUES names its
// columns column1... on both databases; PostgreSQL needs the parameters'
// types, which it would otherwise take as text. The unary + keeps
// "seq IS NULL" from choosing an index: SQLite (3.54) otherwise drives the
// join from the seq index, every pending record, and scans the whole VALUES
// list for each (rows x pending steps, measured at four times the CPU of
// one UPDATE per record), instead of looking each row up by id.
func sealStatement(postgres bool, rows int) string {
	row := "(?, ?, ?, ?, ?)"
	if postgres {
		row = "(?::bigint, ?::bigint, ?::bytea, ?::bytea, ?::bytea)"
	}
	return `UPDATE audit_log SET seq = v.column2, prev_hash = v.column3, hash = v.column4, anchor = v.column5 FROM (VALUES ` +
		strings.TrimSuffix(strings.Repeat(row+", ", rows), ", ") +
		`) AS v WHERE audit_log.id = v.column1 AND +audit_log.seq IS NULL`
}

func (r auditLog) Each(ctx context.Context, from int64, fn func(store.AuditRecord) error) error {
	rows, err := r.query(ctx, `SELECT `+auditCols+` FROM audit_log WHERE seq >= ? ORDER BY seq`, from)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		a, err := scanAudit(rows.Scan)
		if err != nil {
			return fmt.Errorf("audit: %w", r.db.wrap(err))
		}
		if err := fn(a); err != nil {
			return err
		}
	}
	return r.db.wrap(rows.Err())
}

func (r auditLog) CountPending(ctx context.Context) (int64, error) {
	var n int64
	return n, r.row(ctx, `SELECT COUNT(*) FROM audit_log WHERE seq IS NULL`, nil, &n)
}

func (r auditLog) LockSealer(ctx context.Context) error {
	if r.db.d.SealerLock == "" {
		return nil
	}
	_, err := r.exec(ctx, r.db.d.SealerLock)
	return err
}
