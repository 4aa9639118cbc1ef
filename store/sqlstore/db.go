// Package sqlstore implements the store interfaces once, over database/sql,
// for both SQLite and PostgreSQL. What differs between the two databases is
// gathered in a Dialect that each back-end package supplies.
//
// Queries are written with ? placeholders and rebound to $n for PostgreSQL.
// Times are stored as microseconds since the Unix epoch in BIGINT columns on
// both databases, so comparisons and indexes behave the same everywhere and
// no time zone ever enters the database.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"sluice/store"
)

// Dialect is what one database does differently.
type Dialect struct {
	// Name is sqlite or postgres.
	Name string
	// Dollar selects $1, $2... placeholders instead of ?.
	Dollar bool
	// Classify maps a driver error to store.ErrConflict or
	// store.ErrConstraint when it is one, or returns nil.
	Classify func(error) error
	// Retryable reports a transient error after which the whole
	// transaction may be run again (serialization failure, busy database).
	Retryable func(error) bool
	// Migrations holds NNNN_name.sql files, applied in order.
	Migrations fs.FS
	// MigrationLock, when set, runs first in the migration transaction to
	// keep concurrent replicas from migrating at once.
	MigrationLock string
	// ReadTx configures read-only transactions; nil means sql.DB.Begin.
	ReadTx *sql.TxOptions
	// ForUpdate is appended to a SELECT that locks the rows it reads
	// (PostgreSQL); SQLite's write transactions are exclusive already.
	ForUpdate string
	// SealerLock, when set, runs to serialise audit sealers across replicas.
	SealerLock string
	// GroupCommit lets concurrent write transactions share one commit
	// (see committer): for a database with a single writer connection.
	GroupCommit bool
	// CacheStatements keeps prepared statements (see stmtCache): for a
	// driver that does not cache them itself (pgx does).
	CacheStatements bool
	// Pipeline sends the steps of a multi-statement write together (see
	// step): for pgx, whose connections the transactions are begun on.
	Pipeline bool
	// NextID is an expression giving the ID the next row of table will
	// take, for a row that must know its ID before it is inserted.
	NextID func(table string) string
}

// DB is a store.Store over one database.
type DB struct {
	write, read *sql.DB
	d           Dialect
	closers     []func() error
	migrations  []migration
	rebound     sync.Map   // query text -> dialect text
	group       *committer // nil unless Dialect.GroupCommit
	// Prepared statements of the write and read pools, nil unless
	// Dialect.CacheStatements.
	wcache, rcache *stmtCache
}

var _ store.Store = (*DB)(nil)

// New wraps open database handles. read may be the same handle as write; a
// separate read pool lets SQLite serve readers beside its single writer.
func New(write, read *sql.DB, d Dialect) (*DB, error) {
	ms, err := loadMigrations(d.Migrations)
	if err != nil {
		return nil, err
	}
	db := &DB{write: write, read: read, d: d, migrations: ms}
	if d.GroupCommit {
		db.group = newCommitter(db)
	}
	if d.CacheStatements {
		db.wcache, db.rcache = newStmtCache(write), newStmtCache(read)
		if read == write {
			db.rcache = db.wcache
		}
	}
	return db, nil
}

// Driver names the database.
func (db *DB) Driver() string { return db.d.Name }

// SQL returns the read-write handle, for back-end specific work (backups,
// bulk loads) that the repositories do not cover.
func (db *DB) SQL() *sql.DB { return db.write }

// OnClose has Close run fn first, for work the back-end runs beside the
// pools (SQLite's checkpoints).
func (db *DB) OnClose(fn func() error) { db.closers = append(db.closers, fn) }

// Close stops what OnClose registered, then closes both pools.
func (db *DB) Close() error {
	var first error
	for _, fn := range db.closers {
		if err := fn(); err != nil && first == nil {
			first = err
		}
	}
	if db.wcache != nil {
		db.wcache.close()
		db.rcache.close()
	}
	err := db.write.Close()
	if db.read != db.write {
		if rerr := db.read.Close(); err == nil {
			err = rerr
		}
	}
	if first != nil {
		return first
	}
	return err
}

// maxAttempts bounds the retries of a transaction that keeps conflicting;
// past it the caller gets the error (and an HTTP client retries later).
const maxAttempts = 12

