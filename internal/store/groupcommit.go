package store

import (
	"context"
	"fmt"
	"sync"
)

// groupCommit runs the write transactions of many concurrent callers in one
// SQLite transaction, so they share one fsync (synchronous=FULL makes every
// commit durable, and a commit costs a sync however little it writes). Each
// caller's work runs inside its own SAVEPOINT: a caller whose work fails is
// rolled back to it alone and gets its own error, the others commit. If the
// commit itself fails, every caller of the batch gets that error and nothing
// of the batch is stored. SQLite has one writer at a time anyway, so
// batching costs no concurrency.
type groupCommit struct {
	db    *DB
	reqs  chan txReq
	stop  chan struct{}
	wg    sync.WaitGroup
	limit int
	// idle runs after each batch, while the write connection is free.
	idle func()
}

type txReq struct {
	ctx  context.Context
	fn   func(q querier) error
	done chan error
}

func newGroupCommit(db *DB, limit int) *groupCommit {
	g := &groupCommit{db: db, reqs: make(chan txReq), stop: make(chan struct{}), limit: limit}
	g.wg.Add(1)
	go g.loop()
	return g
}

// run queues fn and waits for the batch holding it to commit.
func (g *groupCommit) run(ctx context.Context, fn func(q querier) error) error {
	r := txReq{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case g.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-g.stop:
		return fmt.Errorf("store: closed")
	}
	// Once queued the work is committed or not as a whole batch: wait for
	// the verdict even if ctx ends, so a caller never misreports it.
	return <-r.done
}

func (g *groupCommit) close() {
	close(g.stop)
	g.wg.Wait()
}

func (g *groupCommit) loop() {
	defer g.wg.Done()
	for {
		var first txReq
		select {
		case first = <-g.reqs:
		case <-g.stop:
			return
		}
		batch := []txReq{first}
	drain:
		for len(batch) < g.limit {
			select {
			case r := <-g.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		g.commit(batch)
		if g.idle != nil {
			g.idle()
		}
	}
}

func (g *groupCommit) commit(batch []txReq) {
	// The batch's own context: one caller's cancellation must not abort
	// the others' transaction.
	ctx := context.Background()
	errs := make([]error, len(batch))
	tx, err := g.db.begin(ctx)
	if err != nil {
		for _, r := range batch {
			r.done <- mapErr(err)
		}
		return
	}
	if len(batch) == 1 {
		// Alone in the batch: no savepoint needed, the transaction is its.
		r := batch[0]
		err := r.ctx.Err()
		if err == nil {
			err = r.fn(tx)
		}
		if err != nil {
			_ = tx.rollback(ctx)
			r.done <- err
			return
		}
		r.done <- mapErr(tx.commit(ctx))
		return
	}
	ok := 0
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		if _, err := tx.exec(ctx, "SAVEPOINT coffer_call"); err != nil {
			errs[i] = err
			continue
		}
		if err := r.fn(tx); err != nil {
			errs[i] = err
			if _, rerr := tx.exec(ctx, "ROLLBACK TO SAVEPOINT coffer_call"); rerr != nil {
				// The transaction is unusable: fail the whole batch.
				_ = tx.rollback(ctx)
				for j, r := range batch {
					if errs[j] == nil {
						errs[j] = rerr
					}
					r.done <- errs[j]
				}
				return
			}
		} else {
			ok++
		}
		if _, err := tx.exec(ctx, "RELEASE SAVEPOINT coffer_call"); err != nil && errs[i] == nil {
			errs[i] = err
		}
	}
	var cerr error
	if ok > 0 {
		cerr = mapErr(tx.commit(ctx))
	} else {
		_ = tx.rollback(ctx)
	}
	for i, r := range batch {
		if errs[i] == nil {
			errs[i] = cerr
		}
		r.done <- errs[i]
	}
}
