package detect

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // pin zone data so the hours tests do not depend on the host

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/testlog"
)

// memStore is an in-memory Store for these tests.
type memStore struct {
	mu        sync.Mutex
	events    []coffer.SecurityEvent
	counts    map[string]int
	sus       map[string]Suspension
	failCount bool
}

func newMemStore() *memStore {
	return &memStore{counts: map[string]int{}, sus: map[string]Suspension{}}
}

func (s *memStore) InsertSecurityEvent(_ context.Context, e coffer.SecurityEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, e)
	return nil
}

func (s *memStore) SecurityEvents(_ context.Context, since time.Time, kind string, limit int) ([]coffer.SecurityEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []coffer.SecurityEvent
	for _, e := range s.events {
		if e.Time.Before(since) || (kind != "" && e.Kind != kind) {
			continue
		}
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (s *memStore) AddCount(_ context.Context, key string, window time.Time, n int) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failCount {
		return 0, errors.New("database is down")
	}
	k := fmt.Sprintf("%s@%d", key, window.UnixNano())
	s.counts[k] += n
	return s.counts[k], nil
}

func (s *memStore) AddCounts(ctx context.Context, adds []CountAdd) ([]int, error) {
	out := make([]int, len(adds))
	for i, a := range adds {
		n, err := s.AddCount(ctx, a.Key, a.Window, a.N)
		if err != nil {
			return nil, err
		}
		out[i] = n + s.sum(a.Key, a.Since, a.Window)
	}
	return out, nil
}

// sum adds key's counts of the windows in [since, before).
func (s *memStore) sum(key string, since, before time.Time) int {
	if since.IsZero() {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	total := 0
	for k, n := range s.counts {
		name, at, _ := strings.Cut(k, "@")
		var ns int64
		if _, err := fmt.Sscan(at, &ns); err != nil || name != key {
			continue
		}
		if w := time.Unix(0, ns); !w.Before(since) && w.Before(before) {
			total += n
		}
	}
	return total
}

func (s *memStore) SuspendPrincipal(_ context.Context, id string, until time.Time, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sus[id] = Suspension{Principal: id, Until: until, Reason: reason}
	return nil
}

func (s *memStore) Suspensions(context.Context) ([]Suspension, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Suspension
	for _, v := range s.sus {
		out = append(out, v)
	}
	return out, nil
}

func (s *memStore) kinds() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.events {
		out = append(out, e.Kind)
	}
	return out
}

func (s *memStore) eventsOf(kind string) []coffer.SecurityEvent {
	evs, _ := s.SecurityEvents(context.Background(), time.Time{}, kind, 1<<30)
	return evs
}

// t0 is a pinned clock: a Tuesday, 12:00:05 UTC.
var t0 = time.Date(2026, 3, 10, 12, 0, 5, 0, time.UTC)

func pinned() time.Time { return t0 }

// start returns a started detector over store, closed at the end of the test.
func start(t *testing.T, cfg Config, store Store, opts ...func(*Deps)) *Detector {
	t.Helper()
	deps := Deps{Store: store, Now: pinned, Rand: rand.Reader}
	for _, o := range opts {
		o(&deps)
	}
	d := New(cfg, deps)
	d.Start(context.Background())
	t.Cleanup(d.Close)
	return d
}

// flush waits until everything observed so far was processed.
func flush(t *testing.T, d *Detector) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.barrier(ctx); err != nil {
		t.Fatalf("barrier: %v", err)
	}
}

// read is a read of n values (n records of one field each).
func read(at time.Time, who string, n int) Observation {
	return Observation{Time: at, PrincipalID: who, PrincipalKind: "client", SourceIP: "10.0.0.1",
		Action: "read", Resource: "collections/customers", Decision: "allow", Status: 200, Count: n, Values: n}
}

// apart is further apart than the default window and one of its slices:
// counts that far apart never add up.
const apart = DefaultWindow + DefaultWindow/windowSlices