// Tx runs fn in a read-write transaction, retrying on transient conflicts.
func (db *DB) Tx(ctx context.Context, fn func(store.Tx) error) error {
	if db.group != nil {
		return db.retry(ctx, func() error { return db.group.do(ctx, fn) })
	}
	return db.run(ctx, db.write, nil, fn)
}

// Read runs fn in a read-only transaction.
func (db *DB) Read(ctx context.Context, fn func(store.Tx) error) error {
	return db.run(ctx, db.read, db.d.ReadTx, fn)
}

// Lookup runs fn on the read pool outside any transaction.
func (db *DB) Lookup(ctx context.Context, fn func(store.Tx) error) error {
	cache := db.cacheOf(db.read)
	return db.retry(ctx, func() error {
		if cache != nil {
			cache.prepare(ctx)
		}
		return fn(&tx{db: db, pool: db.read, cache: cache})
	})
}

func (db *DB) run(ctx context.Context, pool *sql.DB, opts *sql.TxOptions, fn func(store.Tx) error) error {
	return db.retry(ctx, func() error { return db.once(ctx, pool, opts, fn) })
}

// retry runs one transaction attempt until it succeeds, fails for good, or
// maxAttempts transient failures have passed.
func (db *DB) retry(ctx context.Context, once func() error) error {
	backoff := 2 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := once()
		if err == nil || attempt == maxAttempts || !db.d.Retryable(err) || ctx.Err() != nil {
			return err
		}
		// Full jitter keeps replicas that collided from colliding again.
		sleep := time.Duration(rand.Int64N(int64(backoff))) + time.Millisecond
		select {
		case <-time.After(sleep):
		case <-ctx.Done():
			return ctx.Err()
		}
		if backoff < 200*time.Millisecond {
			backoff *= 2
		}
	}
}

func (db *DB) once(ctx context.Context, pool *sql.DB, opts *sql.TxOptions, fn func(store.Tx) error) (err error) {
	cache := db.cacheOf(pool)
	if cache != nil {
		cache.prepare(ctx)
	}
	var conn *sql.Conn
	if db.d.Pipeline && opts == nil {
		// A pipeline is sent on the transaction's connection, which
		// database/sql gives access to only when the transaction is begun
		// on a connection taken for it.
		if conn, err = pool.Conn(ctx); err != nil {
			return fmt.Errorf("begin transaction: %w", db.wrap(err))
		}
		defer conn.Close()
	}
	var sqlTx *sql.Tx
	if conn != nil {
		sqlTx, err = conn.BeginTx(ctx, opts)
	} else {
		sqlTx, err = pool.BeginTx(ctx, opts)
	}
	if err != nil {
		return fmt.Errorf("begin transaction: %w", db.wrap(err))
	}
	t := &tx{db: db, tx: sqlTx, pool: pool, sqlConn: conn, cache: cache}
	defer func() {
		if p := recover(); p != nil {
			sqlTx.Rollback()
			panic(p)
		}
		if err != nil {
			sqlTx.Rollback()
		}
	}()
	if err = fn(t); err != nil {
		return err
	}
	if err = sqlTx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", db.wrap(err))
	}
	return nil
}

// wrap maps driver errors to the store's sentinels, keeping the original
// text for the log.
func (db *DB) wrap(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	if s := db.d.Classify(err); s != nil {
		return fmt.Errorf("%w: %v", s, err)
	}
	return err
}

// Retryable reports whether err (as returned by Tx) was a transient
// conflict, for callers that retry at a higher level.
func (db *DB) Retryable(err error) bool { return db.d.Retryable(err) }

// rebind turns ? placeholders into the dialect's form, caching the result.
func (db *DB) rebind(q string) string {
	if !db.d.Dollar {
		return q
	}
	if v, ok := db.rebound.Load(q); ok {
		return v.(string)
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteByte(q[i])
	}
	out := b.String()
	db.rebound.Store(q, out)
	return out
}

// cacheOf returns the statement cache of a pool, if statements are cached.
func (db *DB) cacheOf(pool *sql.DB) *stmtCache {
	switch {
	case db.wcache == nil:
		return nil
	case pool == db.write:
		return db.wcache
	case pool == db.read:
		return db.rcache
	}
	return nil
}

