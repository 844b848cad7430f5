package audit

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

func TestWriterAssignsChainFields(t *testing.T) {
	st := newMemStore()
	w := newTestWriter(t, st, WriterConfig{Node: "node-a"})
	e := sampleEvent(1)
	e.ID, e.Seq, e.Hash, e.PrevHash, e.Node = "forged", 99, "x", "y", "other"
	if err := w.Log(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	logN(t, w, 1)
	got := st.events["node-a"]
	if len(got) != 2 {
		t.Fatalf("stored %d events, want 2", len(got))
	}
	first, second := got[0], got[1]
	if first.ID != "node-a:1" || first.Seq != 1 || first.Node != "node-a" || first.PrevHash != Genesis("node-a") {
		t.Fatalf("first event chain fields = %q %d %q %q", first.ID, first.Seq, first.Node, first.PrevHash)
	}
	if second.Seq != 2 || second.PrevHash != first.Hash {
		t.Fatalf("second event does not link: seq %d prev %q, first hash %q", second.Seq, second.PrevHash, first.Hash)
	}
	if first.Time.Location() != time.UTC || first.Time.Nanosecond()%1000 != 0 {
		t.Fatalf("time %v is not UTC at microsecond precision", first.Time)
	}
}

func TestWriterSanitizesStrings(t *testing.T) {
	st := newMemStore()
	w := newTestWriter(t, st, WriterConfig{})
	roles := []string{"bad\xffrole"}
	e := sampleEvent(1)
	e.Roles, e.Reason = roles, strings.Repeat("é", MaxStringBytes) // 2 bytes a rune
	if err := w.Log(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	got := st.events["n1"][0]
	if got.Roles[0] != "bad\uFFFDrole" || roles[0] != "bad\xffrole" {
		t.Fatalf("roles = %q (caller's now %q): want the copy cleaned, the caller's untouched", got.Roles, roles)
	}
	if len(got.Reason) != MaxStringBytes || !strings.HasSuffix(got.Reason, "é") {
		t.Fatalf("reason cut to %d bytes, want %d at a rune boundary", len(got.Reason), MaxStringBytes)
	}
}

// TestWriterNamesEachTargetOnce: an event names each target once, in the
// order first touched, and at most MaxTargets of them.
func TestWriterNamesEachTargetOnce(t *testing.T) {
	st := newMemStore()
	w := newTestWriter(t, st, WriterConfig{})
	e := sampleEvent(1)
	e.Targets = []string{"b", "a", "b", "c", "a"}
	if err := w.Log(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	many := sampleEvent(2)
	for i := range MaxTargets + 10 {
		many.Targets = append(many.Targets, strconv.Itoa(i))
	}
	if err := w.Log(context.Background(), many); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	got := st.events["n1"]
	st.mu.Unlock()
	if !slices.Equal(got[0].Targets, []string{"b", "a", "c"}) {
		t.Fatalf("targets %q, want [b a c]", got[0].Targets)
	}
	if n := len(got[1].Targets); n != MaxTargets || got[1].Targets[n-1] != strconv.Itoa(MaxTargets-1) {
		t.Fatalf("%d targets kept, want the first %d", n, MaxTargets)
	}
	if rep, err := Verify(context.Background(), st, testLookup); err != nil || rep.Events != 2 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

func TestWriterRejectsUnknownDecision(t *testing.T) {
	w := newTestWriter(t, newMemStore(), WriterConfig{})
	e := sampleEvent(1)
	e.Decision = "maybe"
	if err := w.Log(context.Background(), e); coffer.ErrorCode(err) != coffer.EINTERNAL {
		t.Fatalf("Log = %v, want an internal error", err)
	}
}

func TestNewWriterRejectsBadConfig(t *testing.T) {
	good := WriterConfig{Node: "n1", Keys: testKeys}
	withKeys := func(edit func(*Keys)) func(*WriterConfig) {
		return func(c *WriterConfig) {
			k := testKeys
			edit(&k)
			c.Keys = k
		}
	}
	tests := []struct {
		name string
		edit func(*WriterConfig)
	}{
		{"fail/no node", func(c *WriterConfig) { c.Node = "" }},
		{"fail/node too long", func(c *WriterConfig) { c.Node = strings.Repeat("n", 200) }},
		{"fail/no key source", func(c *WriterConfig) { c.Keys = nil }},
		{"fail/short hmac key", withKeys(func(k *Keys) { k.HMACKey = []byte("short") })},
		{"fail/no signing key", withKeys(func(k *Keys) { k.SigningKey = nil })},
		{"fail/hmac key version 0", withKeys(func(k *Keys) { k.HMACVersion = 0 })},
		{"fail/signing key version 0", withKeys(func(k *Keys) { k.SigningVersion = 0 })},
		{"fail/key source fails", func(c *WriterConfig) { c.Keys = failingKeys{errStoreDown} }},
		{"fail/negative max batch", func(c *WriterConfig) { c.MaxBatch = -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.edit(&cfg)
			if w, err := NewWriter(context.Background(), newMemStore(), cfg); err == nil {
				_ = w.Close(context.Background())
				t.Fatal("NewWriter accepted a bad config")
			}
		})
	}
}

func TestWriterResumesFromStoredHead(t *testing.T) {
	st := buildLog(t, 25, 10, "n1")
	w := newTestWriter(t, st, WriterConfig{CheckpointEvery: 10})
	logN(t, w, 10)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(context.Background(), st, testLookup)
	if err != nil || rep.Events != 35 {
		t.Fatalf("Verify = %+v, %v; want 35 events", rep, err)
	}
	var seqs []uint64
	for _, c := range st.cps["n1"] {
		seqs = append(seqs, c.Seq)
	}
	if want := []uint64{10, 20, 25, 30, 35}; !equalSeqs(seqs, want) {
		t.Fatalf("checkpoints at %v, want %v", seqs, want)
	}
}

func equalSeqs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestWriterGroupCommitsConcurrentCallers(t *testing.T) {
	st := newMemStore()
	st.delay = time.Millisecond
	var stats []BatchStats
	var mu sync.Mutex
	w := newTestWriter(t, st, WriterConfig{CheckpointEvery: 100, Observe: func(s BatchStats) {
		mu.Lock()
		stats = append(stats, s)
		mu.Unlock()
	}})
	const callers, each = 50, 20
	var wg sync.WaitGroup
	errs := make(chan error, callers*each)
	for g := range callers {
		wg.Go(func() {
			for i := range each {
				errs <- w.Log(context.Background(), sampleEvent(g*each+i))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Log: %v", err)
		}
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(context.Background(), st, testLookup)
	if err != nil || rep.Events != callers*each {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	appends := st.appends.Load()
	if appends >= callers*each {
		t.Fatalf("%d appends for %d events: no group commit", appends, callers*each)
	}
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for _, s := range stats {
		total += s.Events
	}
	if total != callers*each || int64(len(stats)) != appends {
		t.Fatalf("Observe saw %d events in %d batches, want %d in %d", total, len(stats), callers*each, appends)
	}
	t.Logf("%d events in %d appends", callers*each, appends)
}

func TestWriterMaxBatchOneAppendsEachEvent(t *testing.T) {
	st := newMemStore()
	w := newTestWriter(t, st, WriterConfig{MaxBatch: 1, CheckpointEvery: -1})
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			if err := w.Log(context.Background(), sampleEvent(i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := st.appends.Load(); got != 40 {
		t.Fatalf("%d appends for 40 events with MaxBatch 1", got)
	}
}

// Under load, events that keep coming, each within the gather gap of the
// last, share one append; with gathering off, or without signs of load
// (lone events one after another), each gets its own, and a lone event
// waits for no gap at all.
func TestWriterGathersEventsThatKeepComing(t *testing.T) {
	ctx := context.Background()
	t.Run("gathers", func(t *testing.T) {
		st := newMemStore()
		st.delay = 30 * time.Millisecond
		w := newTestWriter(t, st, WriterConfig{GatherGap: 500 * time.Millisecond, MaxGather: 10 * time.Second, CheckpointEvery: -1})
		// Load: four at once, three of which queue behind the first's
		// append and form a batch of more than one.
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				if err := w.Log(ctx, sampleEvent(i)); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		before := st.appends.Load()
		for i := range 6 {
			wg.Go(func() {
				if err := w.Log(ctx, sampleEvent(10+i)); err != nil {
					t.Error(err)
				}
			})
			time.Sleep(20 * time.Millisecond)
		}
		wg.Wait()
		if got := st.appends.Load() - before; got != 1 {
			t.Fatalf("%d appends for 6 events 20ms apart under load with a 500ms gap, want 1", got)
		}
	})
	t.Run("off", func(t *testing.T) {
		st := newMemStore()
		w := newTestWriter(t, st, WriterConfig{GatherGap: -1, CheckpointEvery: -1})
		for i := range 6 {
			if err := w.Log(ctx, sampleEvent(i)); err != nil {
				t.Fatal(err)
			}
		}
		if got := st.appends.Load(); got != 6 {
			t.Fatalf("%d appends for 6 events logged one after another, want 6", got)
		}
	})
	t.Run("lone events", func(t *testing.T) {
		st := newMemStore()
		w := newTestWriter(t, st, WriterConfig{GatherGap: time.Hour, MaxGather: time.Hour, CheckpointEvery: -1})
		start := time.Now()
		for i := range 3 {
			if err := w.Log(ctx, sampleEvent(i)); err != nil {
				t.Fatal(err)
			}
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Fatalf("3 lone events took %v: the writer waited for a gap", d)
		}
		if got := st.appends.Load(); got != 3 {
			t.Fatalf("%d appends for 3 lone events, want 3", got)
		}
	})
}

func TestWriterFailsClosedAndRecovers(t *testing.T) {
	st := newMemStore()
	var failures atomic.Int64
	w := newTestWriter(t, st, WriterConfig{CheckpointEvery: 5, Observe: func(s BatchStats) {
		if s.Err != nil {
			failures.Add(1)
		}
	}})
	logN(t, w, 3)

	st.setFail(errStoreDown)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range 20 {
		wg.Go(func() {
			err := w.Log(context.Background(), sampleEvent(i))
			if coffer.ErrorCode(err) == coffer.EUNAVAILABLE && errors.Is(err, errStoreDown) {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 20 {
		t.Fatalf("%d of 20 Log calls failed with the store down, want all", failed.Load())
	}
	if w.Healthy() == nil {
		t.Fatal("Healthy() = nil with the store down")
	}
	if failures.Load() == 0 {
		t.Fatal("Observe saw no failed batch")
	}
	if n := len(st.events["n1"]); n != 3 {
		t.Fatalf("store holds %d events after failed appends, want 3", n)
	}

	st.setFail(nil)
	logN(t, w, 4)
	if err := w.Healthy(); err != nil {
		t.Fatalf("Healthy() = %v after the store came back", err)
	}
	rep, err := Verify(context.Background(), st, testLookup)
	if err != nil || rep.Events != 8 {
		t.Fatalf("Verify = %+v, %v; want 8 events (3, the outage, 4) chained from the durable head", rep, err)
	}
	// The chain says that the 20 refused events are missing, and from when.
	st.mu.Lock()
	e := st.events["n1"][3]
	st.mu.Unlock()
	if e.Action != ActionOutage || e.Count != 20 || e.Status != 503 ||
		!strings.Contains(e.Reason, "up to 20 events") {
		t.Fatalf("event 4 = %+v, want the outage event counting 20", e)
	}
}

// TestWriterRecoversOnItsOwn: an unhealthy writer does not wait for an
// event to find out that the store is back (a server refuses requests
// while it is unhealthy, so none would come): it appends the outage event
// by itself, and is healthy again.
func TestWriterRecoversOnItsOwn(t *testing.T) {
	st := newMemStore()
	w := newTestWriter(t, st, WriterConfig{RetryInterval: time.Millisecond})
	logN(t, w, 2)
	st.setFail(errStoreDown)
	for i := range 3 {
		if err := w.Log(context.Background(), sampleEvent(i)); !errors.Is(err, ErrNotDurable) || !errors.Is(err, errStoreDown) {
			t.Fatalf("Log with the store down = %v, want ErrNotDurable", err)
		}
	}
	if w.Healthy() == nil {
		t.Fatal("Healthy() = nil with the store down")
	}
	st.setFail(nil)
	for w.Healthy() != nil {
		time.Sleep(time.Millisecond) // until the writer's own retry (the test's timeout bounds it)
	}
	st.mu.Lock()
	evs := append([]Event(nil), st.events["n1"]...)
	st.mu.Unlock()
	if len(evs) != 3 || evs[2].Action != ActionOutage || evs[2].Count != 3 {
		t.Fatalf("store holds %d events, last %+v; want 2 and the outage event counting 3", len(evs), evs[len(evs)-1])
	}
	logN(t, w, 1)
	if rep, err := Verify(context.Background(), st, testLookup); err != nil || rep.Events != 4 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

func TestWriterRecoversFromCommitWithLostReply(t *testing.T) {
	st := newMemStore()
	w := newTestWriter(t, st, WriterConfig{})
	logN(t, w, 2)
	st.mu.Lock()
	st.commitThenFail = true
	st.mu.Unlock()
	if err := w.Log(context.Background(), sampleEvent(3)); err == nil {
		t.Fatal("Log succeeded though the store reported failure")
	}
	logN(t, w, 2)
	rep, err := Verify(context.Background(), st, testLookup)
	if err != nil || rep.Events != 6 {
		t.Fatalf("Verify = %+v, %v; want 6 events (the committed one kept, and the outage event)", rep, err)
	}
}

func TestWriterCheckpointsByInterval(t *testing.T) {
	st := newMemStore()
	clock := newFakeClock()
	w := newTestWriter(t, st, WriterConfig{Now: clock.Now, CheckpointEvery: -1, CheckpointInterval: time.Hour})
	logN(t, w, 3)
	if n := len(st.cps["n1"]); n != 0 {
		t.Fatalf("%d checkpoints before the interval passed", n)
	}
	clock.Advance(2 * time.Hour)
	logN(t, w, 1)
	cps := st.cps["n1"]
	if len(cps) != 1 || cps[0].Seq != 4 {
		t.Fatalf("checkpoints = %+v, want one at seq 4", cps)
	}
}

func TestWriterClose(t *testing.T) {
	st := newMemStore()
	sink := &memSink{}
	w := newTestWriter(t, st, WriterConfig{CheckpointEvery: 100, Sinks: []Sink{sink}})
	logN(t, w, 7)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := w.Log(context.Background(), sampleEvent(8)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Log after Close = %v, want ErrClosed", err)
	}
	if w.Healthy() == nil {
		t.Fatal("Healthy() = nil after Close")
	}
	if cps := st.cps["n1"]; len(cps) != 1 || cps[0].Seq != 7 {
		t.Fatalf("checkpoints after Close = %+v, want a final one at seq 7", cps)
	}
	if !sink.closed || len(sink.events) != 7 || len(sink.cps) != 1 {
		t.Fatalf("sink closed=%v events=%d checkpoints=%d, want closed, 7 and 1", sink.closed, len(sink.events), len(sink.cps))
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

func TestWriterFlushesQueuedEventsOnClose(t *testing.T) {
	st := newMemStore()
	st.delay = 2 * time.Millisecond
	w := newTestWriter(t, st, WriterConfig{})
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i := range 30 {
		wg.Go(func() {
			if w.Log(context.Background(), sampleEvent(i)) == nil {
				ok.Add(1)
			}
		})
	}
	time.Sleep(time.Millisecond)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if got := int64(len(st.events["n1"])); got != ok.Load() {
		t.Fatalf("store holds %d events, %d Log calls succeeded", got, ok.Load())
	}
	if _, err := Verify(context.Background(), st, testLookup); err != nil {
		t.Fatal(err)
	}
}

// memSink records what it is given; it fails while fail is set.
type memSink struct {
	mu     sync.Mutex
	events []Event
	cps    []Checkpoint
	fail   bool
	closed bool
}

func (s *memSink) WriteBatch(_ context.Context, events []Event, cps []Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errors.New("sink down")
	}
	s.events = append(s.events, events...)
	s.cps = append(s.cps, cps...)
	return nil
}

func (s *memSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *memSink) setFail(v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = v
}

func (s *memSink) seqs() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []uint64
	for _, e := range s.events {
		out = append(out, e.Seq)
	}
	return out
}

func contiguous(seqs []uint64, n int) bool {
	if len(seqs) != n {
		return false
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			return false
		}
	}
	return true
}

func TestWriterBestEffortSinkCatchesUp(t *testing.T) {
	st := newMemStore()
	sink := &memSink{}
	w := newTestWriter(t, st, WriterConfig{Sinks: []Sink{sink}})
	logN(t, w, 2)
	sink.setFail(true)
	logN(t, w, 3) // the sink fails; the requests do not
	if err := w.Healthy(); err != nil {
		t.Fatalf("a best-effort sink made the writer unhealthy: %v", err)
	}
	sink.setFail(false)
	logN(t, w, 1)
	// Best-effort sinks are fed after Log returns; Close waits for them.
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := sink.seqs(); !contiguous(got, 6) {
		t.Fatalf("sink holds seqs %v, want 1..6", got)
	}
}

func TestWriterRequiredSinkFailureFailsRequests(t *testing.T) {
	st := newMemStore()
	sink := &memSink{}
	w := newTestWriter(t, st, WriterConfig{RequiredSinks: []Sink{sink}})
	logN(t, w, 2)
	sink.setFail(true)
	if err := w.Log(context.Background(), sampleEvent(3)); coffer.ErrorCode(err) != coffer.EUNAVAILABLE {
		t.Fatalf("Log with a required sink down = %v, want unavailable", err)
	}
	if w.Healthy() == nil {
		t.Fatal("Healthy() = nil with a required sink down")
	}
	sink.setFail(false)
	logN(t, w, 1)
	if err := w.Healthy(); err != nil {
		t.Fatalf("Healthy() = %v after the sink came back", err)
	}
	if got := sink.seqs(); !contiguous(got, 4) {
		t.Fatalf("sink holds seqs %v, want 1..4", got)
	}
}

func TestWriterLogHonoursContext(t *testing.T) {
	st := newMemStore()
	st.delay = 50 * time.Millisecond
	w := newTestWriter(t, st, WriterConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if err := w.Log(ctx, sampleEvent(1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Log = %v, want the context's deadline", err)
	}
}

func BenchmarkLog(b *testing.B) {
	for _, bc := range []struct {
		name     string
		maxBatch int
	}{
		{"group-commit", 0},
		{"one-append-per-event", 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			st := newMemStore()
			st.delay = 200 * time.Microsecond // like an fsync
			w := newTestWriter(b, st, WriterConfig{MaxBatch: bc.maxBatch})
			e := sampleEvent(1)
			b.SetParallelism(32) // concurrent requests, as a server has
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := w.Log(context.Background(), e); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/float64(st.appends.Load()), "events/append")
		})
	}
}