func TestBulkRead(t *testing.T) {
	tests := []struct {
		name  string
		obs   []Observation
		want  int
		count int
	}{
		{"one event for 600 values in a window", repeat(6, read(t0, "c1", 100)), 1, 600},
		{"one event for 2000 values in a window", repeat(20, read(t0, "c1", 100)), 1, 600},
		{"no event at exactly the threshold", repeat(5, read(t0, "c1", 100)), 0, 0},
		{"no event when split further apart than the window",
			append(repeat(3, read(t0, "c1", 100)), repeat(3, read(t0.Add(apart), "c1", 100))...), 0, 0},
		{"no event when split across principals",
			append(repeat(3, read(t0, "c1", 100)), repeat(3, read(t0, "c2", 100))...), 0, 0},
		{"no event for tokenize (values sent, not returned)", repeat(6, with(read(t0, "c1", 100), func(o *Observation) { o.Action, o.Values = "tokenize", 0 })), 0, 0},
		{"one event for updates answered with 600 values", repeat(6, with(read(t0, "c1", 100), func(o *Observation) { o.Action = "update" })), 1, 600},
		{"no event for denied reads", repeat(6, with(read(t0, "c1", 100), func(o *Observation) { o.Decision = "deny" })), 0, 0},
		{"one event for detokenize of 600 values at once", []Observation{with(read(t0, "c1", 600), func(o *Observation) { o.Action = "detokenize" })}, 1, 600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newMemStore()
			var hook []string
			var mu sync.Mutex
			d := start(t, Config{}, s, func(d *Deps) {
				d.OnEvent = func(k string) { mu.Lock(); hook = append(hook, k); mu.Unlock() }
			})
			for _, o := range tt.obs {
				d.Observe(t.Context(), o)
			}
			flush(t, d)
			evs := s.eventsOf(KindBulkRead)
			if len(evs) != tt.want {
				t.Fatalf("got %d bulk_read events, want %d (all: %v)", len(evs), tt.want, s.kinds())
			}
			mu.Lock()
			defer mu.Unlock()
			if len(hook) != tt.want {
				t.Errorf("OnEvent called %d times, want %d", len(hook), tt.want)
			}
			if tt.want == 0 {
				return
			}
			e := evs[0]
			if e.Principal != "c1" || e.Severity != SeverityHigh || e.ID == "" {
				t.Errorf("event = %+v", e)
			}
			if got := e.Detail["count"]; got != tt.count {
				t.Errorf("detail count = %v, want %d", got, tt.count)
			}
			if got := e.Detail["threshold"]; got != DefaultBulkReadValues {
				t.Errorf("detail threshold = %v", got)
			}
		})
	}
}

func TestBruteForce(t *testing.T) {
	fail := func(ip, id string) Observation {
		return Observation{Time: t0, SourceIP: ip, Action: "login", AuthFailure: true, Status: 401, AttemptedID: id}
	}
	var fromManyIPs, forManyIDs []Observation
	for i := range 10 {
		fromManyIPs = append(fromManyIPs, fail(fmt.Sprintf("10.0.0.%d", i), "alice"))
		forManyIDs = append(forManyIDs, fail("10.9.9.9", fmt.Sprintf("user%d", i)))
	}
	tests := []struct {
		name          string
		obs           []Observation
		want          int
		wantPrincipal string
	}{
		{"one event for 20 failures of one id from one ip", repeat(20, fail("10.0.0.1", "alice")), 1, "alice"},
		{"no event for 9 failures", repeat(9, fail("10.0.0.1", "alice")), 0, ""},
		{"one event for one id from many ips", fromManyIPs, 1, "alice"},
		{"one event for many ids from one ip", forManyIDs, 1, "user9"},
		{"no event for failures spread wider than the window",
			append(repeat(5, fail("10.0.0.1", "alice")), repeat(5, with(fail("10.0.0.1", "alice"), func(o *Observation) { o.Time = t0.Add(apart) }))...), 0, ""},
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
			evs := s.eventsOf(KindBruteForce)
			if len(evs) != tt.want {
				t.Fatalf("got %d auth.bruteforce events, want %d", len(evs), tt.want)
			}
			if tt.want == 1 && (evs[0].Principal != tt.wantPrincipal || evs[0].Severity != SeverityHigh) {
				t.Errorf("event = %+v", evs[0])
			}
			if all := s.kinds(); len(all) != tt.want {
				t.Errorf("other events raised: %v", all)
			}
		})
	}
}

