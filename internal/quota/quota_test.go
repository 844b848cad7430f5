package quota_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/quota"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/testclock"
)

func forEach(t *testing.T, fn func(t *testing.T, db *store.DB)) {
	t.Helper()
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			fn(t, storetest.Open(t, b))
		})
	}
}

var t0 = time.Date(2026, 3, 10, 12, 0, 30, 0, time.UTC)

func code(err error) string { return coffer.ErrorCode(err) }

func retryAfter(err error) int {
	var e *coffer.Error
	if !errors.As(err, &e) {
		return -1
	}
	return e.RetryAfterSeconds
}

// A principal's use is counted over a sliding hour: refused once over its
// limit with a Retry-After that is when enough earlier use has left the
// hour, and served again from then on. Refused and refunded charges count
// for nothing.
func TestTakeSlidingHour(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clock := testclock.New(t0)
		var refused []string
		m := quota.New(quota.Config{Limits: map[string]int{quota.TokenizeLinkable: 100}}, db, clock.Now,
			func(k string) { refused = append(refused, k) })
		p := &coffer.Principal{ID: "cl_a", Roles: []string{"billing"}}
		use := func(n int) map[string]int { return map[string]int{quota.Tokenize: n, quota.TokenizeLinkable: n} }

		if _, err := m.Take(ctx, p, use(60)); err != nil {
			t.Fatal(err)
		}
		clock.Advance(20 * time.Minute)
		if _, err := m.Take(ctx, p, use(30)); err != nil {
			t.Fatal(err)
		}
		clock.Advance(10 * time.Minute)
		_, err := m.Take(ctx, p, use(20))
		if code(err) != coffer.ERATELIMIT {
			t.Fatalf("110 of 100 in an hour: %v, want rate_limited", err)
		}
		// The first 60 leave the hour at 13:01 (their minute, 12:00, plus
		// an hour and a minute): 30 minutes from now.
		if got := retryAfter(err); got != 30*60+30 {
			t.Errorf("Retry-After = %ds, want %ds", got, 30*60+30)
		}
		if len(refused) != 1 || refused[0] != quota.TokenizeLinkable {
			t.Errorf("refusals reported: %v", refused)
		}
		// The refused 20 were not charged: 10 more still fit.
		refund, err := m.Take(ctx, p, use(10))
		if err != nil {
			t.Fatalf("10 more within the limit: %v", err)
		}
		refund(ctx)
		refund(ctx) // gives back once
		if _, err := m.Take(ctx, p, use(10)); err != nil {
			t.Fatalf("after a refund: %v", err)
		}
		// Another principal has its own quota.
		if _, err := m.Take(ctx, &coffer.Principal{ID: "cl_b"}, use(100)); err != nil {
			t.Fatalf("another principal: %v", err)
		}
		_, err = m.Take(ctx, p, use(20))
		if got := retryAfter(err); got != 30*60+30 {
			t.Fatalf("Retry-After = %ds, want %ds", got, 30*60+30)
		}
		clock.Advance(time.Duration(retryAfter(err)) * time.Second)
		if _, err := m.Take(ctx, p, use(20)); err != nil {
			t.Fatalf("after Retry-After: %v", err)
		}
	})
}

// Limits per role replace the default, the largest of a principal's roles
// wins, and a request larger than the whole limit is a 413.
func TestLimitsByRole(t *testing.T) {
	m := quota.New(quota.Config{
		Limits: map[string]int{quota.TokenizeLinkable: 100},
		Roles: map[string]map[string]int{
			"batch": {quota.TokenizeLinkable: 5000, quota.Tokenize: 9000},
			"small": {quota.TokenizeLinkable: 10},
		},
	}, nil, nil, nil)
	for _, tt := range []struct {
		roles []string
		kind  string
		want  int
	}{
		{nil, quota.TokenizeLinkable, 100},
		{nil, quota.Tokenize, 0},
		{[]string{"small"}, quota.TokenizeLinkable, 10},
		{[]string{"small", "batch"}, quota.TokenizeLinkable, 5000},
		{[]string{"batch"}, quota.Tokenize, 9000},
		{[]string{"other"}, quota.TokenizeLinkable, 100},
	} {
		if got := m.Limit(&coffer.Principal{ID: "x", Roles: tt.roles}, tt.kind); got != tt.want {
			t.Errorf("Limit(%v, %s) = %d, want %d", tt.roles, tt.kind, got, tt.want)
		}
	}
	if _, err := m.Take(context.Background(), &coffer.Principal{ID: "x"}, map[string]int{quota.TokenizeLinkable: 101}); code(err) != coffer.ETOOLARGE {
		t.Fatalf("101 of a limit of 100 at once: %v, want too_large", err)
	}
}

// Nodes share the quota through the store: concurrent charges on two
// meters never let more than the limit through in total.
func TestTakeAcrossNodes(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		cfg := quota.Config{Limits: map[string]int{quota.Tokenize: 50}}
		nodes := []*quota.Meter{quota.New(cfg, db, func() time.Time { return t0 }, nil), quota.New(cfg, db, func() time.Time { return t0 }, nil)}
		p := &coffer.Principal{ID: "cl_a"}
		var (
			ok atomic.Int64
			wg sync.WaitGroup
		)
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 20 {
					_, err := nodes[i%2].Take(ctx, p, map[string]int{quota.Tokenize: 1})
					switch code(err) {
					case "":
						ok.Add(1)
					case coffer.ERATELIMIT:
					default:
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if got := ok.Load(); got != 50 {
			t.Fatalf("%d charges of 1 accepted against a limit of 50 across two nodes", got)
		}
	})
}

// A store that cannot count refuses the charge (fail closed).
func TestTakeFailsClosed(t *testing.T) {
	db, err := store.Open(context.Background(), storetest.SQLiteDSN(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	m := quota.New(quota.Config{Limits: map[string]int{quota.Tokenize: 50}}, db, nil, nil)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Take(context.Background(), &coffer.Principal{ID: "cl_a"}, map[string]int{quota.Tokenize: 1}); code(err) != coffer.EUNAVAILABLE {
		t.Fatalf("charge with the store closed: %v, want unavailable", err)
	}
}
