package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// clock is a hand-moved time for Progress.
type clock struct{ t time.Time }

func (c *clock) now() time.Time       { return c.t }
func (c *clock) tick(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                { return &clock{t: time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)} }
func ptr[T any](v T) *T               { return &v }
func lines(s string) []string         { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }
func progressTo(w *bytes.Buffer, c *clock, o ProgressOptions) *Progress {
	o.Now = c.now
	return NewProgress(w, "rewrap", o)
}

// TestProgressLinesWhenNotATerminal: off a terminal, a line at the first
// update, then at most one per interval (updates in between are not
// written), and a last line with the time taken; no control characters.
func TestProgressLinesWhenNotATerminal(t *testing.T) {
	var out bytes.Buffer
	c := newClock()
	p := progressTo(&out, c, ProgressOptions{TTY: ptr(false), Every: 5 * time.Second})
	c.tick(time.Second)
	p.Update(100, 1000) // first: shown
	c.tick(time.Second)
	p.Update(200, 1000) // 1s after the last line: not shown
	c.tick(3 * time.Second)
	p.Update(500, 1000) // 4s after: not shown
	c.tick(1500 * time.Millisecond)
	p.Update(650, 1000) // 5.5s after: shown
	c.tick(3500 * time.Millisecond)
	p.Update(1000, 1000)
	p.Finish()
	p.Update(1000, 1000) // after Finish: nothing
	got := lines(out.String())
	want := []string{
		"rewrap: 100/1000 (10%), 100/s, ETA 9s",
		"rewrap: 650/1000 (65%), 100/s, ETA 3.5s",
		"rewrap: 1000/1000 (100%), 100/s",
		"rewrap: 1000/1000 (100%), done in 10s, 100/s",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if strings.ContainsAny(out.String(), "\r\033") {
		t.Errorf("control characters off a terminal: %q", out.String())
	}
}

// TestProgressBarOnATerminal: on a terminal the bar is redrawn in place
// (carriage return, erase line), at most every 100ms, and Finish leaves it
// on its own line.
func TestProgressBarOnATerminal(t *testing.T) {
	var out bytes.Buffer
	c := newClock()
	p := progressTo(&out, c, ProgressOptions{TTY: ptr(true), Width: 10})
	c.tick(time.Second)
	p.Update(10, 40)
	c.tick(50 * time.Millisecond)
	p.Update(11, 40) // within 100ms: not drawn
	c.tick(time.Second)
	p.Update(20, 40)
	p.Finish()
	s := out.String()
	if n := strings.Count(s, "\r\033[K"); n != 3 {
		t.Errorf("drawn %d times, want 3: %q", n, s)
	}
	if !strings.HasSuffix(s, "\n") || strings.Count(s, "\n") != 1 {
		t.Errorf("want one newline, at the end: %q", s)
	}
	if !strings.Contains(s, "rewrap [##........] 10/40  25%  10/s  ETA 3s") {
		t.Errorf("first bar: %q", s)
	}
}

// TestRenderBar: the bar's fill, count, percentage, rate and time left;
// bytes in binary units; without a total, the count and rate; past the
// total the bar stays full.
func TestRenderBar(t *testing.T) {
	for _, c := range []struct {
		done, total int64
		elapsed     time.Duration
		bytes       bool
		final       bool
		want        string
	}{
		{0, 1000, 0, false, false, "job [....................] 0/1000   0%"},
		{250, 1000, 10 * time.Second, false, false, "job [#####...............] 250/1000  25%  25/s  ETA 30s"},
		{1000, 1000, 20 * time.Second, false, true, "job [####################] 1000/1000 100%  done in 20s  50/s"},
		{1200, 1000, 20 * time.Second, false, false, "job [####################] 1200/1000 100%  60/s"},
		{3 << 20, 12 << 20, 3 * time.Second, true, false, "job [#####...............] 3.0 MiB/12.0 MiB  25%  1.0 MiB/s  ETA 9s"},
		{512, 0, 2 * time.Second, true, false, "job 512 B  256 B/s"},
		{77, 0, 0, false, false, "job 77"},
	} {
		if got := RenderBar("job", c.done, c.total, c.elapsed, 20, c.bytes, c.final); got != c.want {
			t.Errorf("RenderBar(%d, %d, %s):\n got %q\nwant %q", c.done, c.total, c.elapsed, got, c.want)
		}
	}
	if got := RenderLine("backup", 5<<30, 0, time.Minute, true, true); got != "backup: 5.0 GiB, done in 1m0s, 85.3 MiB/s" {
		t.Errorf("RenderLine: %q", got)
	}
}

// TestProgressQuiet: -q shows nothing at all, and a nil Progress is safe.
func TestProgressQuiet(t *testing.T) {
	var out bytes.Buffer
	p := progressTo(&out, newClock(), ProgressOptions{Quiet: true, TTY: ptr(true)})
	p.Update(1, 2)
	p.Add(1)
	p.Finish()
	if out.Len() != 0 {
		t.Errorf("quiet progress wrote %q", out.String())
	}
	var none *Progress
	none.Update(1, 2)
	none.Add(1)
	none.Finish()
	none.Stop()
}