func TestDeniedBurstAndEnumeration(t *testing.T) {
	deny := with(read(t0, "c1", 0), func(o *Observation) { o.Decision, o.Status = "deny", 403 })
	missing := with(read(t0, "c1", 0), func(o *Observation) { o.Missing, o.Status = true, 404 })
	anonDeny := Observation{Time: t0, SourceIP: "192.0.2.7", Action: "read", Decision: "deny", Status: 403}
	tests := []struct {
		name string
		obs  []Observation
		kind string
		want int
	}{
		{"denied burst at 20 denials", repeat(20, deny), KindDeniedBurst, 1},
		{"one denied burst for 60 denials", repeat(60, deny), KindDeniedBurst, 1},
		{"no denied burst at 19 denials", repeat(19, deny), KindDeniedBurst, 0},
		{"denied burst per ip without principal", repeat(20, anonDeny), KindDeniedBurst, 1},
		{"enumeration at 20 missing ids", repeat(20, missing), KindEnumeration, 1},
		{"no enumeration at 19 missing ids", repeat(19, missing), KindEnumeration, 0},
		{"no enumeration for reads that found their record", repeat(40, read(t0, "c1", 1)), KindEnumeration, 0},
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
			if got := len(s.eventsOf(tt.kind)); got != tt.want {
				t.Fatalf("got %d %s events, want %d (all: %v)", got, tt.kind, tt.want, s.kinds())
			}
		})
	}
}

func TestCanaryRaisedAtOnce(t *testing.T) {
	s := newMemStore()
	d := start(t, Config{}, s)
	o := read(t0, "c1", 1)
	o.Canary, o.Resource = true, "collections/customers/rec_canary"
	d.Observe(t.Context(), o)
	flush(t, d)
	evs := s.eventsOf(KindCanary)
	if len(evs) != 1 {
		t.Fatalf("got %d canary events after one touch, want 1", len(evs))
	}
	if evs[0].Severity != SeverityHigh || evs[0].Detail["resource"] != o.Resource || evs[0].Principal != "c1" {
		t.Errorf("event = %+v", evs[0])
	}

	// The same touch again in the cooldown window is not raised again; a
	// different canary is.
	d.Observe(t.Context(), o)
	o2 := o
	o2.Resource = "tokens/card_number"
	d.Observe(t.Context(), o2)
	flush(t, d)
	if got := len(s.eventsOf(KindCanary)); got != 2 {
		t.Fatalf("got %d canary events, want 2 (cooldown per resource)", got)
	}
}

func TestUnusualHour(t *testing.T) {
	cfg := Config{Hours: map[string]string{
		"night-batch": "22:00-06:00",
		"support":     "08:00-18:00 Europe/Berlin",
		"sales":       "19:00-20:00",
		"svc-1":       "00:00-24:00",
	}}
	at := func(hh, mm int) time.Time { return time.Date(2026, 3, 10, hh, mm, 0, 0, time.UTC) }
	tests := []struct {
		name string
		obs  Observation
		want int
	}{
		{"event for a support read at 06:30 UTC (07:30 Berlin)", withRoles(read(at(6, 30), "u1", 1), "support"), 1},
		{"none for a support read at 07:30 UTC (08:30 Berlin)", withRoles(read(at(7, 30), "u1", 1), "support"), 0},
		{"event for a support read at 17:00 UTC (18:00 Berlin)", withRoles(read(at(17, 0), "u1", 1), "support"), 1},
		{"none for a night batch at 23:00", withRoles(read(at(23, 0), "u2", 1), "night-batch"), 0},
		{"none for a night batch at 05:59", withRoles(read(at(5, 59), "u2", 1), "night-batch"), 0},
		{"event for a night batch at noon", withRoles(read(at(12, 0), "u2", 1), "night-batch"), 1},
		{"none when inside any one role's hours", withRoles(read(at(19, 30), "u3", 1), "support", "sales"), 0},
		{"event when outside every role's hours", withRoles(read(at(21, 0), "u3", 1), "support", "sales"), 1},
		{"none for a principal id hours all day", withRoles(read(at(3, 0), "svc-1", 1), "sales"), 0},
		{"none for a principal without hours", withRoles(read(at(3, 0), "u4", 1), "admin"), 0},
		{"none for a denied request", with(withRoles(read(at(3, 0), "u5", 0), "sales"), func(o *Observation) { o.Decision = "deny" }), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newMemStore()
			d := start(t, cfg, s)
			d.Observe(t.Context(), tt.obs)
			flush(t, d)
			evs := s.eventsOf(KindUnusualHour)
			if len(evs) != tt.want {
				t.Fatalf("got %d unusual_hour events, want %d", len(evs), tt.want)
			}
			if tt.want == 1 && evs[0].Detail["hours"] == nil {
				t.Errorf("detail lacks the hours: %v", evs[0].Detail)
			}
		})
	}
}

