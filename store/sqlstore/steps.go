package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// A step is one statement of a write made of several, none of which needs
// the result of another in Go: a purchase's rows, for example. On
// PostgreSQL the steps go to the server together, as a pipeline (one round
// trip instead of one each); elsewhere they run one after another. The
// outcome is the same either way: the steps run in order in the
// transaction, and the first that fails ends the write (on PostgreSQL it
// also aborts the transaction, so nothing after it takes effect).
type step struct {
	q    string
	args []any
	// dest receives the one row the statement returns; nil for a
	// statement that returns none.
	dest []any
	// done maps the statement's outcome to the write's: n is the number of
	// rows affected (a statement with dest: 1, or err is ErrNotFound).
	// nil accepts any outcome without error.
	done func(n int64, err error) error
}

func (s step) finish(n int64, err error) error {
	if s.done == nil {
		return err
	}
	return s.done(n, err)
}

// steps runs ss in order and returns the first failure.
func (t *tx) steps(ctx context.Context, ss []step) error {
	if t.sqlConn != nil {
		return t.pipeline(ctx, ss)
	}
	for _, s := range ss {
		var n int64
		var err error
		if s.dest != nil {
			if err = t.row(ctx, s.q, s.args, s.dest...); err == nil {
				n = 1
			}
		} else {
			var res sql.Result
			if res, err = t.exec(ctx, s.q, s.args...); err == nil {
				n, _ = res.RowsAffected()
			}
		}
		if err := s.finish(n, err); err != nil {
			return err
		}
	}
	return nil
}

// pipeline sends ss as one pgx batch on the transaction's connection.
func (t *tx) pipeline(ctx context.Context, ss []step) error {
	return t.sqlConn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("pipeline: driver connection is %T, not pgx", dc)
		}
		var b pgx.Batch
		for _, s := range ss {
			b.Queue(t.db.rebind(s.q), s.args...)
		}
		br := sc.Conn().SendBatch(ctx, &b)
		var first error
		for _, s := range ss {
			var n int64
			var err error
			if s.dest != nil {
				if err = br.QueryRow().Scan(s.dest...); err == nil {
					n = 1
				}
			} else {
				var tag pgconn.CommandTag
				if tag, err = br.Exec(); err == nil {
					n = tag.RowsAffected()
				}
			}
			if err := s.finish(n, t.db.wrap(err)); err != nil {
				first = err
				break
			}
		}
		// Close reads what is left; after a failure the server has
		// aborted the transaction, and the caller rolls it back.
		if err := br.Close(); first == nil && err != nil {
			first = fmt.Errorf("pipeline: %w", t.db.wrap(err))
		}
		return first
	})
}
