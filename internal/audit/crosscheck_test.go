package audit

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestVerifyAllWhileWriting compares the store with a small, rotating file
// sink while writers log and checkpoint: a file read before the store, and
// the grace for the last batch, leave no false finding.
func TestVerifyAllWhileWriting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sink, err := NewJSONLFile(path, 16<<10)
	if err != nil {
		t.Fatal(err)
	}
	st := newMemStore()
	w := newTestWriter(t, st, WriterConfig{CheckpointEvery: 7, RequiredSinks: []Sink{sink}, Now: time.Now})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := w.Log(context.Background(), sampleEvent(g*100000+i)); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(200 * time.Microsecond) // a steady stream, not a flood

			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	ctx := context.Background()
	for round := 0; round < 5 || !rotated(t, path); round++ {
		if round == 200 {
			t.Fatal("the file never rotated")
		}
		// The grace covers the file write that follows each commit.
		if _, err := VerifyAll(ctx, st, testLookup, Copies{Files: []string{path}, FileNode: "n1", Grace: 250 * time.Millisecond}); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
}

func rotated(t *testing.T, path string) bool {
	files, err := LogFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	return len(files) > 2
}

// TestVerifyAllReportsEachDifference cuts the store's tail, deletes a
// checkpoint and edits a hash in the store's copy: each difference with
// the file is a finding naming node and seq, ranges merged.
func TestVerifyAllReportsEachDifference(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sink, err := NewJSONLFile(path, -1)
	if err != nil {
		t.Fatal(err)
	}
	st := newMemStore()
	w := newTestWriter(t, st, WriterConfig{CheckpointEvery: 10, RequiredSinks: []Sink{sink}})
	logN(t, w, 40)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	st.events["n1"] = st.events["n1"][:30]            // events 31..40 cut
	st.cps["n1"] = st.cps["n1"][:1]                   // checkpoints 20, 30 and 40 gone
	st.events["n1"][4].Hash = strings.Repeat("a", 64) // event 5 edited
	st.mu.Unlock()
	_, err = VerifyAll(context.Background(), st, testLookup, Copies{Files: []string{path}, FileNode: "n1", Grace: time.Millisecond})
	var f Findings
	if !errors.As(err, &f) {
		t.Fatalf("VerifyAll = %v, want Findings", err)
	}
	want := []struct {
		seq  uint64
		text string
	}{
		{5, "hash does not match"},                    // the store's chain
		{5, "event seq 5: hash differs"},              // store vs file
		{31, "events seq 31 to 40 (10): in the file"}, // the cut
		{20, "3 checkpoints from seq 20 to 40: in the file"},
	}
	for _, w := range want {
		found := false
		for _, e := range f {
			found = found || (e.Node == "n1" && e.Seq == w.seq && strings.Contains(e.Reason, w.text))
		}
		if !found {
			t.Errorf("no finding at seq %d with %q in:\n%v", w.seq, w.text, err)
		}
	}
	var verr *VerifyError
	if !errors.As(err, &verr) || verr.Seq != 5 {
		t.Errorf("errors.As finds %v first, want the store's chain break at seq 5", verr)
	}
}
