// Package storetest opens fresh stores on every back end for tests, so one
// test body proves the same behaviour on SQLite and PostgreSQL.
//
// Each PostgreSQL store lives in a schema of its own, created for the test
// and dropped after it, so concurrent test runs on one server never see each
// other. The server is SLUICE_TEST_POSTGRES_URL, by default the one these
// machines run (postgres@127.0.0.1:5432/test). Without it the PostgreSQL half
// is skipped locally and fails under CI.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"

	"sluice/internal/testenv"
	"sluice/store/postgres"
	"sluice/store/sqlite"
	"sluice/store/sqlstore"
)

// DefaultPostgresURL is the test server on these machines.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// Backend is a database kind a test can run on.
type Backend struct {
	Name string
	// Open returns a fresh store, migrated unless raw is set, closed and
	// removed when the test ends.
	Open func(t testing.TB, raw bool) *sqlstore.DB
}

// Backends lists SQLite and PostgreSQL.
func Backends() []Backend {
	return []Backend{{"sqlite", OpenSQLite}, {"postgres", OpenPostgres}}
}

// Each runs body once per back end, as subtests named after them.
func Each(t *testing.T, body func(t *testing.T, db *sqlstore.DB)) {
	for _, b := range Backends() {
		t.Run(b.Name, func(t *testing.T) { body(t, b.Open(t, false)) })
	}
}

// OpenSQLite opens a store in a temporary directory.
func OpenSQLite(t testing.TB, raw bool) *sqlstore.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "sluice.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if !raw {
		migrate(t, db)
	}
	return db
}

// PostgresURL is the server tests use.
func PostgresURL() string {
	if u := os.Getenv("SLUICE_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return DefaultPostgresURL
}

// OpenPostgres opens a store in a new schema of the test server.
func OpenPostgres(t testing.TB, raw bool) *sqlstore.DB {
	t.Helper()
	u, schema := NewPostgresSchema(t)
	db, err := postgres.Open(context.Background(), u, 8)
	if err != nil {
		t.Fatalf("open postgres schema %s: %v", schema, err)
	}
	t.Cleanup(func() { db.Close() })
	if !raw {
		migrate(t, db)
	}
	return db
}

// NewPostgresSchema creates an empty schema on the test server, dropped
// when the test ends, and returns a URL whose search_path selects it.
func NewPostgresSchema(t testing.TB) (dbURL, schema string) {
	t.Helper()
	base := PostgresURL()
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		testenv.Missing(t, "PostgreSQL at %s: %v", base, err)
		return "", ""
	}
	var b [6]byte
	rand.Read(b[:])
	schema = "sluice_test_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		a, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer a.Close()
		a.Exec("DROP SCHEMA " + schema + " CASCADE")
	})
	pu, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := pu.Query()
	q.Set("search_path", schema)
	pu.RawQuery = q.Encode()
	return pu.String(), schema
}

func migrate(t testing.TB, db *sqlstore.DB) {
	t.Helper()
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// The pgx driver registers itself under "pgx" on import of stdlib.
var _ = stdlib.GetDefaultDriver