func TestUnusualHourFromPinnedClock(t *testing.T) {
	// An observation without a time takes Deps.Now: 12:00:05 UTC.
	s := newMemStore()
	d := start(t, Config{Hours: map[string]string{"*": "08:00-12:00"}}, s)
	o := read(time.Time{}, "c1", 1)
	d.Observe(t.Context(), o)
	flush(t, d)
	evs := s.eventsOf(KindUnusualHour)
	if len(evs) != 1 || !evs[0].Time.Equal(t0) {
		t.Fatalf("events = %+v, want one at %v", evs, t0)
	}
}

func TestSharedCountsAcrossNodes(t *testing.T) {
	s := newMemStore()
	a := start(t, Config{}, s)
	b := start(t, Config{}, s)
	for range 3 {
		a.Observe(t.Context(), read(t0, "c1", 100))
		b.Observe(t.Context(), read(t0, "c1", 100))
	}
	flush(t, a)
	flush(t, b)
	if got := len(s.eventsOf(KindBulkRead)); got != 1 {
		t.Fatalf("two nodes with 300 values each raised %d bulk_read events, want 1", got)
	}
}

func TestCountsOnThisNodeWhenStoreFails(t *testing.T) {
	s := newMemStore()
	s.failCount = true
	d := start(t, Config{}, s)
	for range 10 {
		d.Observe(t.Context(), Observation{Time: t0, SourceIP: "10.0.0.1", AuthFailure: true, AttemptedID: "bob"})
	}
	flush(t, d)
	if got := len(s.eventsOf(KindBruteForce)); got != 1 {
		t.Fatalf("got %d auth.bruteforce events with the store's counter down, want 1", got)
	}
}

func TestSuspension(t *testing.T) {
	ctx := context.Background()
	s := newMemStore()
	cfg := Config{SuspendOn: []string{KindCanary}, SuspendFor: 30 * time.Minute}
	a := start(t, cfg, s)
	o := read(t0, "c1", 1)
	o.Canary = true
	a.Observe(t.Context(), o)
	// A kind not in SuspendOn suspends nobody.
	for range 6 {
		a.Observe(t.Context(), read(t0, "c2", 100))
	}
	flush(t, a)
	if !a.Suspended("c1") {
		t.Fatal("c1 not suspended after touching a canary")
	}
	if a.Suspended("c2") {
		t.Error("c2 suspended after a bulk read, which is not in SuspendOn")
	}
	if sus := s.sus["c1"]; !sus.Until.Equal(t0.Add(30*time.Minute)) || sus.Reason != KindCanary {
		t.Errorf("stored suspension = %+v", sus)
	}

	// Another node learns of it from the store.
	b := start(t, cfg, s)
	if !b.Suspended("c1") {
		t.Fatal("second node does not see the stored suspension")
	}

	if lifted, err := a.Lift(ctx, "c1"); err != nil || !lifted {
		t.Fatalf("Lift(c1) = %v, %v; want lifted", lifted, err)
	}
	if a.Suspended("c1") {
		t.Error("c1 still suspended after Lift")
	}
	b.syncSuspensions(ctx)
	if b.Suspended("c1") {
		t.Error("second node still suspends c1 after Lift and a sync")
	}

	// Lifting what is not suspended (any id an admin sends) stores nothing.
	if lifted, err := a.Lift(ctx, "' OR '1'='1"); err != nil || lifted {
		t.Fatalf("Lift of a principal never suspended = %v, %v; want nothing lifted", lifted, err)
	}
	list, err := s.Suspensions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Principal != "c1" {
		t.Errorf("suspensions after lifting a principal never suspended: %+v", list)
	}
}

