package audit

import (
	"errors"
	"testing"
	"time"
)

// TestCheckColumnsNamesTheEditedColumn: every column kept beside the body
// is compared with it, and an edit of any one is named.
func TestCheckColumnsNamesTheEditedColumn(t *testing.T) {
	e := sampleEvent(3)
	e.Node, e.Seq, e.ID, e.Hash, e.PrevHash = "n1", 3, EventID("n1", 3), Genesis("a"), Genesis("b")
	e.Time = time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	if err := CheckColumns(ColumnsOf(&e), &e); err != nil {
		t.Fatalf("the event's own columns: %v", err)
	}
	for column, edit := range map[string]func(c *Columns){
		"node":      func(c *Columns) { c.Node = "n2" },
		"seq":       func(c *Columns) { c.Seq = 4 },
		"id":        func(c *Columns) { c.ID = "n1:4" },
		"time":      func(c *Columns) { c.Time = c.Time.Add(time.Microsecond) },
		"principal": func(c *Columns) { c.Principal = "mallory" },
		"action":    func(c *Columns) { c.Action = "delete" },
		"hash":      func(c *Columns) { c.Hash = Genesis("c") },
		"prev_hash": func(c *Columns) { c.PrevHash = Genesis("c") },
	} {
		t.Run(column, func(t *testing.T) {
			c := ColumnsOf(&e)
			edit(&c)
			var cerr *CorruptEventError
			if err := CheckColumns(c, &e); !errors.As(err, &cerr) || cerr.Column != column {
				t.Fatalf("CheckColumns = %v, want column %s named", err, column)
			}
		})
	}
}

// TestFilterMatchesBodies: the filter is re-checked on the decoded event.
func TestFilterMatchesBodies(t *testing.T) {
	e := Event{PrincipalID: "alice", Action: "read", Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	for _, tc := range []struct {
		f    Filter
		want bool
	}{
		{Filter{}, true},
		{Filter{Principal: "alice", Action: "read", Since: e.Time}, true},
		{Filter{Principal: "mallory"}, false},
		{Filter{Action: "delete"}, false},
		{Filter{Since: e.Time.Add(time.Microsecond)}, false},
	} {
		if got := tc.f.Matches(&e); got != tc.want {
			t.Errorf("%+v.Matches = %v, want %v", tc.f, got, tc.want)
		}
	}
}
