package sqlstore

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"sluice/store"
)

// Group commit, for a database with one writer (SQLite).
//
// With synchronous=FULL every commit waits for an fsync of the WAL, about a
// millisecond on a good disk, and SQLite's single writer makes those waits
// add up: write transactions cannot run faster than one per fsync. The
// committer lets the transactions that queue up while one commit is in
// flight share the next one: the first waiting caller leads, runs every
// queued fn in one database transaction, each inside a SAVEPOINT of its own,
// and commits once. A fn that fails is rolled back to its savepoint and gets
// its error; the others keep their writes.
//
// What callers rely on is unchanged:
//   - Durability: no caller returns before the COMMIT (and its fsync) that
//     holds its writes has completed.
//   - Isolation: the fns of a batch run one after another on the one write
//     connection, so each sees exactly the committed state plus the writes
//     of the fns before it: the same as running them serially, which is what
//     SQLite's single writer did anyway.
//   - Atomicity: a fn's writes are released into the batch only when it
//     returned nil; a failed fn leaves nothing behind.
//
// When the shared transaction cannot go on (a savepoint cannot be rolled
// back because SQLite already rolled the whole transaction back, or the
// COMMIT fails), every fn of the batch is run again on its own, in its own
// transaction: fns have no effects outside their transaction (Store.Tx may
// retry them anyway), so running one again is safe, and each caller then
// gets exactly the outcome a lone transaction would have had.
//
// A lone caller (no queue) runs in a plain transaction, as before: group
// commit adds no latency when there is no concurrency.
type committer struct {
	db  *DB
	max int // fns per batch; bounds the wait of the last one

	mu    sync.Mutex
	queue []*job
	busy  bool // a leader is running a batch

	txs, commits atomic.Int64 // for GroupStats
}

type job struct {
	ctx      context.Context
	fn       func(store.Tx) error
	err      error
	panicked any
	// wake says true to the job chosen to lead the next batch and false
	// to a job whose batch has completed.
	wake chan bool
}

// maxBatch bounds a batch: 32 vends are about 15 ms of CPU on one core.
const maxBatch = 32

func newCommitter(db *DB) *committer { return &committer{db: db, max: maxBatch} }

// do runs fn in a write transaction, possibly shared, and returns once the
// transaction holding fn's writes is committed (or fn failed).
func (c *committer) do(ctx context.Context, fn func(store.Tx) error) error {
	j := &job{ctx: ctx, fn: fn, wake: make(chan bool, 1)}
	c.mu.Lock()
	c.queue = append(c.queue, j)
	if c.busy {
		c.mu.Unlock()
		if lead := <-j.wake; !lead {
			return j.result()
		}
		c.mu.Lock()
	}
	c.busy = true
	// j is at the head of the queue: it was appended to an empty queue, or
	// it was woken as the head.
	n := min(len(c.queue), c.max)
	batch := make([]*job, n)
	copy(batch, c.queue)
	c.queue = append(c.queue[:0], c.queue[n:]...)
	c.mu.Unlock()

	c.db.runBatch(batch)

	c.mu.Lock()
	if len(c.queue) > 0 {
		c.queue[0].wake <- true
	} else {
		c.busy = false
	}
	c.mu.Unlock()
	for _, o := range batch[1:] {
		o.wake <- false
	}
	return j.result()
}

func (j *job) result() error {
	if j.panicked != nil {
		panic(j.panicked)
	}
	return j.err
}

// call runs a job's fn, catching a panic so that the leader can go on and
// the panic reaches the caller's own goroutine.
func (j *job) call(t store.Tx) (err error, panicked any) {
	defer func() {
		if p := recover(); p != nil {
			panicked = p
		}
	}()
	return j.fn(t), nil
}

// runBatch runs the jobs in one transaction, or each alone.
func (db *DB) runBatch(batch []*job) {
	if len(batch) == 1 || !db.runShared(batch) {
		for _, j := range batch {
			db.runAlone(j)
		}
	}
}

func (db *DB) runAlone(j *job) {
	db.group.txs.Add(1)
	db.group.commits.Add(1)
	j.err, j.panicked = nil, nil
	err := db.once(j.ctx, db.write, nil, func(t store.Tx) error {
		err, p := j.call(t)
		if p != nil {
			j.panicked = p
			return fmt.Errorf("panic: %v", p)
		}
		return err
	})
	if j.panicked == nil {
		j.err = err
	}
}

// runShared runs the batch in one transaction with a savepoint per job. It
// reports false, having rolled everything back, when the transaction could
// not be carried through; the caller then runs each job alone.
func (db *DB) runShared(batch []*job) bool {
	// The shared transaction outlives any one caller's context: a caller
	// that gives up must not roll back the others.
	ctx := context.Background()
	if db.wcache != nil {
		db.wcache.prepare(ctx)
	}
	sqlTx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return false
	}
	t := &tx{db: db, tx: sqlTx, pool: db.write, cache: db.wcache}
	exec := func(q string) error { _, err := sqlTx.ExecContext(ctx, q); return err }
	for _, j := range batch {
		if err := j.ctx.Err(); err != nil {
			j.err = err
			continue
		}
		if exec("SAVEPOINT sluice_group") != nil {
			sqlTx.Rollback()
			return false
		}
		j.err, j.panicked = j.call(t)
		if j.err != nil || j.panicked != nil {
			if exec("ROLLBACK TO sluice_group") != nil {
				sqlTx.Rollback()
				return false
			}
		}
		if exec("RELEASE sluice_group") != nil {
			sqlTx.Rollback()
			return false
		}
	}
	if err := sqlTx.Commit(); err != nil {
		return false
	}
	db.group.txs.Add(int64(len(batch)))
	db.group.commits.Add(1)
	return true
}

// GroupStats reports how many write transactions ran through Tx and how many
// commits they took, since the store was opened; txs/commits is the mean
// batch of group commit. Both are zero without group commit.
func (db *DB) GroupStats() (txs, commits int64) {
	if db.group == nil {
		return 0, 0
	}
	return db.group.txs.Load(), db.group.commits.Load()
}
