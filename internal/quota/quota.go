package quota

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// Kinds of quota.
const (
	// Tokenize counts values tokenized, in any mode.
	Tokenize = "tokenize"
	// TokenizeLinkable counts values tokenized in a linkable mode
	// (deterministic or format-preserving): each is an answer of a
	// dictionary oracle for low-entropy values.
	TokenizeLinkable = "tokenize_linkable" // #nosec G101 -- a quota kind, not a credential
)

// Kinds lists every kind of quota.
func Kinds() []string { return []string{Tokenize, TokenizeLinkable} }

// DefaultPeriod is the period of every quota.
const DefaultPeriod = time.Hour

// slices is how many slices a period is counted in.
const periodSlices = 60

// maxIDLen caps the principal id in a counter key.
const maxIDLen = 256

// Store is the shared counting the meter needs; every method must be safe
// for concurrent use by several nodes sharing one database.
type Store interface {
	// AddCounts applies increments atomically, each returning the new
	// total of its key from its Since through its Window (see
	// coffer.CountAdd). Concurrent increments of one counter on any node
	// each see a distinct total.
	AddCounts(ctx context.Context, adds []coffer.CountAdd) ([]int, error)
	// Counts returns key's counters with a window in [since, before),
	// oldest first.
	Counts(ctx context.Context, key string, since, before time.Time) ([]coffer.CountAdd, error)
}

// Config sets the limits.
type Config struct {
	// Period is the sliding period every limit applies to (default 1h).
	Period time.Duration
	// Limits maps a kind to how many units every principal may use per
	// period; a kind absent or at 0 has no quota.
	Limits map[string]int
	// Roles maps a role to limits that replace Limits, kind by kind, for
	// the principals holding the role; of several roles that set a kind,
	// the largest limit applies. A role cannot lift a quota to none: give
	// it a large limit instead.
	Roles map[string]map[string]int
}

// Meter charges principals' use against their quotas. It is safe for
// concurrent use.
type Meter struct {
	cfg      Config
	store    Store
	now      func() time.Time
	onRefuse func(kind string)
}

// New returns a meter over store. now is the clock (nil: time.Now);
// onRefuse, if set, is told of every refused charge (for metrics).
func New(cfg Config, store Store, now func() time.Time, onRefuse func(kind string)) *Meter {
	if cfg.Period <= 0 {
		cfg.Period = DefaultPeriod
	}
	if now == nil {
		now = time.Now
	}
	if onRefuse == nil {
		onRefuse = func(string) {}
	}
	return &Meter{cfg: cfg, store: store, now: now, onRefuse: onRefuse}
}

// Limit returns principal p's limit of kind per period, 0 when it has none.
func (m *Meter) Limit(p *coffer.Principal, kind string) int {
	limit, byRole := m.cfg.Limits[kind], false
	for _, r := range p.Roles {
		if l, ok := m.cfg.Roles[r][kind]; ok && l > 0 && (!byRole || l > limit) {
			limit, byRole = l, true
		}
	}
	return max(limit, 0)
}

// Take charges the units in use (kind → units) to principal p, all or
// none, and returns a refund that gives them back (for work that was then
// not done; calling it more than once gives back once). Kinds without a
// limit for p are not counted. Errors are *coffer.Error: ERATELIMIT with
// RetryAfterSeconds when a charge would carry p over a limit, ETOOLARGE
// when a charge alone is larger than the limit, EUNAVAILABLE when the
// store cannot count (fail closed); nothing is charged then.
func (m *Meter) Take(ctx context.Context, p *coffer.Principal, use map[string]int) (refund func(context.Context), err error) {
	var taken []coffer.CountAdd
	refund = func(ctx context.Context) {
		if len(taken) == 0 {
			return
		}
		back := make([]coffer.CountAdd, len(taken))
		for i, a := range taken {
			back[i] = coffer.CountAdd{Key: a.Key, Window: a.Window, N: -a.N}
		}
		taken = nil
		// A refund that fails leaves the principal charged for work
		// not done: stricter, never looser.
		_, _ = m.store.AddCounts(context.WithoutCancel(ctx), back)
	}
	kinds := make([]string, 0, len(use))
	for k := range use {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	now := m.now()
	win := now.Truncate(m.sliceLen())
	for _, kind := range kinds {
		n, limit := use[kind], m.Limit(p, kind)
		if n <= 0 || limit == 0 {
			continue
		}
		if n > limit {
			refund(ctx)
			m.onRefuse(kind)
			return nil, coffer.Errorf(coffer.ETOOLARGE, "this request alone (%d) is over the principal's %s quota of %d per %s", n, kind, limit, m.cfg.Period)
		}
		a := coffer.CountAdd{Key: key(kind, p.ID), Window: win, N: n, Since: win.Add(-m.cfg.Period)}
		totals, err := m.store.AddCounts(ctx, []coffer.CountAdd{a})
		if err != nil || len(totals) != 1 {
			refund(ctx)
			return nil, &coffer.Error{Code: coffer.EUNAVAILABLE, Message: "the quota cannot be counted now; try again", RetryAfterSeconds: 5,
				Cause: fmt.Errorf("quota: charge %s: %w", kind, err)}
		}
		taken = append(taken, a)
		if totals[0] > limit {
			retry := m.retryAfter(ctx, a, totals[0]-n, n, limit, now)
			refund(ctx)
			m.onRefuse(kind)
			return nil, &coffer.Error{Code: coffer.ERATELIMIT, RetryAfterSeconds: retry,
				Message: fmt.Sprintf("the principal's %s quota of %d per %s is used up; retry after %d seconds", kind, limit, m.cfg.Period, retry)}
		}
	}
	return refund, nil
}

// retryAfter is how many seconds from now until enough of the use before
// this charge (used, of which the slices of a's period are read back) has
// left the period for n more to fit under limit. It is at least 1, and at
// most the period and one slice when the slices cannot be read.
func (m *Meter) retryAfter(ctx context.Context, a coffer.CountAdd, used, n, limit int, now time.Time) int {
	fallback := m.cfg.Period + m.sliceLen()
	wait := fallback
	counts, err := m.store.Counts(ctx, a.Key, a.Since, a.Window.Add(m.sliceLen()))
	if err == nil {
		sort.Slice(counts, func(i, j int) bool { return counts[i].Window.Before(counts[j].Window) })
		// Slices leave the period oldest first: a slice starting at s
		// stops counting once the current slice starts after s+Period.
		dropped := 0
		for _, c := range counts {
			dropped += c.N
			if used-dropped+n <= limit {
				wait = c.Window.Add(m.cfg.Period + m.sliceLen()).Sub(now)
				break
			}
		}
	}
	secs := math.Ceil(min(wait, fallback).Seconds())
	return int(max(secs, 1))
}

func (m *Meter) sliceLen() time.Duration { return max(m.cfg.Period/periodSlices, time.Millisecond) }

// key is the counter key of kind for principal id.
func key(kind, id string) string {
	if len(id) > maxIDLen {
		id = id[:maxIDLen]
	}
	return "quota|" + kind + "|principal:" + id
}
