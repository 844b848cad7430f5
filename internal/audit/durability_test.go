package audit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// gatedStore holds every append until the test opens the gate: what the
// store has made durable is what memStore holds once an append returned.
type gatedStore struct {
	*memStore
	entered chan struct{} // one send per append, before it waits
	gate    chan struct{}
}

func newGatedStore() *gatedStore {
	return &gatedStore{memStore: newMemStore(), entered: make(chan struct{}, 100), gate: make(chan struct{})}
}

func (g *gatedStore) AppendAudit(ctx context.Context, events []Event, cps []Checkpoint) error {
	g.entered <- struct{}{}
	<-g.gate
	return g.memStore.AppendAudit(ctx, events, cps)
}

func (g *gatedStore) stored() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.events["n1"])
}

// TestWriterDefaultIsDurableBeforeTheAnswer: by default Log does not
// return before the store append holding its event returned.
func TestWriterDefaultIsDurableBeforeTheAnswer(t *testing.T) {
	st := newGatedStore()
	w := newTestWriter(t, st, WriterConfig{CheckpointEvery: -1, CheckpointInterval: -1})
	done := make(chan error, 1)
	go func() { done <- w.Log(context.Background(), sampleEvent(1)) }()
	<-st.entered
	select {
	case err := <-done:
		t.Fatalf("Log returned (%v) while its append was still running", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(st.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := st.stored(); n != 1 {
		t.Fatalf("Log returned with %d events stored, want 1", n)
	}
}

// TestWriterIntervalAnswersBeforeDurable: with a FlushInterval, Log
// returns before the append (that is the risk the mode takes), and the
// events are appended within the interval, in one batch.
func TestWriterIntervalAnswersBeforeDurable(t *testing.T) {
	st := newGatedStore()
	w := newTestWriter(t, st, WriterConfig{FlushInterval: 30 * time.Millisecond, CheckpointEvery: -1, CheckpointInterval: -1})
	for i := range 5 {
		if err := w.Log(context.Background(), sampleEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := st.stored(); n != 0 {
		t.Fatalf("%d events stored before any append", n)
	}
	select {
	case <-st.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("no append within the interval")
	}
	close(st.gate)
	deadline := time.Now().Add(5 * time.Second)
	for st.stored() < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 5 acknowledged events stored", st.stored())
		}
		time.Sleep(time.Millisecond)
	}
	if a := st.appends.Load(); a != 1 {
		t.Fatalf("%d appends for 5 events within one interval, want 1", a)
	}
}

// TestWriterIntervalFailsClosedOnceAnAppendFailed: in interval mode an
// append that fails loses the events already answered, makes the writer
// unhealthy and every later Log fail, until the store is back; the outage
// event then counts the lost events and says they were answered.
func TestWriterIntervalFailsClosedOnceAnAppendFailed(t *testing.T) {
	st := newMemStore()
	w := newTestWriter(t, st, WriterConfig{FlushInterval: 5 * time.Millisecond, RetryInterval: 10 * time.Millisecond})
	logN(t, w, 2)
	for w.Healthy() != nil || func() bool { st.mu.Lock(); defer st.mu.Unlock(); return len(st.events["n1"]) < 2 }() {
		time.Sleep(time.Millisecond)
	}
	st.setFail(errStoreDown)
	logN(t, w, 3) // acknowledged: the append has not happened yet
	deadline := time.Now().Add(5 * time.Second)
	for w.Healthy() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the writer stayed healthy after a failed append")
		}
		time.Sleep(time.Millisecond)
	}
	err := w.Log(context.Background(), sampleEvent(9))
	if coffer.ErrorCode(err) != coffer.EUNAVAILABLE || !errors.Is(err, errStoreDown) {
		t.Fatalf("Log after a failed append = %v, want EUNAVAILABLE", err)
	}
	st.setFail(nil)
	for w.Healthy() != nil { // the writer retries on its own
		if time.Now().After(deadline) {
			t.Fatal("not healthy after the store came back")
		}
		time.Sleep(time.Millisecond)
	}
	st.mu.Lock()
	evs := st.events["n1"]
	st.mu.Unlock()
	last := evs[len(evs)-1]
	if last.Action != ActionOutage || last.Count != 3 || !strings.Contains(last.Reason, "answered before their event was durable") {
		t.Fatalf("outage event = %+v, want 3 lost, answered", last)
	}
}
