package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"sluice/store"
)

type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads NNNN_name.sql files; versions must run 1, 2, 3...
// with no gap, so a missing file is caught before anything runs.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, rest, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migrations: %s: name must be NNNN_description.sql", name)
		}
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("migrations: %w", err)
		}
		ms = append(ms, migration{version: v, name: strings.TrimSuffix(rest, ".sql"), sql: string(body)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migrations: expected version %d, found %d (%s)", i+1, m.version, m.name)
		}
	}
	return ms, nil
}

const migrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	name       TEXT NOT NULL,
	applied_at BIGINT NOT NULL
)`

// Migrate applies the pending migrations, each in its own transaction so a
// failure leaves the schema at the last good version.
func (db *DB) Migrate(ctx context.Context) (int, error) {
	ran := 0
	for _, m := range db.migrations {
		applied, err := db.applyOne(ctx, m)
		if err != nil {
			return ran, fmt.Errorf("migrate: %04d_%s: %w", m.version, m.name, err)
		}
		if applied {
			ran++
		}
	}
	return ran, nil
}

func (db *DB) applyOne(ctx context.Context, m migration) (bool, error) {
	sqlTx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer sqlTx.Rollback()
	if db.d.MigrationLock != "" {
		if _, err := sqlTx.ExecContext(ctx, db.d.MigrationLock); err != nil {
			return false, fmt.Errorf("lock: %w", err)
		}
	}
	// Created under the lock: CREATE TABLE IF NOT EXISTS races on
	// PostgreSQL when replicas run it at once.
	if _, err := sqlTx.ExecContext(ctx, migrationsTable); err != nil {
		return false, fmt.Errorf("create schema_migrations: %w", err)
	}
	var n int
	q := db.rebind(`SELECT COUNT(*) FROM schema_migrations WHERE version = ?`)
	if err := sqlTx.QueryRowContext(ctx, q, m.version).Scan(&n); err != nil {
		return false, err
	}
	if n > 0 {
		return false, nil
	}
	if _, err := sqlTx.ExecContext(ctx, m.sql); err != nil {
		return false, err
	}
	q = db.rebind(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`)
	if _, err := sqlTx.ExecContext(ctx, q, m.version, m.name, time.Now().UnixMicro()); err != nil {
		return false, err
	}
	return true, sqlTx.Commit()
}

// SchemaVersion returns the highest applied migration and the latest this
// binary knows.
func (db *DB) SchemaVersion(ctx context.Context) (applied, latest int, err error) {
	latest = len(db.migrations)
	var v sql.NullInt64
	err = db.read.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v)
	if err != nil {
		// A database never migrated has no table yet: version 0.
		if db.d.Classify(err) == nil && isMissingTable(err) {
			return 0, latest, nil
		}
		return 0, latest, err
	}
	return int(v.Int64), latest, nil
}

func isMissingTable(err error) bool {
	s := err.Error()
	return strings.Contains(s, "no such table") || strings.Contains(s, "does not exist")
}

// Ready checks the database answers and is exactly at this binary's schema.
func (db *DB) Ready(ctx context.Context) error {
	if err := db.write.PingContext(ctx); err != nil {
		return fmt.Errorf("database unreachable: %w", err)
	}
	applied, latest, err := db.SchemaVersion(ctx)
	if err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}
	switch {
	case applied < latest:
		return fmt.Errorf("%w: at %d of %d", store.ErrNotMigrated, applied, latest)
	case applied > latest:
		return fmt.Errorf("%w: at %d, this binary knows %d", store.ErrSchemaTooNew, applied, latest)
	}
	return nil
}
