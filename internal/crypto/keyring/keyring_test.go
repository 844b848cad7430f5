package keyring

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
	"github.com/cofferhq/coffer/internal/secret"
	"github.com/cofferhq/coffer/internal/testclock"
)

// memStore is an in-memory Store with the contract the SQL stores keep.
type memStore struct {
	mu    sync.Mutex
	keys  map[string]map[uint32]coffer.DataKey
	loads atomic.Int64 // DataKeys calls
	fail  error        // returned by every call when set
	// beforeInsert, when set, runs once before the next InsertDataKey, as
	// another node acting between this node's load and its insert.
	beforeInsert func()
}

func newMemStore() *memStore {
	return &memStore{keys: make(map[string]map[uint32]coffer.DataKey)}
}

func (s *memStore) DataKeys(_ context.Context, keyID string) ([]coffer.DataKey, error) {
	s.loads.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	var out []coffer.DataKey
	for _, k := range s.keys[keyID] {
		k.Wrapped = bytes.Clone(k.Wrapped)
		out = append(out, k)
	}
	return out, nil
}

func (s *memStore) InsertDataKey(_ context.Context, k coffer.DataKey) error {
	s.mu.Lock()
	hook := s.beforeInsert
	s.beforeInsert = nil
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	if _, ok := s.keys[k.KeyID][k.Version]; ok {
		return fmt.Errorf("insert %s v%d: %w", k.KeyID, k.Version, ErrVersionExists)
	}
	if s.keys[k.KeyID] == nil {
		s.keys[k.KeyID] = make(map[uint32]coffer.DataKey)
	}
	k.Wrapped = bytes.Clone(k.Wrapped)
	s.keys[k.KeyID][k.Version] = k
	return nil
}

func (s *memStore) SetDataKeyState(_ context.Context, keyID string, version uint32, state string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[keyID][version]
	if !ok {
		return errors.New("no such version")
	}
	k.State = state
	s.keys[keyID][version] = k
	return nil
}

func (s *memStore) DestroyDataKeys(_ context.Context, keyID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for v, k := range s.keys[keyID] {
		k.State, k.Wrapped = coffer.KeyDestroyed, nil
		s.keys[keyID][v] = k
	}
	return nil
}

func (s *memStore) row(keyID string, v uint32) coffer.DataKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[keyID][v]
}

func (s *memStore) setWrapped(keyID string, v uint32, w []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys[keyID][v]
	k.Wrapped = w
	s.keys[keyID][v] = k
}

func (s *memStore) versions(keyID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys[keyID])
}

// countingProvider counts unwraps of a real Local provider.
type countingProvider struct {
	keyprovider.Provider
	unwraps atomic.Int64
}

func (p *countingProvider) Unwrap(ctx context.Context, w, aad []byte) ([]byte, error) {
	p.unwraps.Add(1)
	return p.Provider.Unwrap(ctx, w, aad)
}

func newProvider(tb testing.TB) *countingProvider {
	tb.Helper()
	k, err := secret.Random(rand.Reader, keyprovider.RootKeySize)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := keyprovider.NewLocal("test", k, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return &countingProvider{Provider: p}
}

type fixture struct {
	p     *countingProvider
	s     *memStore
	clock *testclock.Clock
}

func newFixture(tb testing.TB) *fixture {
	return &fixture{p: newProvider(tb), s: newMemStore(), clock: testclock.New(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))}
}

// node is one Coffer node's keyring over the fixture's shared store.
func (f *fixture) node() *Keyring {
	return New(f.p, f.s, Options{Now: f.clock.Now, CacheTTL: 30 * time.Second})
}

var ctx = context.Background()

func seal(tb testing.TB, kr *Keyring, keyID, pt string) []byte {
	tb.Helper()
	env, err := kr.Seal(ctx, keyID, []byte(pt), envelope.AAD(keyID, "rec", "field"))
	if err != nil {
		tb.Fatalf("Seal(%s): %v", keyID, err)
	}
	return env
}

func open(kr *Keyring, keyID string, env []byte) (string, error) {
	pt, err := kr.Open(ctx, keyID, env, envelope.AAD(keyID, "rec", "field"))
	return string(pt), err
}

func mustOpen(tb testing.TB, kr *Keyring, keyID string, env []byte, want string) {
	tb.Helper()
	got, err := open(kr, keyID, env)
	if err != nil || got != want {
		tb.Fatalf("Open(%s) = %q, %v; want %q", keyID, got, err, want)
	}
}

