// Package crashtest holds the head-end's crash test (issue 7): purchases
// from concurrent clients that retry on any error while `sluice serve` is
// killed with SIGKILL and restarted, after which every purchase has exactly
// one token set, the ledger balances and the audit chain verifies.
//
// It drives the real binary over HTTP, as a vending terminal would, so what
// it proves is what a utility gets: durability of commits (SQLite WAL with
// synchronous=FULL, PostgreSQL), idempotency keys enforced by the database,
// and an audit chain the sealer keeps whole across crashes. The package has
// no code of its own; `go test ./headend/crashtest` runs it. The size is
// bounded for CI (1000 purchases on SQLite, 300 on PostgreSQL;
// SLUICE_CRASH_PURCHASES overrides it) and the PostgreSQL half runs when the
// test server is reachable (and fails under CI when it is not).
package crashtest
