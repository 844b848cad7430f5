package lifecycle_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/lifecycle"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// watched is a node's real store, with the writes it makes under a job
// lease counted across nodes: how many nodes write at once.
type watched struct {
	*store.DB
	inFlight, most *atomic.Int32
}

func (w watched) enter() func() {
	n := w.inFlight.Add(1)
	for {
		m := w.most.Load()
		if n <= m || w.most.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(2 * time.Millisecond) // widen the window an overlap would need
	return func() { w.inFlight.Add(-1) }
}

func (w watched) ReplaceValues(ctx context.Context, l coffer.JobLease, now time.Time, recs []coffer.SealedRecord, old []map[string][]byte) (int, error) {
	defer w.enter()()
	return w.DB.ReplaceValues(ctx, l, now, recs, old)
}

// TestJobsRunOnceAcrossThreeNodes: three nodes (on PostgreSQL, three
// connection pools on one database) run the rewrap at once: one runs it,
// never two at a time, and every value moves once. A holder that dies
// half-way keeps the others out until its lease runs out; then exactly one
// of them takes the job over within the lease bound and resumes from the
// saved cursor, redoing nothing.
func TestJobsRunOnceAcrossThreeNodes(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			f := setup(t, b)
			f.insert(t, 1200, 0, nil)
			if _, err := f.keys.Rotate(ctx, "collection/c"); err != nil {
				t.Fatal(err)
			}
			var inFlight, most atomic.Int32
			const ttl = 3 * time.Second
			nodes := map[string]*lifecycle.Jobs{}
			for _, id := range []string{"n1", "n2", "n3"} {
				db := f.db
				if b.Name == store.Postgres {
					db = f.reopen(t)
				}
				nodes[id] = lifecycle.New(lifecycle.Config{Store: watched{db, &inFlight, &most}, Keys: f.keys, Node: id,
					Batch: 100, LeaseTTL: ttl})
			}

			// All three at once, twice over: the job runs on one.
			var (
				wg      sync.WaitGroup
				moved   atomic.Int64
				ran     atomic.Int32
				failure atomic.Value
			)
			for range 2 {
				for _, j := range nodes {
					wg.Add(1)
					go func() {
						defer wg.Done()
						rep, err := j.Rewrap(ctx, 0)
						switch {
						case errors.Is(err, lifecycle.ErrBusy):
						case err != nil:
							failure.Store(err)
						case rep.Rewrapped > 0:
							ran.Add(1)
							moved.Add(int64(rep.Rewrapped))
						}
					}()
				}
			}
			wg.Wait()
			if err := failure.Load(); err != nil {
				t.Fatal(err)
			}
			if ran.Load() != 1 || moved.Load() != 1200 || most.Load() != 1 {
				t.Fatalf("runs that moved values: %d, values moved: %d (want 1200), most nodes writing at once: %d",
					ran.Load(), moved.Load(), most.Load())
			}

			// Another rotation; n1 dies after one batch (its lease held).
			if _, err := f.keys.Rotate(ctx, "collection/c"); err != nil {
				t.Fatal(err)
			}
			if err := nodes["n1"].RequestRewrap(ctx); err != nil {
				t.Fatal(err)
			}
			rep, err := nodes["n1"].Rewrap(ctx, 1)
			died := time.Now()
			if err != nil || rep.Rewrapped != 100 || rep.Done {
				t.Fatalf("n1's one batch: %+v %v", rep, err)
			}
			// n2 and n3 keep trying, as their schedulers would.
			type outcome struct {
				node string
				rep  lifecycle.RewrapReport
				at   time.Time
			}
			results := make(chan outcome, 2)
			for _, id := range []string{"n2", "n3"} {
				go func() {
					for {
						rep, err := nodes[id].Rewrap(ctx, 0)
						if errors.Is(err, lifecycle.ErrBusy) {
							time.Sleep(20 * time.Millisecond)
							continue
						}
						if err != nil {
							failure.Store(err)
						}
						results <- outcome{id, rep, time.Now()}
						return
					}
				}()
			}
			first, second := <-results, <-results
			if err := failure.Load(); err != nil {
				t.Fatal(err)
			}
			if first.rep.Rewrapped == 0 {
				first, second = second, first
			}
			if first.rep.Rewrapped != 1100 || first.rep.Scanned != 1100 || !first.rep.Done || second.rep.Rewrapped != 0 {
				t.Fatalf("after n1 died: %s %+v, %s %+v (want one of them to move the 1100 left)",
					first.node, first.rep, second.node, second.rep)
			}
			took := first.at.Sub(died)
			if took < ttl-100*time.Millisecond || took > ttl+2*time.Second {
				t.Fatalf("%s took the job over %v after n1 died (lease %v)", first.node, took, ttl)
			}
			t.Logf("%s resumed the rewrap %v after the holder died (lease %v)", first.node, took, ttl)
			if most.Load() != 1 {
				t.Fatalf("%d nodes wrote at once", most.Load())
			}
		})
	}
}