func TestSuspensionExpires(t *testing.T) {
	now := t0
	var mu sync.Mutex
	s := newMemStore()
	d := start(t, Config{SuspendOn: []string{KindCanary}, SuspendFor: time.Minute}, s, func(d *Deps) {
		d.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	})
	o := read(t0, "c1", 1)
	o.Canary = true
	d.Observe(t.Context(), o)
	flush(t, d)
	if !d.Suspended("c1") {
		t.Fatal("not suspended")
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	if d.Suspended("c1") {
		t.Fatal("still suspended once SuspendFor has passed")
	}
}

func TestEvents(t *testing.T) {
	s := newMemStore()
	d := start(t, Config{}, s)
	c := read(t0, "c1", 1)
	c.Canary = true
	d.Observe(t.Context(), c)
	for range 20 {
		d.Observe(t.Context(), with(read(t0, "c1", 0), func(o *Observation) { o.Decision = "deny" }))
	}
	flush(t, d)
	ctx := context.Background()
	all, err := d.Events(ctx, time.Time{}, "", 0)
	if err != nil || len(all) != 2 {
		t.Fatalf("Events = %d, %v; want 2", len(all), err)
	}
	only, err := d.Events(ctx, time.Time{}, KindDeniedBurst, 10)
	if err != nil || len(only) != 1 || only[0].Kind != KindDeniedBurst {
		t.Fatalf("Events(kind) = %+v, %v", only, err)
	}
	later, err := d.Events(ctx, t0.Add(time.Second), "", 10)
	if err != nil || len(later) != 0 {
		t.Fatalf("Events(since after) = %+v, %v", later, err)
	}
}

// receiver is a webhook endpoint that checks every signature.
type receiver struct {
	secret string
	mu     sync.Mutex
	bodies [][]byte
	bad    int
	got    chan []byte
}

func (r *receiver) check(t *testing.T, req *http.Request) []byte {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		t.Errorf("read body: %v", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !VerifySignature(r.secret, body, req.Header.Get(HeaderSignature)) {
		r.bad++
	}
	if ts := req.Header.Get(HeaderTimestamp); ts != fmt.Sprint(t0.Unix()) {
		t.Errorf("timestamp header = %q, want %d", ts, t0.Unix())
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type = %q", ct)
	}
	r.bodies = append(r.bodies, body)
	return body
}

func TestWebhookRetriesAfter500(t *testing.T) {
	r := &receiver{secret: "whsec-0123456789abcdef", got: make(chan []byte, 10)}
	var calls int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body := r.check(t, req)
		r.mu.Lock()
		calls++
		n := calls
		r.mu.Unlock()
		if n == 1 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		r.got <- body
	}))
	t.Cleanup(srv.Close)
	s := newMemStore()
	d := start(t, Config{Webhooks: []Webhook{{URL: srv.URL + "/hook", Secret: r.secret}}, WebhookBackoff: time.Millisecond}, s)
	o := read(t0, "c1", 1)
	o.Canary = true
	d.Observe(t.Context(), o)

	var body []byte
	select {
	case body = <-r.got:
	case <-time.After(30 * time.Second):
		t.Fatal("webhook never delivered after a 500")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if calls != 2 || r.bad != 0 {
		t.Fatalf("calls = %d, bad signatures = %d; want 2 calls, all signed", calls, r.bad)
	}
	if !bytes.Equal(r.bodies[0], r.bodies[1]) {
		t.Error("the retry sent a different body")
	}
	var ev coffer.SecurityEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		t.Fatal(err)
	}
	stored := s.eventsOf(KindCanary)
	if ev.Kind != KindCanary || len(stored) != 1 || ev.ID != stored[0].ID {
		t.Errorf("webhook event %+v, stored %+v", ev, stored)
	}
}

