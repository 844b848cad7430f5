package keyring

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
)

// rewrapStore adds RootRewrapStore to memStore, with the contract the SQL
// stores keep.
type rewrapStore struct {
	*memStore
	hookMu sync.Mutex
	// beforeReplace, when set, runs before each ReplaceWrapped with the
	// number of the call (1, 2, …), as another node acting meanwhile.
	beforeReplace func(call int)
	replaces      int
}

func (s *rewrapStore) DataKeysAfter(_ context.Context, keyID string, version uint32, limit int) ([]coffer.DataKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	var out []coffer.DataKey
	for id, vs := range s.keys {
		for v, k := range vs {
			if id > keyID || id == keyID && v > version {
				k.Wrapped = bytes.Clone(k.Wrapped)
				out = append(out, k)
			}
		}
	}
	slices.SortFunc(out, func(a, b coffer.DataKey) int {
		return cmp.Or(cmp.Compare(a.KeyID, b.KeyID), cmp.Compare(a.Version, b.Version))
	})
	return out[:min(limit, len(out))], nil
}

func (s *rewrapStore) ReplaceWrapped(_ context.Context, keyID string, version uint32, oldWrapped, newWrapped []byte) error {
	s.hookMu.Lock()
	s.replaces++
	call, hook := s.replaces, s.beforeReplace
	s.hookMu.Unlock()
	if hook != nil {
		hook(call)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	k, ok := s.keys[keyID][version]
	if !ok || k.State == coffer.KeyDestroyed || !bytes.Equal(k.Wrapped, oldWrapped) {
		return fmt.Errorf("replace %s v%d: %w", keyID, version, ErrWrappedChanged)
	}
	k.Wrapped = bytes.Clone(newWrapped)
	s.keys[keyID][version] = k
	return nil
}

func (s *rewrapStore) all() []coffer.DataKey {
	rows, _ := s.DataKeysAfter(context.Background(), "", 0, 1<<30)
	return rows
}

// sealed is a value sealed before the root key moved.
type sealedValue struct {
	keyID, plain string
	env          []byte
}

// populate makes three key ids with three versions each and a value
// under every version, retires one version and destroys a fourth key id.
func populate(t *testing.T, kr *Keyring) []sealedValue {
	t.Helper()
	if err := kr.Check(ctx); err != nil {
		t.Fatal(err)
	}
	var vals []sealedValue
	for _, id := range []string{"collection/customers", "subject/42", "index/customers/email"} {
		for v := 1; v <= 3; v++ {
			if v > 1 {
				if _, err := kr.Rotate(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
			plain := fmt.Sprintf("%s value %d", id, v)
			vals = append(vals, sealedValue{id, plain, seal(t, kr, id, plain)})
		}
	}
	seal(t, kr, "subject/gone", "erased")
	if err := kr.Destroy(ctx, "subject/gone"); err != nil {
		t.Fatal(err)
	}
	if err := kr.Retire(ctx, "subject/42", 1); err != nil {
		t.Fatal(err)
	}
	return vals
}

// assertUnder checks that every live row opens under p and none under
// each of not, and that destroyed rows hold nothing.
func assertUnder(t *testing.T, s *rewrapStore, p keyprovider.Provider, not ...keyprovider.Provider) {
	t.Helper()
	for _, r := range s.all() {
		if r.State == coffer.KeyDestroyed {
			if len(r.Wrapped) != 0 {
				t.Errorf("destroyed %s v%d holds wrapped bytes again", r.KeyID, r.Version)
			}
			continue
		}
		aad := wrapAAD(r.KeyID, r.Version)
		if _, err := p.Unwrap(ctx, r.Wrapped, aad); err != nil {
			t.Errorf("%s v%d (%s) does not open under the new root key: %v", r.KeyID, r.Version, r.State, err)
		}
		for _, o := range not {
			if _, err := o.Unwrap(ctx, r.Wrapped, aad); !errors.Is(err, keyprovider.ErrUnwrap) {
				t.Errorf("%s v%d: old root key Unwrap = %v, want ErrUnwrap", r.KeyID, r.Version, err)
			}
		}
	}
}

func TestRewrapRootMovesEveryKeyAndKeepsValues(t *testing.T) {
	f := newFixture(t)
	s := &rewrapStore{memStore: f.s}
	kr := f.node()
	vals := populate(t, kr)
	before := s.all()
	newP := newProvider(t)

	// A node started with the new root key alone refuses to serve.
	if err := New(newP, s, Options{}).Check(ctx); !errors.Is(err, ErrWrongRootKey) {
		t.Fatalf("Check with the new root key before the move: %v", err)
	}
	n, err := kr.RewrapRoot(ctx, newP, s)
	if err != nil {
		t.Fatal(err)
	}
	// 3×3 versions and the check key; not the destroyed one.
	if n != 10 {
		t.Fatalf("moved %d versions, want 10", n)
	}
	assertUnder(t, s, newP, f.p)
	after := s.all()
	if len(after) != len(before) {
		t.Fatalf("%d rows after, %d before", len(after), len(before))
	}
	for i := range before {
		b, a := before[i], after[i]
		if a.KeyID != b.KeyID || a.Version != b.Version || a.State != b.State || !a.Created.Equal(b.Created) {
			t.Errorf("row %d changed: %+v → %+v", i, b, a)
		}
		if b.State != coffer.KeyDestroyed && bytes.Equal(a.Wrapped, b.Wrapped) {
			t.Errorf("%s v%d was not rewrapped", a.KeyID, a.Version)
		}
	}

	// Every value opens on a fresh node over the new root key, and on this
	// one once its cache is stale; the retired version stays retired.
	fresh := New(newP, s, Options{})
	if err := fresh.Check(ctx); err != nil {
		t.Fatalf("Check with the new root key after the move: %v", err)
	}
	f.clock.Advance(time.Minute)
	for _, kr := range []*Keyring{fresh, kr} {
		for _, v := range vals {
			got, err := open(kr, v.keyID, v.env)
			if v.keyID == "subject/42" && version(t, v.env) == 1 {
				if !errors.Is(err, ErrKeyRetired) {
					t.Errorf("retired version: %v", err)
				}
				continue
			}
			if err != nil || got != v.plain {
				t.Errorf("Open(%s v%d) = %q, %v", v.keyID, version(t, v.env), got, err)
			}
		}
		if _, err := open(kr, "subject/gone", vals[0].env); !errors.Is(err, ErrKeyDestroyed) {
			t.Errorf("destroyed key: %v, want ErrKeyDestroyed", err)
		}
	}
	// New keys are wrapped under the new root key.
	seal(t, kr, "collection/new", "fresh")
	assertUnder(t, s, newP, f.p)
	// A second run has nothing to move.
	if n, err := kr.RewrapRoot(ctx, newP, s); err != nil || n != 0 {
		t.Fatalf("second run: %d, %v", n, err)
	}
	// The old root key no longer serves: a node over it fails Check.
	if err := New(f.p, s, Options{}).Check(ctx); !errors.Is(err, ErrWrongRootKey) {
		t.Fatalf("Check with the old root key after the move: %v", err)
	}
}

// failingProvider fails Wrap with errDown after ok wraps.
type failingProvider struct {
	keyprovider.Provider
	mu sync.Mutex
	ok int
}

var errDown = errors.New("hsm unreachable")

func (p *failingProvider) Wrap(ctx context.Context, pt, aad []byte) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ok == 0 {
		return nil, errDown
	}
	p.ok--
	return p.Provider.Wrap(ctx, pt, aad)
}

func TestRewrapRootResumesAfterAFailure(t *testing.T) {
	f := newFixture(t)
	s := &rewrapStore{memStore: f.s}
	kr := f.node()
	vals := populate(t, kr)
	newP := newProvider(t)
	// The probe and four versions, then the provider goes away.
	flaky := &failingProvider{Provider: newP, ok: 5}
	n, err := kr.RewrapRoot(ctx, flaky, s)
	if !errors.Is(err, errDown) || n != 4 {
		t.Fatalf("RewrapRoot = %d, %v; want 4 and errDown", n, err)
	}
	// Half moved: the keyring still opens everything, on reload too.
	f.clock.Advance(time.Minute)
	for _, v := range vals {
		if v.keyID != "subject/42" || version(t, v.env) != 1 { // retired
			mustOpen(t, kr, v.keyID, v.env, v.plain)
		}
	}
	if err := kr.Check(ctx); err != nil {
		t.Fatalf("Check mid-rotation: %v", err)
	}
	// With the new provider down, this node makes keys under the old one.
	seal(t, kr, "collection/during", "made between runs")
	if w := s.row("collection/during", 1).Wrapped; !opens(f.p, "collection/during", 1, w) {
		t.Fatal("a key made after a failed run is not under the old root key")
	}
	n, err = kr.RewrapRoot(ctx, newP, s)
	if err != nil || n != 10-4+1 {
		t.Fatalf("second run = %d, %v; want the remaining 6 and the new one", n, err)
	}
	assertUnder(t, s, newP, f.p)
}

func opens(p keyprovider.Provider, keyID string, v uint32, w []byte) bool {
	_, err := p.Unwrap(ctx, w, wrapAAD(keyID, v))
	return err == nil
}

// Another node still on the old root key makes keys while the job runs:
// the next walk moves them.
func TestRewrapRootPicksUpKeysMadeMeanwhile(t *testing.T) {
	f := newFixture(t)
	s := &rewrapStore{memStore: f.s}
	kr := f.node()
	populate(t, kr)
	other := f.node() // same old root key
	newP := newProvider(t)
	var made []sealedValue
	s.beforeReplace = func(call int) {
		if call <= 3 {
			id := fmt.Sprintf("subject/late-%d", call)
			made = append(made, sealedValue{id, "late", seal(t, other, id, "late")})
		}
		if call == 4 {
			// What this node makes meanwhile goes under the new root key.
			made = append(made, sealedValue{"subject/mine", "mine", seal(t, kr, "subject/mine", "mine")})
			if w := s.row("subject/mine", 1).Wrapped; !opens(newP, "subject/mine", 1, w) {
				t.Error("a key made mid-rotation is not under the new root key")
			}
		}
	}
	n, err := kr.RewrapRoot(ctx, newP, s)
	if err != nil || n != 10+3 {
		t.Fatalf("RewrapRoot = %d, %v; want 13", n, err)
	}
	assertUnder(t, s, newP, f.p)
	fresh := New(newP, s, Options{})
	for _, v := range made {
		mustOpen(t, fresh, v.keyID, v.env, v.plain)
	}
}

// A key destroyed while the job runs stays destroyed.
func TestRewrapRootNeverRevivesADestroyedKey(t *testing.T) {
	f := newFixture(t)
	s := &rewrapStore{memStore: f.s}
	kr := f.node()
	populate(t, kr)
	other := f.node()
	s.beforeReplace = func(call int) {
		if call == 1 {
			if err := other.Destroy(ctx, "collection/customers"); err != nil {
				t.Error(err)
			}
		}
	}
	newP := newProvider(t)
	if _, err := kr.RewrapRoot(ctx, newP, s); err != nil {
		t.Fatal(err)
	}
	for _, r := range s.all() {
		if r.KeyID == "collection/customers" && (r.State != coffer.KeyDestroyed || r.Wrapped != nil) {
			t.Fatalf("destroyed key came back: v%d %s, %d wrapped bytes", r.Version, r.State, len(r.Wrapped))
		}
	}
	assertUnder(t, s, newP, f.p)
}

// liar unwraps something other than it wrapped, except, with passProbe,
// for RewrapRoot's probe.
type liar struct {
	keyprovider.Provider
	passProbe bool
}

func (l liar) Unwrap(ctx context.Context, w, aad []byte) ([]byte, error) {
	pt, err := l.Provider.Unwrap(ctx, w, aad)
	if err == nil && !(l.passProbe && bytes.Equal(aad, envelope.AAD("coffer/keyring/root-probe/v1"))) {
		pt[0] ^= 1
	}
	return pt, err
}

func TestRewrapRootRefusesAFaultyProvider(t *testing.T) {
	for _, passProbe := range []bool{false, true} {
		t.Run(fmt.Sprintf("refused/passes probe %v", passProbe), func(t *testing.T) {
			f := newFixture(t)
			s := &rewrapStore{memStore: f.s}
			kr := f.node()
			vals := populate(t, kr)
			before := s.all()
			n, err := kr.RewrapRoot(ctx, liar{newProvider(t), passProbe}, s)
			if err == nil || n != 0 {
				t.Fatalf("RewrapRoot with a faulty provider = %d, %v", n, err)
			}
			if !slices.EqualFunc(before, s.all(), func(a, b coffer.DataKey) bool { return bytes.Equal(a.Wrapped, b.Wrapped) }) {
				t.Fatal("a faulty provider replaced wrapped keys")
			}
			f.clock.Advance(time.Minute)
			mustOpen(t, kr, vals[0].keyID, vals[0].env, vals[0].plain)
			seal(t, kr, "collection/after", "still works")
		})
	}
}

func TestRewrapRootStopsAtAKeyUnderNeitherRoot(t *testing.T) {
	f := newFixture(t)
	s := &rewrapStore{memStore: f.s}
	kr := f.node()
	populate(t, kr)
	stranger := newProvider(t)
	w, err := stranger.Wrap(ctx, make([]byte, dataKeySize), wrapAAD("subject/42", 2))
	if err != nil {
		t.Fatal(err)
	}
	s.setWrapped("subject/42", 2, w)
	_, err = kr.RewrapRoot(ctx, newProvider(t), s)
	if !errors.Is(err, keyprovider.ErrUnwrap) {
		t.Fatalf("err = %v, want keyprovider.ErrUnwrap", err)
	}
	if got := s.row("subject/42", 2).Wrapped; !bytes.Equal(got, w) {
		t.Fatal("the stray row was replaced")
	}
	if rows := s.row(RootCheckKeyID, 1); opens(f.p, RootCheckKeyID, 1, rows.Wrapped) == false {
		t.Fatal("the check key moved although the job did not finish")
	}
}

func TestRewrapRootStoreErrorsPassThrough(t *testing.T) {
	f := newFixture(t)
	s := &rewrapStore{memStore: f.s}
	kr := f.node()
	populate(t, kr)
	boom := errors.New("disk on fire")
	s.fail = boom
	if _, err := kr.RewrapRoot(ctx, newProvider(t), s); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the store's", err)
	}
}

func BenchmarkRewrapRoot1000(b *testing.B) {
	f := newFixture(b)
	s := &rewrapStore{memStore: f.s}
	kr := f.node()
	for i := range 1000 {
		seal(b, kr, fmt.Sprintf("subject/%d", i), "v")
	}
	ps := []keyprovider.Provider{newProvider(b), newProvider(b)}
	i := 0
	for b.Loop() {
		i++
		if _, err := kr.RewrapRoot(ctx, ps[i%2], s); err != nil {
			b.Fatal(err)
		}
	}
}
