package sqlite

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Pages committed to the WAL reach the database file without the writer
// checkpointing (it would only past writerCheckpointPages): the background
// checkpointer copies them while the writer goes on. And the WAL stays
// bounded while commits keep coming.
func TestCheckpointsBesideTheWriter(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sluice.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	w := db.SQL()
	if _, err := w.ExecContext(ctx, `CREATE TABLE filler (id INTEGER PRIMARY KEY, pad BLOB)`); err != nil {
		t.Fatal(err)
	}
	size := func(name string) int64 {
		fi, err := os.Stat(name)
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	pad := []byte(strings.Repeat("x", 3000))
	// About 1,000 pages: past SQLite's default autocheckpoint, under the
	// writer's.
	insert := func(n int) {
		t.Helper()
		tx, err := w.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for range n {
			if _, err := tx.ExecContext(ctx, `INSERT INTO filler (pad) VALUES (?)`, pad); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	insert(1000)
	const page = 4096
	deadline := time.Now().Add(30 * time.Second)
	for size(path) < 1000*page {
		if time.Now().After(deadline) {
			t.Fatalf("database file %d bytes, WAL %d bytes after 30 s: the pages were never checkpointed", size(path), size(path+"-wal"))
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Three times the writer's backstop in small commits: the WAL is
	// started over instead of growing with them.
	for range 3 * writerCheckpointPages / 50 {
		insert(50)
	}
	if wal, max := size(path+"-wal"), int64(2*writerCheckpointPages*page); wal > max {
		t.Fatalf("WAL is %d bytes after %d pages committed, want at most %d", wal, 3*writerCheckpointPages, max)
	}
}