func TestWebhookGivesUp(t *testing.T) {
	tests := []struct {
		name   string
		status int
		want   int
	}{
		{"gives up after every attempt on 503", http.StatusServiceUnavailable, 3},
		{"retries 429", http.StatusTooManyRequests, 3},
		{"gives up at once on 404", http.StatusNotFound, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			calls := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				mu.Lock()
				calls++
				mu.Unlock()
				w.WriteHeader(tt.status)
			}))
			t.Cleanup(srv.Close)
			var logs syncBuffer
			d := New(Config{Webhooks: []Webhook{{URL: srv.URL + "/T000/B000/tok3n", Secret: "s3cret-webhook-key"}},
				WebhookAttempts: 3, WebhookBackoff: time.Millisecond},
				Deps{Store: newMemStore(), Now: pinned, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
			d.Start(context.Background())
			o := read(t0, "c1", 1)
			o.Canary = true
			d.Observe(t.Context(), o)
			waitFor(t, func() bool { return strings.Contains(logs.String(), "webhook delivery failed") })
			d.Close()
			mu.Lock()
			defer mu.Unlock()
			if calls != tt.want {
				t.Errorf("calls = %d, want %d", calls, tt.want)
			}
			out := logs.String()
			for _, secret := range []string{"s3cret-webhook-key", "tok3n"} {
				if strings.Contains(out, secret) {
					t.Errorf("log holds %q:\n%s", secret, out)
				}
			}
		})
	}
}

func TestObserveNeverBlocksWhenWebhookHangs(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, req *http.Request) {
		select {
		case <-release:
		case <-req.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	s := newMemStore()
	d := start(t, Config{
		Webhooks:  []Webhook{{URL: srv.URL, Secret: "k"}},
		QueueSize: 16, WebhookQueue: 1, WebhookTimeout: time.Hour,
	}, s)

	const n = 5000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			o := read(t0, "c1", 1)
			o.Canary, o.Resource = true, fmt.Sprintf("collections/c/records/%d", i)
			d.Observe(t.Context(), o)
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Observe blocked while the webhook hangs")
	}
	// Processing went on past the first event, whose delivery hangs.
	flush(t, d)
	d.Observe(t.Context(), with(read(t0, "c9", 1), func(o *Observation) { o.Canary = true }))
	flush(t, d)
	stored := len(s.eventsOf(KindCanary))
	if stored < 2 {
		t.Fatalf("only %d events stored: processing stalled behind the hanging webhook", stored)
	}
	if stored+int(d.Dropped()) != n+1 {
		t.Errorf("stored %d + dropped %d != observed %d", stored, d.Dropped(), n+1)
	}
}

