// Package store is the head-end's persistence: one repository interface per
// aggregate, implemented twice over real databases: SQLite (package
// store/sqlite, embedded, pure Go) and PostgreSQL (package store/postgres).
//
// Both back ends share one SQL implementation (package store/sqlstore) and
// differ only where the databases do: connection set-up, DDL, error codes and
// bulk loading. The same conformance suite (package store/storetest) runs
// against both.
//
// Correctness under concurrency rests on the database, never on locks held in
// one process: uniqueness (one token set per purchase, one TID per meter) and
// bounds (no vendor float below zero) are constraints, so several `sluice
// serve` replicas on one PostgreSQL stay correct. A transaction that loses a
// serialization race is retried whole by Tx.
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors callers branch on. Implementations wrap them with context.
var (
	// ErrNotFound: no row matched.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a uniqueness constraint refused the write (the thing
	// exists already).
	ErrConflict = errors.New("conflict")
	// ErrConstraint: a check or foreign-key constraint refused the write
	// (for example a float that would go negative).
	ErrConstraint = errors.New("constraint violated")
	// ErrNotMigrated: the schema is older than this binary; run migrate.
	ErrNotMigrated = errors.New("database schema is not up to date")
	// ErrSchemaTooNew: the schema was migrated by a newer binary.
	ErrSchemaTooNew = errors.New("database schema is newer than this binary")
)

// Store is an open database.
type Store interface {
	// Tx runs fn in one read-write transaction and commits it when fn
	// returns nil. A transaction that fails on a serialization conflict or
	// a busy database is retried whole, so fn must not have effects outside
	// the transaction.
	Tx(ctx context.Context, fn func(Tx) error) error
	// Read runs fn in one read-only transaction (a consistent snapshot).
	Read(ctx context.Context, fn func(Tx) error) error
	// Lookup runs fn outside any transaction: each statement sees what was
	// committed when it started, and nothing more binds them. For a read
	// of one statement it is the same as Read without the BEGIN and
	// COMMIT (two round trips on PostgreSQL).
	Lookup(ctx context.Context, fn func(Tx) error) error
	// Migrate applies every pending migration and reports how many ran.
	Migrate(ctx context.Context) (int, error)
	// SchemaVersion returns the applied and the latest known versions.
	SchemaVersion(ctx context.Context) (applied, latest int, err error)
	// Ready returns nil when the database answers and is fully migrated.
	Ready(ctx context.Context) error
	// Driver names the back end: sqlite or postgres.
	Driver() string
	Close() error
}

// Tx gives the repositories inside one transaction.
type Tx interface {
	Operators() Operators
	Settings() Settings
	Vendors() Vendors
	SupplyGroups() SupplyGroups
	Tariffs() Tariffs
	Customers() Customers
	Meters() Meters
	MeterMonths() MeterMonths
	Purchases() Purchases
	Tokens() Tokens
	Ledger() Ledger
	Audit() Audit
	Credentials() Credentials
	EngineeringRequests() EngineeringRequests
	Telemetry() Telemetry
	Alerts() Alerts
	Reports() Reports
	Channels() Channels
	Webhooks() Webhooks
	Campaigns() Campaigns
}

// Operator is a person or terminal allowed to act on the head-end.
type Operator struct {
	ID           int64
	Username     string
	DisplayName  string
	Role         string
	PasswordHash string
	// MustChangePassword is set on generated credentials (the bootstrap
	// admin) so the first login has to replace them.
	MustChangePassword bool
	Disabled           bool
	// VendorID is the vending point a cashier sells for; 0 for others.
	VendorID  int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Operators is the operator aggregate.
type Operators interface {
	Create(ctx context.Context, o Operator) (Operator, error)
	ByID(ctx context.Context, id int64) (Operator, error)
	ByUsername(ctx context.Context, username string) (Operator, error)
	List(ctx context.Context) ([]Operator, error)
	Count(ctx context.Context) (int, error)
	// Update writes every mutable field of o (display name, role, password
	// hash, flags) and bumps UpdatedAt.
	Update(ctx context.Context, o Operator) error
}

// Settings is a small key-value table for installation-wide values that
// must be the same on every replica (for example the installation ID).
type Settings interface {
	Get(ctx context.Context, key string) (string, error)
	// PutIfAbsent stores value unless the key exists, and returns the value
	// now stored: the first replica to write wins.
	PutIfAbsent(ctx context.Context, key, value string) (string, error)
	Put(ctx context.Context, key, value string) error
}
