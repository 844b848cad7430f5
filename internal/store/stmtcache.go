package store

import (
	"context"
	"database/sql"
	"sync"
)

// stmtCache keeps one prepared statement per statement text on a SQLite
// *sql.DB, so a hot statement is parsed and planned once per connection
// rather than on every call (parsing was an eighth of a record read's CPU).
// Only statement texts written in this package reach it, never a caller's
// value; texts built per call (multi-row INSERTs) are bounded by max and run
// unprepared once it is full.
//
// Inside a transaction on the single SQLite write connection a statement
// cannot be prepared on the *sql.DB (that waits for the connection the
// transaction holds), so a transaction only borrows statements already
// cached and notes the others as wanted; the group commit prepares those
// once the connection is free again.
type stmtCache struct {
	db     *sql.DB
	m      sync.Map // rewritten text → *sql.Stmt
	mu     sync.Mutex
	n      int
	max    int
	wanted map[string]struct{}
}

func newStmtCache(db *sql.DB, max int) *stmtCache { return &stmtCache{db: db, max: max} }

// get returns the prepared statement for text, or nil when it cannot be
// prepared (the caller then runs it unprepared and reports that error).
func (c *stmtCache) get(text string) *sql.Stmt {
	if c == nil {
		return nil
	}
	if v, ok := c.m.Load(text); ok {
		return v.(*sql.Stmt)
	}
	c.mu.Lock()
	full := c.n >= c.max
	c.mu.Unlock()
	if full {
		return nil
	}
	// Prepared without holding mu: preparing on the write side waits for
	// the one connection, which a transaction calling lookup may hold.
	// Not the caller's context: the statement outlives this request.
	st, err := c.db.PrepareContext(context.Background(), text)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.m.Load(text); ok || c.n >= c.max {
		_ = st.Close() // lost a race, or closed meanwhile
		if ok {
			return v.(*sql.Stmt)
		}
		return nil
	}
	c.m.Store(text, st)
	c.n++
	return st
}

// lookup returns text's cached statement without preparing it, noting it
// as wanted when it is missing.
func (c *stmtCache) lookup(text string) *sql.Stmt {
	if c == nil {
		return nil
	}
	if v, ok := c.m.Load(text); ok {
		return v.(*sql.Stmt)
	}
	c.mu.Lock()
	if c.n+len(c.wanted) < c.max {
		if c.wanted == nil {
			c.wanted = make(map[string]struct{})
		}
		c.wanted[text] = struct{}{}
	}
	c.mu.Unlock()
	return nil
}

// prepareWanted prepares what transactions asked for; call it only while no
// transaction holds the connection.
func (c *stmtCache) prepareWanted() {
	if c == nil {
		return
	}
	c.mu.Lock()
	w := c.wanted
	c.wanted = nil
	c.mu.Unlock()
	for text := range w {
		c.get(text)
	}
}

// close finalises every cached statement; it runs before the DB closes.
func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m.Range(func(k, v any) bool {
		_ = v.(*sql.Stmt).Close()
		c.m.Delete(k)
		return true
	})
	c.n = c.max // nothing new after close
}