func TestObserveDropsWhenFull(t *testing.T) {
	var logs syncBuffer
	d := New(Config{QueueSize: 4}, Deps{Store: newMemStore(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for range 10 {
		d.Observe(t.Context(), read(t0, "c1", 1))
	}
	if got := d.Dropped(); got != 6 {
		t.Fatalf("Dropped = %d, want 6", got)
	}
	if !strings.Contains(logs.String(), "dropped") {
		t.Error("drop not logged")
	}
	d.Close()
	d.Observe(t.Context(), read(t0, "c1", 1))
	if got := d.Dropped(); got != 7 {
		t.Fatalf("Dropped after Close = %d, want 7", got)
	}
}

func TestCloseProcessesQueued(t *testing.T) {
	s := newMemStore()
	d := New(Config{}, Deps{Store: s, Now: pinned})
	o := read(t0, "c1", 1)
	o.Canary = true
	d.Observe(t.Context(), o)
	d.Start(context.Background())
	d.Close()
	d.Close()
	if got := len(s.eventsOf(KindCanary)); got != 1 {
		t.Fatalf("queued observation not processed on Close: %d events", got)
	}
}

func TestSignKnownAnswer(t *testing.T) {
	// RFC 4231 test case 2.
	got := Sign("Jefe", []byte("what do ya want for nothing?"))
	want := "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
	if got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestVerifySignature(t *testing.T) {
	body := []byte(`{"id":"1","kind":"data.canary"}`)
	good := Sign("secret", body)
	tests := []struct {
		name   string
		secret string
		body   []byte
		header string
		want   bool
	}{
		{"valid", "secret", body, good, true},
		{"valid with upper-case hex", "secret", body, "sha256=" + strings.ToUpper(strings.TrimPrefix(good, "sha256=")), true},
		{"wrong secret", "other", body, good, false},
		{"tampered body", "secret", []byte(`{"id":"1","kind":"data.bulk_read"}`), good, false},
		{"missing prefix", "secret", body, strings.TrimPrefix(good, "sha256="), false},
		{"other algorithm", "secret", body, "sha1=" + strings.TrimPrefix(good, "sha256="), false},
		{"bad hex", "secret", body, "sha256=zz", false},
		{"truncated", "secret", body, good[:len(good)-2], false},
		{"empty header", "secret", body, "", false},
		{"empty secret", "", body, Sign("", body), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := VerifySignature(tt.secret, tt.body, tt.header); got != tt.want {
				t.Fatalf("VerifySignature = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWebhookNeverPrintsSecret(t *testing.T) {
	w := Webhook{URL: "https://hooks.example.com/services/T0/B0/tok3n?x=1", Secret: "s3cret"}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "hook", w)
	for _, s := range []string{w.String(), fmt.Sprintf("%v %+v %#v", w, w, w), logs.String()} {
		if strings.Contains(s, "s3cret") || strings.Contains(s, "tok3n") {
			t.Errorf("printed %q", s)
		}
		if !strings.Contains(s, "hooks.example.com") {
			t.Errorf("%q does not name the host", s)
		}
	}
}

func TestParseHours(t *testing.T) {
	tests := []struct {
		in      string
		ok      bool
		inside  []string // UTC clock times inside
		outside []string
	}{
		{"08:00-18:00", true, []string{"08:00", "17:59"}, []string{"07:59", "18:00", "00:00"}},
		{"22:00-06:00", true, []string{"22:00", "23:59", "00:00", "05:59"}, []string{"06:00", "12:00", "21:59"}},
		{"00:00-24:00", true, []string{"00:00", "12:00", "23:59"}, nil},
		{"09:00-17:00 America/New_York", true, []string{"14:00"}, []string{"09:30"}},
		{" 08:00-18:00  UTC ", true, []string{"08:00"}, []string{"18:00"}},
		{"", false, nil, nil},
		{"08:00", false, nil, nil},
		{"8:00-18:00", false, nil, nil},
		{"08:00-18:60", false, nil, nil},
		{"24:00-06:00", false, nil, nil},
		{"08:00-24:01", false, nil, nil},
		{"08:00-08:00", false, nil, nil},
		{"08:00-18:00 Mars/Olympus", false, nil, nil},
		{"08:00-18:00 UTC extra", false, nil, nil},
		{"0a:00-18:00", false, nil, nil},
	}
	for _, tt := range tests {
		name := "rejects " + tt.in
		if tt.ok {
			name = "accepts " + tt.in
		}
		t.Run(name, func(t *testing.T) {
			h, err := parseHours(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("parseHours(%q) err = %v, want ok=%v", tt.in, err, tt.ok)
			}
			clock := func(s string) time.Time {
				c, _ := time.Parse("15:04", s)
				return time.Date(2026, 3, 10, c.Hour(), c.Minute(), 0, 0, time.UTC)
			}
			for _, s := range tt.inside {
				if !h.contains(clock(s)) {
					t.Errorf("%s not inside %q", s, tt.in)
				}
			}
			for _, s := range tt.outside {
				if h.contains(clock(s)) {
					t.Errorf("%s inside %q", s, tt.in)
				}
			}
		})
	}
}

func FuzzParseHours(f *testing.F) {
	for _, s := range []string{"08:00-18:00", "22:00-06:00 Europe/Berlin", "00:00-24:00", "x", "24:00-00:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parseHours(s)
		if err != nil {
			return
		}
		again, err := parseHours(h.String())
		if err != nil {
			t.Fatalf("String %q of accepted %q does not parse: %v", h.String(), s, err)
		}
		if again.start != h.start || again.end != h.end || again.loc.String() != h.loc.String() {
			t.Fatalf("round trip changed %q: %+v != %+v", s, again, h)
		}
		if h.start == h.end || h.start < 0 || h.end > 1440 || h.start >= 1440 {
			t.Fatalf("accepted bad range %q: %d-%d", s, h.start, h.end)
		}
	})
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error; "" means valid
	}{
		{"valid zero config", Config{}, ""},
		{"valid full config", Config{Hours: map[string]string{"a": "08:00-18:00 Europe/Berlin"}, SuspendOn: []string{KindCanary},
			Webhooks: []Webhook{{URL: "https://x.example/h", Secret: "k"}, {URL: "http://127.0.0.1:9000/h", Secret: "k"}}}, ""},
		{"rejects bad hours", Config{Hours: map[string]string{"a": "8-18"}}, "detect.hours"},
		{"rejects unknown suspend kind", Config{SuspendOn: []string{"data.everything"}}, "unknown kind"},
		{"rejects plain http to a remote host", Config{Webhooks: []Webhook{{URL: "http://x.example/h", Secret: "k"}}}, "https"},
		{"rejects a webhook without secret", Config{Webhooks: []Webhook{{URL: "https://x.example/h"}}}, "secret"},
		{"rejects a relative url", Config{Webhooks: []Webhook{{URL: "/h", Secret: "k"}}}, "absolute"},
		{"rejects a negative window", Config{Window: -time.Second}, "detect.window"},
		{"rejects a negative threshold", Config{BulkReadValues: -1}, "bulk_read_values"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func BenchmarkObserve(b *testing.B) {
	d := New(Config{}, Deps{Store: newMemStore()})
	d.Start(context.Background())
	defer d.Close()
	o := read(t0, "c1", 1)
	b.ReportAllocs()
	for b.Loop() {
		d.Observe(b.Context(), o)
	}
}

func BenchmarkSuspended(b *testing.B) {
	d := New(Config{}, Deps{Store: newMemStore()})
	b.ReportAllocs()
	for b.Loop() {
		d.Suspended("c1")
	}
}

func BenchmarkProcess(b *testing.B) {
	d := New(Config{Hours: map[string]string{"*": "00:00-24:00"}}, Deps{Store: newMemStore()})
	ctx := context.Background()
	batch := make([]queued, 64)
	for i := range batch {
		batch[i] = queued{obs: read(t0, "c1", 1)}
	}
	b.ReportAllocs()
	for b.Loop() {
		d.handleBatch(ctx, batch)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/observation")
}

func repeat(n int, o Observation) []Observation {
	out := make([]Observation, n)
	for i := range out {
		out[i] = o
	}
	return out
}

func with(o Observation, f func(*Observation)) Observation {
	f(&o)
	return o
}

func withRoles(o Observation, roles ...string) Observation {
	o.Roles = roles
	return o
}

// syncBuffer is a buffer safe for a logger and a test to share.
type syncBuffer = testlog.Buffer

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A batch is counted in one store round trip, yet each threshold is crossed
// by the very observation that would cross it one at a time, on top of
// what the store already holds from other nodes.
func TestBatchCrossesThresholdWhereSequentialWould(t *testing.T) {
	s := newMemStore()
	if _, err := s.AddCount(t.Context(), "bulk|principal:c1", t0.Truncate(time.Minute), 450); err != nil {
		t.Fatal(err)
	}
	d := New(Config{}, Deps{Store: s, Now: pinned, Rand: rand.Reader})
	var batch []queued
	for range 5 {
		batch = append(batch, queued{obs: read(t0, "c1", 40)})
	}
	done := make(chan struct{})
	batch = append(batch, queued{done: done})
	batch = append(batch, queued{obs: read(t0, "c2", 600)})
	d.handleBatch(t.Context(), batch)
	select {
	case <-done:
	default:
		t.Fatal("barrier in the batch was not released")
	}
	evs := s.eventsOf(KindBulkRead)
	if len(evs) != 2 {
		t.Fatalf("got %d bulk_read events, want 2 (c1 and c2)", len(evs))
	}
	byWho := map[string]any{}
	for _, e := range evs {
		byWho[e.Principal] = e.Detail["count"]
	}
	// c1: 450 stored, then +40 → 490, +40 → 530 crosses 500 at 530.
	if byWho["c1"] != 530 || byWho["c2"] != 600 {
		t.Errorf("crossing totals = %v, want c1 530 and c2 600", byWho)
	}
	// The 450 are an earlier slice of the window; this batch's 200 are in t0's.
	if got := s.counts[fmt.Sprintf("%s@%d", "bulk|principal:c1", t0.Truncate(DefaultWindow/windowSlices).UnixNano())]; got != 200 {
		t.Errorf("stored c1 count of t0's slice = %d, want 200", got)
	}
}
