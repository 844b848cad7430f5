package auditadmin

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
)

// TestFlushFloorStore checks that the benchmark's flush floor writes what
// it is given, one line an event, wraps at the end of its scratch file,
// and closes the file with its context.
func TestFlushFloorStore(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	s, err := NewFlushFloorStore(ctx, nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	events := []audit.Event{
		{Node: "n1", Seq: 1, Time: time.Unix(1, 0).UTC(), Action: "records.read"},
		{Node: "n1", Seq: 2, Time: time.Unix(2, 0).UTC(), Action: "records.search"},
	}
	if err := s.AppendAudit(ctx, events, nil); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "audit-flush-floor.scratch")
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != flushFloorSize {
		t.Fatalf("scratch file is %d bytes, want %d", len(got), flushFloorSize)
	}
	lines := bytes.SplitN(got, []byte("\n"), 3)
	for i, e := range events {
		want, err := e.AppendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(lines[i], want) {
			t.Fatalf("line %d = %q, want %q", i, lines[i], want)
		}
	}
	// A batch that does not fit before the end starts again at 0.
	s.off = flushFloorSize - 10
	if err := s.AppendAudit(ctx, events[1:], nil); err != nil {
		t.Fatal(err)
	}
	if s.off != int64(len(lines[1])+1) {
		t.Fatalf("offset after wrapping = %d, want %d", s.off, len(lines[1])+1)
	}
	head := make([]byte, len(lines[1]))
	if _, err := s.f.ReadAt(head, 0); err != nil || !bytes.Equal(head, lines[1]) {
		t.Fatalf("after wrapping the file starts with %q (%v), want %q", head, err, lines[1])
	}
	cancel()
	// AfterFunc runs in its own goroutine: wait for the close.
	deadline := time.Now().Add(5 * time.Second)
	for s.AppendAudit(context.Background(), events, nil) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the scratch file is still open after its context ended")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the scratch file is still there after its context ended: %v", err)
	}
}
