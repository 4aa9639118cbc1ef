// Package postgres is the production store: PostgreSQL through
// github.com/jackc/pgx/v5.
//
// Several `sluice serve` replicas may share one database. Nothing here holds
// a lock in process memory: uniqueness and bounds are constraints, hot rows
// are updated with conditional UPDATE statements, and a transaction that
// loses a serialization race (SQLSTATE 40001, 40P01) is retried whole by the
// store. Migrations take a transaction-scoped advisory lock, so replicas
// starting together apply each migration once.
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"sluice/store"
	"sluice/store/sqlstore"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Open connects to the database at url (postgres://...). A search_path
// parameter in the URL selects a schema, which is how tests isolate runs.
func Open(ctx context.Context, url string, maxConns int) (*sqlstore.DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: database.url: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	migrations, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	s, err := sqlstore.New(db, db, Dialect(migrations))
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Dialect is PostgreSQL's side of sqlstore.
func Dialect(migrations fs.FS) sqlstore.Dialect {
	return sqlstore.Dialect{
		Name:       "postgres",
		Dollar:     true,
		Classify:   classify,
		Retryable:  retryable,
		Migrations: migrations,
		// An arbitrary constant that names Sluice's migrations.
		MigrationLock: `SELECT pg_advisory_xact_lock(20942)`,
		ReadTx:        &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead},
		ForUpdate:     " FOR UPDATE",
		SealerLock:    `SELECT pg_advisory_xact_lock(20943)`,
		// A value of the identity column's sequence is the table's and
		// nobody else's, whether or not the row is inserted.
		Pipeline: true,
		NextID:   func(table string) string { return `nextval(pg_get_serial_sequence('` + table + `', 'id'))` },
	}
}

func classify(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return nil
	}
	switch pe.Code {
	case "23505":
		return store.ErrConflict
	case "23514", "23503", "23502", "23P01":
		return store.ErrConstraint
	}
	return nil
}

func retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40001" || pe.Code == "40P01"
	}
	return false
}
