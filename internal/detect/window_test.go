package detect

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/testclock"
)

// #14.7: data.bulk_read counts values, as detect.bulk_read_values says,
// not records: one search of 120 records of 5 fields returns 600 values.
func TestBulkReadCountsValuesNotRecords(t *testing.T) {
	tests := []struct {
		name string
		obs  []Observation
		want int
	}{
		{"one event for 120 records of 5 fields", []Observation{values(read(t0, "c1", 120), 600)}, 1},
		{"one event for 5 reads of 120 values each", repeat(5, values(read(t0, "c1", 24), 120)), 1},
		{"none for 120 records of 4 fields", []Observation{values(read(t0, "c1", 120), 480)}, 0},
		{"none for 600 records that showed no field", []Observation{values(read(t0, "c1", 600), 0)}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newMemStore()
			d := start(t, Config{}, s)
			for _, o := range tt.obs {
				d.Observe(t.Context(), o)
			}
			flush(t, d)
			evs := s.eventsOf(KindBulkRead)
			if len(evs) != tt.want {
				t.Fatalf("got %d bulk_read events, want %d", len(evs), tt.want)
			}
			if tt.want == 1 && evs[0].Detail["count"] != 600 {
				t.Errorf("detail count = %v, want the 600 values", evs[0].Detail["count"])
			}
		})
	}
}

// Every counting detector counts over a sliding window: a burst split
// across a minute boundary (half 10s before it, half 10s after) is one
// burst, while the same volume spread wider than the window is none. The
// clock is injected, and the observations take their time from it.
func TestSlidingWindowsAcrossBoundary(t *testing.T) {
	deny := with(read(time.Time{}, "c1", 0), func(o *Observation) { o.Decision, o.Status = "deny", 403 })
	missing := with(read(time.Time{}, "c1", 0), func(o *Observation) { o.Missing, o.Status = true, 404 })
	fail := Observation{SourceIP: "10.0.0.1", Action: "token", AuthFailure: true, Status: 401, AttemptedID: "alice"}
	tokenize := func(n, linkable int) Observation {
		return with(read(time.Time{}, "c1", n), func(o *Observation) { o.Action, o.Linkable = "tokenize", linkable })
	}
	tests := []struct {
		name string
		kind string
		half []Observation // sent twice: before and after the boundary
	}{
		{"data.bulk_read", KindBulkRead, []Observation{values(read(time.Time{}, "c1", 60), 300)}},
		{"auth.bruteforce", KindBruteForce, repeat(5, fail)},
		{"access.denied_burst", KindDeniedBurst, repeat(10, deny)},
		{"data.enumeration", KindEnumeration, repeat(10, missing)},
		{"data.bulk_tokenize", KindBulkTokenize, []Observation{tokenize(600, 0)}},
		{"data.bulk_tokenize of linkable values", KindBulkTokenize, []Observation{tokenize(150, 150)}},
	}
	boundary := time.Date(2026, 3, 10, 12, 1, 0, 0, time.UTC)
	for _, tt := range tests {
		for _, gap := range []struct {
			name  string
			after time.Duration // from the first half to the second
			want  int
		}{
			{"across the boundary", 20 * time.Second, 1},
			{"a window apart", time.Minute - time.Second, 1},
			{"further apart than the window", time.Minute + time.Minute/windowSlices + time.Second, 0},
		} {
			t.Run(tt.name+"/"+gap.name, func(t *testing.T) {
				t.Parallel()
				clock := testclock.New(boundary.Add(-10 * time.Second))
				s := newMemStore()
				d := start(t, Config{}, s, func(d *Deps) { d.Now = clock.Now })
				for _, o := range tt.half {
					d.Observe(t.Context(), o)
				}
				flush(t, d)
				clock.Advance(gap.after)
				for _, o := range tt.half {
					d.Observe(t.Context(), o)
				}
				flush(t, d)
				if got := len(s.eventsOf(tt.kind)); got != gap.want {
					t.Fatalf("got %d %s events, want %d (all: %v)", got, tt.kind, gap.want, s.kinds())
				}
			})
		}
	}
}

// Two nodes share one sliding window through the store: one reads before
// the boundary, the other after it, and exactly one event is raised.
func TestSlidingWindowSharedAcrossNodes(t *testing.T) {
	clock := testclock.New(time.Date(2026, 3, 10, 12, 0, 55, 0, time.UTC))
	s := newMemStore()
	a := start(t, Config{}, s, func(d *Deps) { d.Now = clock.Now })
	b := start(t, Config{}, s, func(d *Deps) { d.Now = clock.Now })
	a.Observe(t.Context(), values(read(time.Time{}, "c1", 60), 300))
	flush(t, a)
	clock.Advance(10 * time.Second)
	b.Observe(t.Context(), values(read(time.Time{}, "c1", 60), 300))
	flush(t, b)
	clock.Advance(10 * time.Second)
	a.Observe(t.Context(), values(read(time.Time{}, "c1", 60), 300))
	flush(t, a)
	if got := len(s.eventsOf(KindBulkRead)); got != 1 {
		t.Fatalf("two nodes reading 900 values across a boundary raised %d bulk_read events, want 1", got)
	}
}

// With the store down, a node still counts over a sliding window of its own.
func TestSlidingWindowOnThisNodeWhenStoreFails(t *testing.T) {
	clock := testclock.New(time.Date(2026, 3, 10, 12, 0, 50, 0, time.UTC))
	s := newMemStore()
	s.failCount = true
	d := New(Config{}, Deps{Store: s, Now: clock.Now, Rand: rand.Reader})
	d.Start(context.Background())
	t.Cleanup(d.Close)
	d.Observe(t.Context(), values(read(time.Time{}, "c1", 60), 300))
	flush(t, d)
	clock.Advance(20 * time.Second)
	d.Observe(t.Context(), values(read(time.Time{}, "c1", 60), 300))
	flush(t, d)
	if got := len(s.eventsOf(KindBulkRead)); got != 1 {
		t.Fatalf("got %d bulk_read events with the store's counter down, want 1", got)
	}
}

// values sets the values an observation returned.
func values(o Observation, n int) Observation {
	o.Values = n
	return o
}
