package sqlstore

import (
	"context"
	"database/sql"
	"strings"
	"sync"
)

// stmtCache keeps the prepared statements of one connection pool.
//
// SQLite compiles every statement it is given; without a cache a vend spends
// about a quarter of its CPU in SQLite's parser, compiling the same twenty
// statements again. database/sql can reuse a statement prepared on the pool
// inside a transaction (Tx.StmtContext), but preparing one takes a
// connection from the pool, and SQLite's write pool has a single connection
// which the running transaction holds. So a statement seen inside a
// transaction runs unprepared that time and is queued; the queue is
// prepared before the next transaction on the pool begins, when preparing
// takes a connection nobody in this goroutine holds.
//
// Only data statements are cached, and at most maxCachedStmts of them: a
// statement text built with a variable number of placeholders (bulk inserts)
// is bounded by that, and DDL never enters.
type stmtCache struct {
	pool *sql.DB

	mu      sync.Mutex
	ready   map[string]*sql.Stmt // nil: could not be prepared; run it unprepared
	pending map[string]struct{}
}

const maxCachedStmts = 512

func newStmtCache(pool *sql.DB) *stmtCache {
	return &stmtCache{pool: pool, ready: map[string]*sql.Stmt{}, pending: map[string]struct{}{}}
}

// lookup returns the prepared statement for q, or nil and queues q.
func (c *stmtCache) lookup(q string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.ready[q]; ok {
		return s
	}
	if len(c.ready)+len(c.pending) < maxCachedStmts && cacheable(q) {
		c.pending[q] = struct{}{}
	}
	return nil
}

func cacheable(q string) bool {
	q = strings.TrimLeft(q, " \t\r\n")
	if len(q) < 6 {
		return false
	}
	switch strings.ToUpper(q[:6]) {
	case "SELECT", "INSERT", "UPDATE", "DELETE":
		return true
	}
	return false
}

// prepare prepares the queued statements. It must not be called while the
// calling goroutine holds a connection of the pool (inside a transaction).
func (c *stmtCache) prepare(ctx context.Context) {
	c.mu.Lock()
	if len(c.pending) == 0 {
		c.mu.Unlock()
		return
	}
	qs := make([]string, 0, len(c.pending))
	for q := range c.pending {
		qs = append(qs, q)
	}
	clear(c.pending)
	c.mu.Unlock()
	for _, q := range qs {
		s, err := c.pool.PrepareContext(ctx, q)
		if err != nil {
			if ctx.Err() != nil {
				return // queued again when next seen
			}
			s = nil // runs unprepared, and reports its error where it runs
		}
		c.mu.Lock()
		if old, ok := c.ready[q]; ok && old != nil {
			// Prepared concurrently by another goroutine; keep one.
			if s != nil {
				s.Close()
			}
		} else {
			c.ready[q] = s
		}
		c.mu.Unlock()
	}
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.ready {
		if s != nil {
			s.Close()
		}
	}
	clear(c.ready)
}

// stmt returns q prepared for use in t, or nil to run q unprepared. q is
// already rebound.
func (t *tx) stmt(ctx context.Context, q string) *sql.Stmt {
	if t.cache == nil {
		return nil
	}
	s := t.cache.lookup(q)
	if s == nil || t.tx == nil {
		return s // a Lookup runs the pool's statement itself
	}
	return t.tx.StmtContext(ctx, s)
}
