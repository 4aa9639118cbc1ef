package sqlite

import (
	"context"
	"database/sql"
	"sync"
	"time"
)

// Checkpoints run beside the writer, not inside its commits.
//
// In WAL mode a commit appends pages to the WAL, and a checkpoint copies them
// back into the database file. By default SQLite checkpoints inside the
// COMMIT that takes the WAL past 1,000 pages: that commit copies up to 4 MB
// of pages and waits for two more fsyncs, and since there is one writer, every
// transaction queued behind it waits too (with group commit, whole batches of
// purchases). Here a goroutine with a connection of its own runs a PASSIVE
// checkpoint every checkpointEvery: it copies what the WAL holds while the
// writer goes on, and it never blocks the writer or a reader.
//
// A PASSIVE checkpoint does not reset the WAL: SQLite starts the WAL over when
// the writer begins a transaction and finds every frame already copied back,
// which under a steady stream of commits it rarely does. So the writer still
// checkpoints itself, but only past writerCheckpointPages: by then the
// goroutine has copied all but the last few frames, so the writer's
// checkpoint is short, and the next transaction starts the WAL over. The WAL
// stays within about writerCheckpointPages pages (16 MiB).
const (
	checkpointEvery       = 50 * time.Millisecond
	writerCheckpointPages = 4096
)

type checkpointer struct {
	db   *sql.DB
	stop context.CancelFunc
	done sync.WaitGroup
}

func startCheckpointer(db *sql.DB) *checkpointer {
	ctx, stop := context.WithCancel(context.Background())
	c := &checkpointer{db: db, stop: stop}
	c.done.Add(1)
	go func() {
		defer c.done.Done()
		t := time.NewTicker(checkpointEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			// An error here (a busy database, a closed file at shutdown)
			// costs nothing but this round: the writer's own checkpoint
			// is the backstop.
			var busy, log, copied int
			c.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &log, &copied)
		}
	}()
	return c
}

func (c *checkpointer) close() error {
	c.stop()
	c.done.Wait()
	return c.db.Close()
}