// tx is a store.Tx: a transaction, or for Lookup the read pool itself.
type tx struct {
	db   *DB
	tx   *sql.Tx // nil in a Lookup
	pool *sql.DB
	// sqlConn is the transaction's connection when the dialect pipelines.
	sqlConn *sql.Conn
	cache   *stmtCache // nil: statements are not cached
}

// querier is what *sql.Tx and *sql.DB have in common.
type querier interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

func (t *tx) conn() querier {
	if t.tx == nil {
		return t.pool
	}
	return t.tx
}

func (t *tx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	q = t.db.rebind(q)
	if s := t.stmt(ctx, q); s != nil {
		r, err := s.ExecContext(ctx, args...)
		return r, t.db.wrap(err)
	}
	r, err := t.conn().ExecContext(ctx, q, args...)
	return r, t.db.wrap(err)
}

func (t *tx) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	q = t.db.rebind(q)
	if s := t.stmt(ctx, q); s != nil {
		r, err := s.QueryContext(ctx, args...)
		return r, t.db.wrap(err)
	}
	r, err := t.conn().QueryContext(ctx, q, args...)
	return r, t.db.wrap(err)
}

// queryRow runs a query expected to return one row.
func (t *tx) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	q = t.db.rebind(q)
	if s := t.stmt(ctx, q); s != nil {
		return s.QueryRowContext(ctx, args...)
	}
	return t.conn().QueryRowContext(ctx, q, args...)
}

// row scans one row into dest, mapping no rows to store.ErrNotFound.
func (t *tx) row(ctx context.Context, q string, args []any, dest ...any) error {
	return t.db.wrap(t.queryRow(ctx, q, args...).Scan(dest...))
}

func (t *tx) Operators() store.Operators                     { return operators{t} }
func (t *tx) Settings() store.Settings                       { return settings{t} }
func (t *tx) Vendors() store.Vendors                         { return vendors{t} }
func (t *tx) SupplyGroups() store.SupplyGroups               { return supplyGroups{t} }
func (t *tx) Tariffs() store.Tariffs                         { return tariffs{t} }
func (t *tx) Customers() store.Customers                     { return customers{t} }
func (t *tx) Meters() store.Meters                           { return meters{t} }
func (t *tx) MeterMonths() store.MeterMonths                 { return meterMonths{t} }
func (t *tx) Purchases() store.Purchases                     { return purchases{t} }
func (t *tx) Tokens() store.Tokens                           { return tokens{t} }
func (t *tx) Ledger() store.Ledger                           { return ledger{t} }
func (t *tx) Audit() store.Audit                             { return auditLog{t} }
func (t *tx) Credentials() store.Credentials                 { return credentials{t} }
func (t *tx) EngineeringRequests() store.EngineeringRequests { return engRequests{t} }
func (t *tx) Telemetry() store.Telemetry                     { return telemetry{t} }
func (t *tx) Alerts() store.Alerts                           { return alerts{t} }
func (t *tx) Reports() store.Reports                         { return reports{t} }
func (t *tx) Channels() store.Channels                       { return channels{t} }
func (t *tx) Webhooks() store.Webhooks                       { return webhooks{t} }
func (t *tx) Campaigns() store.Campaigns                     { return campaigns{t} }

// nullID stores a zero ID as NULL (no reference).
func nullID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

// nullBytes stores an empty slice as NULL.
func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// nullString stores "" as NULL.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// rowsAffected maps an UPDATE that matched nothing to ErrNotFound.
func rowsAffected(res sql.Result, what string) error {
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return nil
}

// collect runs a query and scans every row with scan.
func collect[T any](t *tx, ctx context.Context, what string, scan func(func(...any) error) (T, error), q string, args ...any) ([]T, error) {
	rows, err := t.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, t.db.wrap(err))
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, t.db.wrap(err))
	}
	return out, nil
}

// one runs a query expected to return one row and scans it.
func one[T any](t *tx, ctx context.Context, what string, scan func(func(...any) error) (T, error), q string, args ...any) (T, error) {
	v, err := scan(t.queryRow(ctx, q, args...).Scan)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("%s: %w", what, t.db.wrap(err))
	}
	return v, nil
}

// micros stores a time; zero times are stored as 0.
func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// fromMicros reads a stored time back, in UTC.
func fromMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}
