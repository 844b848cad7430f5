package cli

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// ProgressOptions tune a Progress.
type ProgressOptions struct {
	// Quiet shows nothing (the commands' -q).
	Quiet bool
	// Bytes says the counts are bytes (shown as KiB, MiB, …).
	Bytes bool
	// TTY, if set, overrides whether the writer is taken for a terminal.
	TTY *bool
	// Every is how often a line is written when not on a terminal
	// (default 5s); on a terminal the bar is redrawn at most every 100ms.
	Every time.Duration
	// Width is the bar's width in characters (default 30).
	Width int
	// Now tells the time (default time.Now).
	Now func() time.Time
}

// Progress shows how far a long job (a backup, a restore, a root key
// rotation, a rewrap or reindex a server runs) has come, on standard
// error so that standard output stays what the command prints. On a
// terminal it is a bar redrawn in place with the count of the total, the
// percentage, the rate and the time left; otherwise a line at the first
// update, then one at most every ProgressOptions.Every, and a last one
// when it ends, so that a log shows the job moving without filling up;
// with Quiet, nothing. It never shows anything but counts and times. A
// nil *Progress does nothing. Safe for concurrent use.
type Progress struct {
	w     io.Writer
	label string
	o     ProgressOptions
	tty   bool

	mu          sync.Mutex
	start, last time.Time
	done, total int64
	shown       bool
	ended       bool
}

// NewProgress returns a Progress writing to w under label.
func NewProgress(w io.Writer, label string, o ProgressOptions) *Progress {
	if o.Every <= 0 {
		o.Every = 5 * time.Second
	}
	if o.Width <= 0 {
		o.Width = 30
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	tty := isTerminal(w)
	if o.TTY != nil {
		tty = *o.TTY
	}
	return &Progress{w: w, label: label, o: o, tty: tty, start: o.Now()}
}

// Update says done of total are through (total 0: not known).
func (p *Progress) Update(done, total int64) {
	if p == nil || p.o.Quiet {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return
	}
	p.done, p.total = done, total
	now := p.o.Now()
	gap := p.o.Every
	if p.tty {
		gap = 100 * time.Millisecond
	}
	if p.shown && now.Sub(p.last) < gap && !(total > 0 && done >= total) {
		return
	}
	p.draw(now, false)
}

// Add moves the count on by n, the total unchanged.
func (p *Progress) Add(n int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	done, total := p.done+n, p.total
	p.mu.Unlock()
	p.Update(done, total)
}

// Finish shows the job as ended with what was counted last: the final
// bar or line, and the time it took.
func (p *Progress) Finish() {
	if p == nil || p.o.Quiet {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return
	}
	p.draw(p.o.Now(), true)
	if p.tty {
		fmt.Fprintln(p.w)
	}
	p.ended = true
}

// Stop ends the display without claiming the job ended (it failed or was
// cut short): on a terminal the bar stays as it was, on its own line.
func (p *Progress) Stop() {
	if p == nil || p.o.Quiet {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.shown && !p.ended {
		fmt.Fprintln(p.w)
	}
	p.ended = true
}

func (p *Progress) draw(now time.Time, final bool) {
	elapsed := now.Sub(p.start)
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K"+RenderBar(p.label, p.done, p.total, elapsed, p.o.Width, p.o.Bytes, final))
	} else {
		fmt.Fprintln(p.w, RenderLine(p.label, p.done, p.total, elapsed, p.o.Bytes, final))
	}
	p.shown, p.last = true, now
}

// RenderBar is the terminal form of a progress report: label, a bar of
// width characters, done/total, percentage, rate and time left (or, when
// final, the time taken). Without a total it shows the count and rate.
func RenderBar(label string, done, total int64, elapsed time.Duration, width int, bytes, final bool) string {
	var b strings.Builder
	b.WriteString(label)
	if total > 0 {
		frac := min(float64(done)/float64(total), 1)
		fill := int(frac * float64(width))
		b.WriteString(" [")
		b.WriteString(strings.Repeat("#", fill))
		b.WriteString(strings.Repeat(".", width-fill))
		fmt.Fprintf(&b, "] %s/%s %3.0f%%", amount(done, bytes), amount(total, bytes), frac*100)
	} else {
		fmt.Fprintf(&b, " %s", amount(done, bytes))
	}
	b.WriteString(tail(done, total, elapsed, bytes, final, "  "))
	return b.String()
}

// RenderLine is the form of a progress report written when standard error
// is not a terminal: one line, no control characters.
func RenderLine(label string, done, total int64, elapsed time.Duration, bytes, final bool) string {
	var b strings.Builder
	b.WriteString(label)
	b.WriteString(": ")
	b.WriteString(amount(done, bytes))
	if total > 0 {
		fmt.Fprintf(&b, "/%s (%.0f%%)", amount(total, bytes), min(float64(done)/float64(total), 1)*100)
	}
	b.WriteString(tail(done, total, elapsed, bytes, final, ", "))
	return b.String()
}

// tail is the rate and the time left, or when final the time taken.
func tail(done, total int64, elapsed time.Duration, bytes, final bool, sep string) string {
	var b strings.Builder
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(done) / s
	}
	if final {
		fmt.Fprintf(&b, "%sdone in %s", sep, roundDuration(elapsed))
		if rate > 0 {
			fmt.Fprintf(&b, "%s%s/s", sep, amount(int64(rate), bytes))
		}
		return b.String()
	}
	if rate > 0 {
		fmt.Fprintf(&b, "%s%s/s", sep, amount(int64(rate), bytes))
		if total > done {
			eta := time.Duration(float64(total-done) / rate * float64(time.Second))
			fmt.Fprintf(&b, "%sETA %s", sep, roundDuration(eta))
		}
	}
	return b.String()
}

func roundDuration(d time.Duration) time.Duration {
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}

// amount formats a count, or a byte size in binary units.
func amount(n int64, bytes bool) string {
	if !bytes {
		return fmt.Sprint(n)
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n), -1
	for f >= unit && i < 4 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTP"[i])
}
