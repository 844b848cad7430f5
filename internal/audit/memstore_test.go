package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memStore is a small in-memory Store for the tests. ScanAudit returns a
// node's events in slice order, so that tests can tamper with the slice as
// an attacker with database access would with the table.
type memStore struct {
	mu      sync.Mutex
	events  map[string][]Event
	cps     map[string][]Checkpoint
	appends atomic.Int64
	// fail, if set, makes AppendAudit fail without writing.
	fail error
	// commitThenFail makes AppendAudit write and then report failure once
	// (a commit whose reply was lost).
	commitThenFail bool
	// delay is slept in every AppendAudit, like an fsync.
	delay time.Duration
}

func newMemStore() *memStore {
	return &memStore{events: map[string][]Event{}, cps: map[string][]Checkpoint{}}
}

var errStoreDown = errors.New("store down")

func (m *memStore) setFail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fail = err
}

func (m *memStore) AppendAudit(ctx context.Context, events []Event, checkpoints []Checkpoint) error {
	m.appends.Add(1)
	if m.delay > 0 {
		time.Sleep(m.delay)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	// Check (node, seq) uniqueness for the whole transaction first.
	next := map[string]uint64{}
	for _, e := range events {
		n, ok := next[e.Node]
		if !ok {
			n = uint64(len(m.events[e.Node])) + 1
		}
		if e.Seq != n {
			return errors.New("duplicate or out-of-order seq")
		}
		next[e.Node] = n + 1
	}
	for _, c := range checkpoints {
		for _, o := range m.cps[c.Node] {
			if o.Seq == c.Seq {
				return errors.New("duplicate checkpoint")
			}
		}
	}
	for _, e := range events {
		e.Roles, e.Fields, e.ValueHMACs = clone(e.Roles), clone(e.Fields), clone(e.ValueHMACs)
		m.events[e.Node] = append(m.events[e.Node], e)
	}
	for _, c := range checkpoints {
		m.cps[c.Node] = append(m.cps[c.Node], c)
	}
	if m.commitThenFail {
		m.commitThenFail = false
		return errors.New("connection lost after commit")
	}
	return ctx.Err()
}

func clone(s []string) []string { return append([]string(nil), s...) }

func (m *memStore) AuditHead(_ context.Context, node string) (uint64, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return 0, "", m.fail
	}
	ev := m.events[node]
	if len(ev) == 0 {
		return 0, "", nil
	}
	return ev[len(ev)-1].Seq, ev[len(ev)-1].Hash, nil
}

func (m *memStore) ScanAudit(_ context.Context, node string, afterSeq uint64, fn func(Event) error) error {
	m.mu.Lock()
	ev := append([]Event(nil), m.events[node]...)
	m.mu.Unlock()
	for _, e := range ev {
		if e.Seq <= afterSeq {
			continue
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStore) AuditNodes(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	set := map[string]bool{}
	for n := range m.events {
		set[n] = true
	}
	for n := range m.cps {
		set[n] = true
	}
	var out []string
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

func (m *memStore) Checkpoints(_ context.Context, node string) ([]Checkpoint, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	return append([]Checkpoint(nil), m.cps[node]...), nil
}

func (m *memStore) ListAudit(_ context.Context, f Filter) ([]Event, error) {
	m.mu.Lock()
	var all []Event
	for _, ev := range m.events {
		all = append(all, ev...)
	}
	m.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return less(CursorOf(all[i]), CursorOf(all[j])) })
	var out []Event
	for _, e := range all {
		if (f.Principal != "" && e.PrincipalID != f.Principal) || (f.Action != "" && e.Action != f.Action) ||
			e.Time.Before(f.Since) || (f.After != nil && !less(*f.After, CursorOf(e))) {
			continue
		}
		if out = append(out, e); len(out) == f.EffectiveLimit() {
			break
		}
	}
	return out, nil
}

func less(a, b Cursor) bool {
	if !a.Time.Equal(b.Time) {
		return a.Time.Before(b.Time)
	}
	if a.Node != b.Node {
		return a.Node < b.Node
	}
	return a.Seq < b.Seq
}

// Test keys: fixed, so that failures reproduce.
var (
	testHMACKey = []byte("0123456789abcdef0123456789abcdef")
	testSignKey = ed25519.NewKeyFromSeed([]byte("audit-checkpoint-test-seed-32byt"))
	testPubKey  = testSignKey.Public().(ed25519.PublicKey)
	// testKeys is version 1 of both keys, as a writer's KeySource.
	testKeys = Keys{HMACVersion: 1, HMACKey: testHMACKey, SigningVersion: 1, SigningKey: testSignKey}
	// testLookup is version 1 of both keys, for the verifiers.
	testLookup = KeyVersions{HMAC: map[uint32][]byte{1: testHMACKey}, Public: map[uint32]ed25519.PublicKey{1: testPubKey}}
)

// quietLogger drops the writer's expected failure logs.
var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time {
	return time.Unix(0, c.ns.Add(int64(time.Microsecond))).UTC()
}

func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// newTestWriter returns a writer on store with test keys and a fake clock,
// closed when the test ends.
func newTestWriter(t testing.TB, store Store, cfg WriterConfig) *Writer {
	t.Helper()
	if cfg.Node == "" {
		cfg.Node = "n1"
	}
	if cfg.Keys == nil {
		cfg.Keys = testKeys
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger
	}
	if cfg.Now == nil {
		cfg.Now = newFakeClock().Now
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = time.Hour
	}
	w, err := NewWriter(context.Background(), store, cfg)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	return w
}

// sampleEvent returns a plausible event for the i-th request.
// sampleEvent is a read of a record; odd ones name the record read (in
// the second canonical form), even ones do not (the first form).
func sampleEvent(i int) Event {
	var targets []string
	if i%2 == 1 {
		targets = []string{"collections/customers/records/r-" + strconv.Itoa(i)}
	}
	return Event{
		Targets:       targets,
		RequestID:     "req-" + strconv.Itoa(i),
		PrincipalID:   "client-" + strconv.Itoa(i%7),
		PrincipalKind: "client",
		Roles:         []string{"support"},
		SourceIP:      "192.0.2.10",
		Action:        "read",
		Resource:      "collections/customers",
		Fields:        []string{"email", "card_number"},
		Decision:      DecisionAllow,
		Rule:          "support#0",
		Status:        200,
		Count:         1,
		ValueHMACs:    []string{"9f86d081884c7d659a2feaa0c55ad015"},
	}
}

// logN logs n sample events sequentially.
func logN(t testing.TB, w *Writer, n int) {
	t.Helper()
	for i := range n {
		if err := w.Log(context.Background(), sampleEvent(i)); err != nil {
			t.Fatalf("Log %d: %v", i, err)
		}
	}
}