func version(tb testing.TB, env []byte) uint32 {
	tb.Helper()
	v, err := envelope.KeyVersion(env)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

func TestSealCreatesVersionOneAndOpens(t *testing.T) {
	f := newFixture(t)
	kr := f.node()
	env := seal(t, kr, "collection/customers", "alice@example.com")
	if v := version(t, env); v != 1 {
		t.Fatalf("first envelope has version %d, want 1", v)
	}
	mustOpen(t, kr, "collection/customers", env, "alice@example.com")
	row := f.s.row("collection/customers", 1)
	if row.State != coffer.KeyActive || len(row.Wrapped) == 0 || !row.Created.Equal(f.clock.Now()) {
		t.Fatalf("stored row = %+v", row)
	}
	// The store holds the key wrapped, never in the clear: the envelope does
	// not open under the stored bytes taken as a key.
	if _, err := kr.Open(ctx, "collection/customers", env, nil); !errors.Is(err, envelope.ErrDecrypt) {
		t.Fatalf("Open with the wrong aad: err = %v, want ErrDecrypt", err)
	}
	// A fresh node opens it too: the key came from the store, not memory.
	mustOpen(t, f.node(), "collection/customers", env, "alice@example.com")
}

func TestOpenFailures(t *testing.T) {
	f := newFixture(t)
	kr := f.node()
	env := seal(t, kr, "collection/a", "secret")
	seal(t, kr, "collection/b", "other")
	tampered := bytes.Clone(env)
	tampered[len(tampered)-1] ^= 0x80
	v7 := bytes.Clone(env)
	v7[4] = 7
	tests := []struct {
		name  string
		keyID string
		env   []byte
		want  error
	}{
		{"fail/other key id", "collection/b", env, envelope.ErrDecrypt},
		{"fail/tampered", "collection/a", tampered, envelope.ErrDecrypt},
		{"fail/truncated", "collection/a", env[:envelope.Overhead-1], envelope.ErrDecrypt},
		{"fail/empty", "collection/a", nil, envelope.ErrDecrypt},
		{"fail/unknown version", "collection/a", v7, envelope.ErrDecrypt},
		{"fail/key id without keys", "collection/none", env, ErrKeyNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt, err := open(kr, tt.keyID, tt.env)
			if !errors.Is(err, tt.want) || pt != "" {
				t.Fatalf("Open = %q, %v; want %v", pt, err, tt.want)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	f := newFixture(t)
	kr := f.node()
	const id = "collection/customers"
	e1 := seal(t, kr, id, "value one")
	v, err := kr.Rotate(ctx, id)
	if err != nil || v != 2 {
		t.Fatalf("Rotate = %d, %v; want 2", v, err)
	}
	e2 := seal(t, kr, id, "value two")
	if version(t, e2) != 2 {
		t.Fatalf("after rotation Seal used version %d, want 2", version(t, e2))
	}
	mustOpen(t, kr, id, e1, "value one")
	mustOpen(t, kr, id, e2, "value two")
	fresh := f.node()
	mustOpen(t, fresh, id, e1, "value one")
	mustOpen(t, fresh, id, e2, "value two")
	if v, err := kr.Rotate(ctx, "collection/new"); err != nil || v != 1 {
		t.Fatalf("Rotate of a new key id = %d, %v; want 1", v, err)
	}
}

func TestRotationOnAnotherNode(t *testing.T) {
	f := newFixture(t)
	a, b := f.node(), f.node()
	const id = "collection/customers"
	mustOpen(t, b, id, seal(t, a, id, "x"), "x")
	if _, err := b.Rotate(ctx, id); err != nil {
		t.Fatal(err)
	}
	fromB := seal(t, b, id, "from b")
	if version(t, fromB) != 2 {
		t.Fatal("the rotating node does not seal with the new version at once")
	}
	mustOpen(t, a, id, fromB, "from b") // a newer version reloads at once
	f.clock.Advance(29 * time.Second)
	if v := version(t, seal(t, a, id, "y")); v != 2 {
		// a reloaded when it met version 2, so it already seals with it.
		t.Fatalf("after meeting v2, node a seals with v%d", v)
	}

	// A node that never met the new version picks it up within CacheTTL.
	c := f.node()
	seal(t, c, id, "warm")
	if _, err := b.Rotate(ctx, id); err != nil {
		t.Fatal(err)
	}
	if v := version(t, seal(t, c, id, "z")); v != 2 {
		t.Fatalf("before CacheTTL node c seals with v%d, want its cached v2", v)
	}
	f.clock.Advance(30 * time.Second)
	if v := version(t, seal(t, c, id, "z")); v != 3 {
		t.Fatalf("after CacheTTL node c seals with v%d, want 3", v)
	}
}

func TestConcurrentRotationsOnTwoNodes(t *testing.T) {
	f := newFixture(t)
	nodes := []*Keyring{f.node(), f.node(), f.node(), f.node()}
	seal(t, nodes[0], "k", "x")
	var wg sync.WaitGroup
	got := make([]uint32, len(nodes))
	for i, kr := range nodes {
		wg.Go(func() {
			v, err := kr.Rotate(ctx, "k")
			if err != nil {
				t.Error(err)
			}
			got[i] = v
		})
	}
	wg.Wait()
	seen := map[uint32]bool{}
	for _, v := range got {
		if seen[v] {
			t.Fatalf("two rotations returned version %d: %v", v, got)
		}
		seen[v] = true
	}
	if n := f.s.versions("k"); n != 1+len(nodes) {
		t.Fatalf("store has %d versions, want %d", n, 1+len(nodes))
	}
}

func TestRotationRaceGoesPastTheOtherNode(t *testing.T) {
	f := newFixture(t)
	a, b := f.node(), f.node()
	seal(t, a, "k", "x")
	var vb uint32
	f.s.beforeInsert = func() {
		var err error
		if vb, err = b.Rotate(ctx, "k"); err != nil {
			t.Error(err)
		}
	}
	va, err := a.Rotate(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if vb != 2 || va != 3 {
		t.Fatalf("rotations made v%d (other node) and v%d, want 2 and 3", vb, va)
	}
	if v := version(t, seal(t, a, "k", "y")); v != 3 {
		t.Fatalf("after its rotation node a seals with v%d, want 3", v)
	}
}

func TestWrongRootKey(t *testing.T) {
	f := newFixture(t)
	if err := f.node().Check(ctx); err != nil {
		t.Fatalf("first Check: %v", err)
	}
	if f.s.versions(RootCheckKeyID) != 1 {
		t.Fatal("Check did not make the check key")
	}
	if err := f.node().Check(ctx); err != nil {
		t.Fatalf("Check with the right root key: %v", err)
	}
	env := seal(t, f.node(), "collection/c", "v")

	wrong := New(newProvider(t), f.s, Options{Now: f.clock.Now})
	if err := wrong.Check(ctx); !errors.Is(err, ErrWrongRootKey) {
		t.Fatalf("Check with another root key: err = %v, want ErrWrongRootKey", err)
	}
	if f.s.versions(RootCheckKeyID) != 1 {
		t.Fatal("Check with a wrong root key changed the check key")
	}
	if _, err := open(wrong, "collection/c", env); !errors.Is(err, keyprovider.ErrUnwrap) {
		t.Fatalf("Open with another root key: err = %v, want keyprovider.ErrUnwrap", err)
	}
	if _, err := wrong.Seal(ctx, "collection/c", []byte("x"), nil); !errors.Is(err, keyprovider.ErrUnwrap) {
		t.Fatalf("Seal with another root key: err = %v, want keyprovider.ErrUnwrap", err)
	}
}

func TestCheckPassesOtherErrorsThrough(t *testing.T) {
	f := newFixture(t)
	boom := errors.New("database down")
	f.s.fail = boom
	err := f.node().Check(ctx)
	if !errors.Is(err, boom) || errors.Is(err, ErrWrongRootKey) {
		t.Fatalf("err = %v, want the store's error and not ErrWrongRootKey", err)
	}
}

func TestSwappedWrappedKeysDoNotUnwrap(t *testing.T) {
	f := newFixture(t)
	kr := f.node()
	ea := seal(t, kr, "subject/a", "a's value")
	eb := seal(t, kr, "subject/b", "b's value")
	if _, err := kr.Rotate(ctx, "subject/a"); err != nil {
		t.Fatal(err)
	}
	wa1, wa2, wb1 := f.s.row("subject/a", 1).Wrapped, f.s.row("subject/a", 2).Wrapped, f.s.row("subject/b", 1).Wrapped

	t.Run("fail/between key ids", func(t *testing.T) {
		f.s.setWrapped("subject/a", 1, wb1)
		f.s.setWrapped("subject/b", 1, wa1)
		defer f.s.setWrapped("subject/a", 1, wa1)
		defer f.s.setWrapped("subject/b", 1, wb1)
		cold := f.node()
		for id, env := range map[string][]byte{"subject/a": eb, "subject/b": ea} {
			if pt, err := open(cold, id, env); !errors.Is(err, keyprovider.ErrUnwrap) {
				t.Fatalf("Open(%s) with a swapped key = %q, %v; want keyprovider.ErrUnwrap", id, pt, err)
			}
		}
	})
	t.Run("fail/between versions", func(t *testing.T) {
		f.s.setWrapped("subject/a", 1, wa2)
		f.s.setWrapped("subject/a", 2, wa1)
		defer f.s.setWrapped("subject/a", 1, wa1)
		defer f.s.setWrapped("subject/a", 2, wa2)
		if pt, err := open(f.node(), "subject/a", ea); !errors.Is(err, keyprovider.ErrUnwrap) {
			t.Fatalf("Open with versions swapped = %q, %v; want keyprovider.ErrUnwrap", pt, err)
		}
	})
	t.Run("ok/restored", func(t *testing.T) {
		mustOpen(t, f.node(), "subject/a", ea, "a's value")
		mustOpen(t, f.node(), "subject/b", eb, "b's value")
	})
}

func TestDestroy(t *testing.T) {
	f := newFixture(t)
	kr, other := f.node(), f.node()
	const id = "subject/42"
	e1 := seal(t, kr, id, "v1")
	if _, err := kr.Rotate(ctx, id); err != nil {
		t.Fatal(err)
	}
	e2 := seal(t, kr, id, "v2")
	mustOpen(t, other, id, e2, "v2") // other node caches the key

	kr.mu.RLock()
	cached := kr.keys[id].versions[2]
	kr.mu.RUnlock()

	if err := kr.Destroy(ctx, id); err != nil {
		t.Fatal(err)
	}
	for v := uint32(1); v <= 2; v++ {
		if row := f.s.row(id, v); row.State != coffer.KeyDestroyed || row.Wrapped != nil {
			t.Fatalf("version %d after Destroy: state %q, %d wrapped bytes", v, row.State, len(row.Wrapped))
		}
	}
	if !cached.mac.IsZero() || !cached.export.IsZero() {
		t.Fatal("Destroy left the cached key bytes in memory")
	}
	// Erasing again (a retried request) changes nothing and adds no row.
	before, _ := f.s.DataKeys(ctx, id)
	if err := kr.Destroy(ctx, id); err != nil {
		t.Fatal(err)
	}
	if after, _ := f.s.DataKeys(ctx, id); len(after) != len(before) {
		t.Fatalf("a repeated Destroy left %d rows, had %d", len(after), len(before))
	}
	checkDestroyed := func(t *testing.T, kr *Keyring) {
		t.Helper()
		for _, env := range [][]byte{e1, e2} {
			if _, err := open(kr, id, env); !errors.Is(err, ErrKeyDestroyed) {
				t.Errorf("Open: err = %v, want ErrKeyDestroyed", err)
			}
		}
		if _, err := kr.Seal(ctx, id, []byte("new"), nil); !errors.Is(err, ErrKeyDestroyed) {
			t.Errorf("Seal: err = %v, want ErrKeyDestroyed", err)
		}
		if _, _, err := kr.MAC(ctx, id, []byte("x")); !errors.Is(err, ErrKeyDestroyed) {
			t.Errorf("MAC: err = %v, want ErrKeyDestroyed", err)
		}
		if _, _, err := kr.Key(ctx, id); !errors.Is(err, ErrKeyDestroyed) {
			t.Errorf("Key: err = %v, want ErrKeyDestroyed", err)
		}
		if _, err := kr.Rotate(ctx, id); !errors.Is(err, ErrKeyDestroyed) {
			t.Errorf("Rotate: err = %v, want ErrKeyDestroyed", err)
		}
	}
	t.Run("destroyed/on the destroying node at once", func(t *testing.T) { checkDestroyed(t, kr) })
	t.Run("destroyed/on another node after CacheTTL", func(t *testing.T) {
		f.clock.Advance(30 * time.Second)
		checkDestroyed(t, other)
	})
	t.Run("destroyed/on a new node", func(t *testing.T) { checkDestroyed(t, f.node()) })
	// The two versions and Destroy's tombstone above them, all destroyed:
	// no Seal made a new key.
	rows, err := f.s.DataKeys(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("store has %d versions after Seal of a destroyed key, want 3 (2 and the tombstone; no new key)", len(rows))
	}
	for _, r := range rows {
		if r.State != coffer.KeyDestroyed || len(r.Wrapped) != 0 {
			t.Fatalf("version %d is %s with %d wrapped bytes after Destroy", r.Version, r.State, len(r.Wrapped))
		}
	}
}

func TestDestroyNeverUsedKeyIDStaysDestroyed(t *testing.T) {
	f := newFixture(t)
	if err := f.node().Destroy(ctx, "subject/never"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.node().Seal(ctx, "subject/never", []byte("x"), nil); !errors.Is(err, ErrKeyDestroyed) {
		t.Fatalf("Seal after Destroy: err = %v, want ErrKeyDestroyed", err)
	}
}

func TestRetire(t *testing.T) {
	f := newFixture(t)
	kr := f.node()
	const id = "collection/c"
	e1 := seal(t, kr, id, "old")
	if _, err := kr.Rotate(ctx, id); err != nil {
		t.Fatal(err)
	}
	e2 := seal(t, kr, id, "new")
	tests := []struct {
		name    string
		version uint32
		want    error
	}{
		{"refused/current version", 2, ErrCurrentVersion},
		{"refused/unknown version", 9, ErrKeyNotFound},
		{"ok/old version", 1, nil},
		{"ok/again", 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := kr.Retire(ctx, id, tt.version); !errors.Is(err, tt.want) {
				t.Fatalf("Retire(%d) = %v, want %v", tt.version, err, tt.want)
			}
		})
	}
	if f.s.row(id, 1).State != coffer.KeyRetired {
		t.Fatal("version 1 not retired in the store")
	}
	for name, node := range map[string]*Keyring{"retiring node": kr, "new node": f.node()} {
		if _, err := open(node, id, e1); !errors.Is(err, ErrKeyRetired) {
			t.Errorf("%s: Open of v1: err = %v, want ErrKeyRetired", name, err)
		}
		if _, err := node.MACVersion(ctx, id, 1, []byte("x")); !errors.Is(err, ErrKeyRetired) {
			t.Errorf("%s: MACVersion(1): err = %v, want ErrKeyRetired", name, err)
		}
		mustOpen(t, node, id, e2, "new")
	}
}

// TestDisown: the newest version, which Retire refuses, can be disowned:
// it then neither opens nor seals, Seal falls back to the newest version
// still active, SealVersion under it is refused, and a Permanent key id
// is refused.
func TestDisown(t *testing.T) {
	f := newFixture(t)
	kr := f.node()
	const id = "transit/k"
	seal(t, kr, id, "v1")
	if _, err := kr.Rotate(ctx, id); err != nil {
		t.Fatal(err)
	}
	e2 := seal(t, kr, id, "v2")
	if err := kr.Disown(ctx, id, 2); err != nil {
		t.Fatal(err)
	}
	if f.s.row(id, 2).State != coffer.KeyRetired {
		t.Fatal("version 2 not retired in the store")
	}
	for name, node := range map[string]*Keyring{"disowning node": kr, "new node": f.node()} {
		if _, err := open(node, id, e2); !errors.Is(err, ErrKeyRetired) {
			t.Errorf("%s: Open of v2: err = %v, want ErrKeyRetired", name, err)
		}
		if v := version(t, seal(t, node, id, "x")); v != 1 {
			t.Errorf("%s: Seal after disowning v2 used v%d, want 1", name, v)
		}
		if _, err := node.SealVersion(ctx, id, 2, []byte("x"), nil); !errors.Is(err, ErrKeyRetired) {
			t.Errorf("%s: SealVersion(2): err = %v, want ErrKeyRetired", name, err)
		}
	}
	if err := kr.Disown(ctx, "audit/hmac", 1); !errors.Is(err, ErrKeyPermanent) {
		t.Fatalf("Disown of an audit key: %v, want ErrKeyPermanent", err)
	}
}

// TestPermanentKeysKeepEveryVersion: the audit keys rotate, but no version
// is ever retired or destroyed, and every one stays readable.
func TestPermanentKeysKeepEveryVersion(t *testing.T) {
	f := newFixture(t)
	kr := f.node()
	for _, id := range []string{"audit/hmac", "audit/signing"} {
		_, k1, err := kr.Key(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if v, err := kr.Rotate(ctx, id); err != nil || v != 2 {
			t.Fatalf("Rotate(%s) = %d, %v", id, v, err)
		}
		if err := kr.Retire(ctx, id, 1); !errors.Is(err, ErrKeyPermanent) {
			t.Fatalf("Retire(%s, 1) = %v, want ErrKeyPermanent", id, err)
		}
		if err := kr.Destroy(ctx, id); !errors.Is(err, ErrKeyPermanent) {
			t.Fatalf("Destroy(%s) = %v, want ErrKeyPermanent", id, err)
		}
		for v := uint32(1); v <= 2; v++ {
			if row := f.s.row(id, v); row.State != coffer.KeyActive || len(row.Wrapped) == 0 {
				t.Fatalf("%s version %d: state %q, %d wrapped bytes", id, v, row.State, len(row.Wrapped))
			}
		}
		for _, node := range []*Keyring{kr, f.node()} {
			got, err := node.KeyVersion(ctx, id, 1)
			if err != nil || !got.Equal(k1) {
				t.Fatalf("%s version 1 after the refused retire and destroy: %v", id, err)
			}
		}
	}
	if !Permanent("audit/hmac") || Permanent("subject/audit/hmac") || Permanent("collection/audit") {
		t.Fatal("Permanent matches the wrong key ids")
	}
}

func TestConcurrentFirstUseMakesOneVersion(t *testing.T) {
	for _, tt := range []struct {
		name     string
		separate bool
	}{
		{"one version/goroutines of one node", false},
		{"one version/eight nodes", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			shared := f.node()
			envs := make([][]byte, 8)
			var wg sync.WaitGroup
			for i := range envs {
				kr := shared
				if tt.separate {
					kr = f.node()
				}
				wg.Go(func() {
					env, err := kr.Seal(ctx, "collection/c", []byte{byte(i)}, envelope.AAD("c", "rec", "field"))
					if err != nil {
						t.Error(err)
						return
					}
					envs[i] = env
				})
			}
			wg.Wait()
			if n := f.s.versions("collection/c"); n != 1 {
				t.Fatalf("store has %d versions, want 1", n)
			}
			check := f.node()
			for i, env := range envs {
				if env == nil {
					continue
				}
				if v := version(t, env); v != 1 {
					t.Errorf("envelope %d has version %d", i, v)
				}
				pt, err := check.Open(ctx, "collection/c", env, envelope.AAD("c", "rec", "field"))
				if err != nil || !bytes.Equal(pt, []byte{byte(i)}) {
					t.Errorf("envelope %d: %x, %v", i, pt, err)
				}
			}
		})
	}
}

func TestFirstUseRaceWithAnotherNode(t *testing.T) {
	f := newFixture(t)
	a, b := f.node(), f.node()
	var fromB []byte
	f.s.beforeInsert = func() { fromB = seal(t, b, "collection/c", "b was first") }
	fromA := seal(t, a, "collection/c", "a lost the race")
	if n := f.s.versions("collection/c"); n != 1 {
		t.Fatalf("store has %d versions, want 1", n)
	}
	mustOpen(t, a, "collection/c", fromB, "b was first")
	mustOpen(t, b, "collection/c", fromA, "a lost the race")

	// The same race on the check key: the loser checks the winner's key.
	f.s.beforeInsert = func() {
		if err := b.Check(ctx); err != nil {
			t.Error(err)
		}
	}
	if err := a.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.s.versions(RootCheckKeyID); n != 1 {
		t.Fatalf("store has %d check keys, want 1", n)
	}
}

func TestCachedPathDoesNoLoadOrUnwrap(t *testing.T) {
	f := newFixture(t)
	kr := f.node()
	env := seal(t, kr, "collection/c", "warm")
	loads, unwraps := f.s.loads.Load(), f.p.unwraps.Load()
	for range 100 {
		mustOpen(t, kr, "collection/c", seal(t, kr, "collection/c", "hot"), "hot")
		mustOpen(t, kr, "collection/c", env, "warm")
		if _, _, err := kr.MAC(ctx, "collection/c", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if d := f.s.loads.Load() - loads; d != 0 {
		t.Errorf("hot path loaded from the store %d times", d)
	}
	if d := f.p.unwraps.Load() - unwraps; d != 0 {
		t.Errorf("hot path unwrapped %d times", d)
	}
	// After CacheTTL the key id is reloaded but its unchanged key is kept.
	f.clock.Advance(31 * time.Second)
	seal(t, kr, "collection/c", "later")
	if d := f.s.loads.Load() - loads; d != 1 {
		t.Errorf("after CacheTTL: %d loads, want 1", d)
	}
	if d := f.p.unwraps.Load() - unwraps; d != 0 {
		t.Errorf("reload unwrapped an unchanged key %d times", d)
	}
}

func TestOpenOfUnknownVersionReloadsOnce(t *testing.T) {
	f := newFixture(t)
	kr := f.node()
	env := seal(t, kr, "k", "x")
	env[4] = 9 // version 9, which does not exist
	loads := f.s.loads.Load()
	if _, err := open(kr, "k", env); !errors.Is(err, envelope.ErrDecrypt) {
		t.Fatalf("err = %v, want ErrDecrypt", err)
	}
	if d := f.s.loads.Load() - loads; d != 1 {
		t.Fatalf("%d loads, want exactly 1", d)
	}
}

func TestStoreErrorsPassThrough(t *testing.T) {
	f := newFixture(t)
	boom := errors.New("database down")
	f.s.fail = boom
	kr := f.node()
	if _, err := kr.Seal(ctx, "k", []byte("x"), nil); !errors.Is(err, boom) {
		t.Errorf("Seal: err = %v, want the store's error", err)
	}
	if _, err := kr.Rotate(ctx, "k"); !errors.Is(err, boom) {
		t.Errorf("Rotate: err = %v, want the store's error", err)
	}
	if err := kr.Destroy(ctx, "k"); !errors.Is(err, boom) {
		t.Errorf("Destroy: err = %v, want the store's error", err)
	}
}

// derived computes a derived key the way the package doc says, from the
// raw data key unwrapped straight from the store.
func derived(t *testing.T, f *fixture, keyID string, v uint32, info string) []byte {
	t.Helper()
	raw, err := f.p.Unwrap(ctx, f.s.row(keyID, v).Wrapped, wrapAAD(keyID, v))
	if err != nil {
		t.Fatal(err)
	}
	k, err := hkdf.Expand(sha256.New, raw, info, 32)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestMAC(t *testing.T) {
	f := newFixture(t)
	kr := f.node()
	const id = "index/customers/email"
	v, m1, err := kr.MAC(ctx, id, []byte("alice@example.com"))
	if err != nil || v != 1 {
		t.Fatalf("MAC = v%d, %v", v, err)
	}
	h := hmac.New(sha256.New, derived(t, f, id, 1, "coffer/keyring/v1/mac"))
	h.Write([]byte("alice@example.com"))
	if !hmac.Equal(m1, h.Sum(nil)) {
		t.Fatal("MAC is not HMAC-SHA256 under the documented derived key")
	}
	_, again, _ := kr.MAC(ctx, id, []byte("alice@example.com"))
	_, otherData, _ := kr.MAC(ctx, id, []byte("bob@example.com"))
	if !hmac.Equal(m1, again) || hmac.Equal(m1, otherData) {
		t.Fatal("MAC is not a deterministic function of the data")
	}
	if _, err := kr.Rotate(ctx, id); err != nil {
		t.Fatal(err)
	}
	v2, m2, _ := kr.MAC(ctx, id, []byte("alice@example.com"))
	if v2 != 2 || hmac.Equal(m1, m2) {
		t.Fatalf("after rotation MAC used v%d and the same key", v2)
	}
	old, err := f.node().MACVersion(ctx, id, 1, []byte("alice@example.com"))
	if err != nil || !hmac.Equal(old, m1) {
		t.Fatalf("MACVersion(1) = %x, %v; want the v1 MAC", old, err)
	}
	if _, err := kr.MACVersion(ctx, id, 3, []byte("x")); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("MACVersion of a missing version: err = %v, want ErrKeyNotFound", err)
	}
}

func TestKeyIsDerivedAndSeparate(t *testing.T) {
	f := newFixture(t)
	kr := f.node()
	const id = "tokens/card_number"
	v, k, err := kr.Key(ctx, id)
	if err != nil || v != 1 || k.Len() != 32 {
		t.Fatalf("Key = v%d, %d bytes, %v", v, k.Len(), err)
	}
	if !bytes.Equal(k.Bytes(), derived(t, f, id, 1, "coffer/keyring/v1/key")) {
		t.Fatal("Key is not the documented derived key")
	}
	raw, _ := f.p.Unwrap(ctx, f.s.row(id, 1).Wrapped, wrapAAD(id, 1))
	for name, other := range map[string][]byte{
		"raw data key": raw,
		"aead key":     derived(t, f, id, 1, "coffer/keyring/v1/aead"),
		"mac key":      derived(t, f, id, 1, "coffer/keyring/v1/mac"),
	} {
		if bytes.Equal(k.Bytes(), other) {
			t.Errorf("Key returned the %s", name)
		}
	}
	// Sealing uses the documented AEAD key.
	a, _ := envelope.New(secret.NewKey(derived(t, f, id, 1, "coffer/keyring/v1/aead")), 1)
	env := seal(t, kr, id, "4111111111111111")
	if pt, err := a.Open(env, envelope.AAD(id, "rec", "field")); err != nil || string(pt) != "4111111111111111" {
		t.Fatalf("envelope does not open under the documented AEAD key: %v", err)
	}

	k.Zero() // the caller's copy; the keyring's stays
	_, k2, err := kr.Key(ctx, id)
	if err != nil || k2.Len() != 32 {
		t.Fatalf("Key after zeroing a returned copy = %d bytes, %v", k2.Len(), err)
	}
	if _, err := kr.Rotate(ctx, id); err != nil {
		t.Fatal(err)
	}
	old, err := kr.KeyVersion(ctx, id, 1)
	if err != nil || !old.Equal(k2) {
		t.Fatalf("KeyVersion(1) after rotation differs from the v1 key (%v)", err)
	}
	v, k3, _ := kr.Key(ctx, id)
	if v != 2 || k3.Equal(k2) {
		t.Fatal("after rotation Key did not move to version 2")
	}
}

func TestCacheIsBoundedAndZeroesEvicted(t *testing.T) {
	f := newFixture(t)
	kr := New(f.p, f.s, Options{Now: f.clock.Now, MaxKeys: 10})
	seal(t, kr, "first", "x")
	kr.mu.RLock()
	first := kr.keys["first"].versions[1]
	kr.mu.RUnlock()
	envs := map[string][]byte{}
	for i := range 50 {
		id := fmt.Sprintf("k%d", i)
		envs[id] = seal(t, kr, id, id)
	}
	kr.mu.RLock()
	n := len(kr.keys)
	_, stillThere := kr.keys["first"]
	kr.mu.RUnlock()
	if n > 10 {
		t.Fatalf("cache holds %d key ids, MaxKeys is 10", n)
	}
	if !stillThere && !first.mac.IsZero() {
		t.Fatal("an evicted key was not zeroed")
	}
	for id, env := range envs {
		mustOpen(t, kr, id, env, id) // evicted keys reload
	}
	if err := kr.Close(); err != nil {
		t.Fatal(err)
	}
	mustOpen(t, kr, "k0", envs["k0"], "k0")
}

func BenchmarkSeal100(b *testing.B) {
	f := newFixture(b)
	kr := New(f.p, f.s, Options{})
	pt := make([]byte, 100)
	aad := envelope.AAD("customers", "0190f1b2-7c1e-7d4a-9f3e-2b1c0d9e8f7a", "email", "1")
	if _, err := kr.Seal(ctx, "collection/customers", pt, aad); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := kr.Seal(ctx, "collection/customers", pt, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen100(b *testing.B) {
	f := newFixture(b)
	kr := New(f.p, f.s, Options{})
	aad := envelope.AAD("customers", "0190f1b2-7c1e-7d4a-9f3e-2b1c0d9e8f7a", "email", "1")
	env, err := kr.Seal(ctx, "collection/customers", make([]byte, 100), aad)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(100)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := kr.Open(ctx, "collection/customers", env, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSealParallel100(b *testing.B) {
	f := newFixture(b)
	kr := New(f.p, f.s, Options{})
	pt := make([]byte, 100)
	if _, err := kr.Seal(ctx, "collection/customers", pt, nil); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := kr.Seal(ctx, "collection/customers", pt, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkMAC(b *testing.B) {
	f := newFixture(b)
	kr := New(f.p, f.s, Options{})
	data := []byte("alice@example.com")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := kr.MAC(ctx, "index/customers/email", data); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzOpen(f *testing.F) {
	fx := newFixture(f)
	kr := fx.node()
	genuine := seal(f, kr, "k", "genuine")
	if _, err := kr.Rotate(ctx, "k"); err != nil {
		f.Fatal(err)
	}
	f.Add(genuine)
	f.Add(genuine[:envelope.Overhead])
	f.Add([]byte{1, 0, 0, 0, 2})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, env []byte) {
		pt, err := open(kr, "k", env)
		if err == nil {
			if !bytes.Equal(env, genuine) || pt != "genuine" {
				t.Fatalf("forged envelope %x opened to %q", env, pt)
			}
			return
		}
		if !errors.Is(err, envelope.ErrDecrypt) {
			t.Fatalf("err = %v, want ErrDecrypt", err)
		}
	})
}

// MACAll gives the MAC under every active version, newest first, and
// skips a retired one: what a blind index search needs during a reindex.
func TestMACAll(t *testing.T) {
	f := newFixture(t)
	kr := f.node()
	const id = "index/customers/email"
	data := []byte("ada@example.com")
	v1, m1, err := kr.MAC(ctx, id, data)
	if err != nil || v1 != 1 {
		t.Fatalf("MAC = %d, %v", v1, err)
	}
	if cur, all, err := kr.MACAll(ctx, id, data); err != nil || cur != 1 || len(all) != 1 || !bytes.Equal(all[0], m1) {
		t.Fatalf("MACAll before rotation = %d, %d MACs, %v", cur, len(all), err)
	}
	for range 2 {
		if _, err := kr.Rotate(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	_, m3, err := kr.MAC(ctx, id, data)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := kr.MACVersion(ctx, id, 2, data)
	if err != nil {
		t.Fatal(err)
	}
	cur, all, err := kr.MACAll(ctx, id, data)
	if err != nil || cur != 3 || len(all) != 3 || !bytes.Equal(all[0], m3) || !bytes.Equal(all[1], m2) || !bytes.Equal(all[2], m1) {
		t.Fatalf("MACAll after two rotations = %d, %d MACs, %v; want versions 3, 2, 1 in that order", cur, len(all), err)
	}
	if bytes.Equal(m1, m2) || bytes.Equal(m2, m3) {
		t.Fatal("versions share a MAC key")
	}
	if err := kr.Retire(ctx, id, 1); err != nil {
		t.Fatal(err)
	}
	if cur, all, err := kr.MACAll(ctx, id, data); err != nil || cur != 3 || len(all) != 2 || !bytes.Equal(all[1], m2) {
		t.Fatalf("MACAll with version 1 retired = %d, %d MACs, %v; want 3 and 2", cur, len(all), err)
	}
}
