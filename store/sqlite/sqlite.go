// Package sqlite is the embedded store: SQLite through modernc.org/sqlite
// (pure Go, no cgo), so `sluice serve` runs on a fresh machine with nothing
// installed.
//
// Money moves through this database, so it runs in WAL mode with
// synchronous=FULL: a transaction reported committed survives a power cut.
// SQLite admits one writer at a time; rather than letting writers spin on
// SQLITE_BUSY, all read-write transactions share one connection (database/sql
// queues them in Go) and begin IMMEDIATE, while readers use a separate pool
// that WAL lets run beside the writer. Checkpoints, which copy the WAL back
// into the database file, run beside the writer too (checkpoint.go), not
// inside the commits of the transactions queued for it.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"sluice/store"
	"sluice/store/sqlstore"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Open opens (creating if needed) the database file at path. It does not
// migrate; call Migrate.
func Open(ctx context.Context, path string) (*sqlstore.DB, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("sqlite: %w", err)
		}
	}
	params := url.Values{}
	params.Add("_pragma", "busy_timeout(10000)")
	params.Add("_pragma", "foreign_keys(1)")
	params.Add("_pragma", "journal_mode(WAL)")
	params.Add("_pragma", "synchronous(FULL)")
	// Savepoints (group commit runs each transaction of a batch in one)
	// journal the pages they change; keep that journal in memory rather
	// than in a temporary file. It only serves rolling back to the
	// savepoint: durability comes from the WAL.
	params.Add("_pragma", "temp_store(2)")
	// The writer checkpoints only as a backstop (checkpoint.go).
	writeDSN := "file:" + path + "?" + params.Encode() + "&_txlock=immediate" + fmt.Sprintf("&_pragma=wal_autocheckpoint(%d)", writerCheckpointPages)
	readDSN := "file:" + path + "?" + params.Encode() + "&_pragma=query_only(1)"
	checkpointDSN := "file:" + path + "?" + params.Encode()

	write, err := sql.Open("sqlite", writeDSN)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	// The first connection creates the file and switches it to WAL before
	// the read pool, which may not write, opens its own.
	if err := write.PingContext(ctx); err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	os.Chmod(path, 0o600)
	read, err := sql.Open("sqlite", readDSN)
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	read.SetMaxOpenConns(4)
	// Keep every read connection: each one closed is reopened (pragmas
	// run again) and its prepared statements compiled again.
	read.SetMaxIdleConns(4)
	read.SetConnMaxLifetime(0)

	migrations, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	db, err := sqlstore.New(write, read, Dialect(migrations))
	if err != nil {
		write.Close()
		read.Close()
		return nil, err
	}
	ckpt, err := sql.Open("sqlite", checkpointDSN)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	ckpt.SetMaxOpenConns(1)
	ckpt.SetMaxIdleConns(1)
	ckpt.SetConnMaxLifetime(0)
	db.OnClose(startCheckpointer(ckpt).close)
	return db, nil
}

// Dialect is SQLite's side of sqlstore.
func Dialect(migrations fs.FS) sqlstore.Dialect {
	return sqlstore.Dialect{
		Name:       "sqlite",
		Classify:   classify,
		Retryable:  retryable,
		Migrations: migrations,
		// One writer connection: concurrent write transactions queue for
		// it anyway, so they share commits (and fsyncs) instead.
		GroupCommit: true,
		// modernc.org/sqlite compiles every statement it is given.
		CacheStatements: true,
		// A rowid table's next rowid is its largest plus one, and with one
		// writer nobody can take it between this read and the insert.
		NextID: func(table string) string { return `(SELECT COALESCE(MAX(id), 0) + 1 FROM ` + table + `)` },
	}
}

func code(err error) (int, bool) {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code(), true
	}
	return 0, false
}

func classify(err error) error {
	c, ok := code(err)
	if !ok {
		return nil
	}
	switch c {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return store.ErrConflict
	case sqlite3.SQLITE_CONSTRAINT_CHECK, sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY,
		sqlite3.SQLITE_CONSTRAINT_NOTNULL, sqlite3.SQLITE_CONSTRAINT_TRIGGER:
		return store.ErrConstraint
	}
	if c&0xff == sqlite3.SQLITE_CONSTRAINT {
		return store.ErrConstraint
	}
	return nil
}

func retryable(err error) bool {
	c, ok := code(err)
	return ok && (c&0xff == sqlite3.SQLITE_BUSY || c&0xff == sqlite3.SQLITE_LOCKED)
}
