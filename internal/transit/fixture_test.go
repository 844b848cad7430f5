package transit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/secret"
	"github.com/cofferhq/coffer/internal/testclock"
)

var ctx = context.Background()

// keyStore is an in-memory keyring.Store with the SQL stores' contract.
type keyStore struct {
	mu   sync.Mutex
	keys map[string]map[uint32]coffer.DataKey
}

func (s *keyStore) DataKeys(_ context.Context, keyID string) ([]coffer.DataKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []coffer.DataKey
	for _, k := range s.keys[keyID] {
		k.Wrapped = bytes.Clone(k.Wrapped)
		out = append(out, k)
	}
	return out, nil
}

func (s *keyStore) InsertDataKey(_ context.Context, k coffer.DataKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[k.KeyID][k.Version]; ok {
		return fmt.Errorf("insert: %w", keyring.ErrVersionExists)
	}
	if s.keys[k.KeyID] == nil {
		s.keys[k.KeyID] = map[uint32]coffer.DataKey{}
	}
	k.Wrapped = bytes.Clone(k.Wrapped)
	s.keys[k.KeyID][k.Version] = k
	return nil
}

func (s *keyStore) SetDataKeyState(_ context.Context, keyID string, v uint32, state string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[keyID][v]
	if !ok {
		return fmt.Errorf("no such version")
	}
	k.State = state
	s.keys[keyID][v] = k
	return nil
}

func (s *keyStore) DestroyDataKeys(_ context.Context, keyID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for v, k := range s.keys[keyID] {
		k.State, k.Wrapped = coffer.KeyDestroyed, nil
		s.keys[keyID][v] = k
	}
	return nil
}

func (s *keyStore) count(keyID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys[keyID])
}

// metaStore is an in-memory Store with the SQL stores' contract.
type metaStore struct {
	mu     sync.Mutex
	keys   map[string]TransitKey
	writes atomic.Int64 // calls that change something
	reads  atomic.Int64 // TransitKey calls
	// listeners are told of every change PostgreSQL's trigger announces
	// (all but encryption counts), as each node's change feed is; silent
	// stops that, as lost notifications would.
	listeners []func()
	silent    atomic.Bool
	// afterMiss and beforeCreate, when set, run once (outside the lock)
	// after a TransitKey that found nothing and before a
	// CreateTransitKey: a test makes another node's calls land between.
	afterMiss, beforeCreate func()
}

// listen adds fn to the listeners.
func (s *metaStore) listen(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listeners = append(s.listeners, fn)
}

// announce tells every listener that transit_keys changed, unless silent.
func (s *metaStore) announce() {
	if s.silent.Load() {
		return
	}
	s.mu.Lock()
	ls := slices.Clone(s.listeners)
	s.mu.Unlock()
	for _, fn := range ls {
		fn()
	}
}

// hook returns *h and clears it.
func (s *metaStore) hook(h *func()) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn := *h
	*h = nil
	return fn
}

func (s *metaStore) CreateTransitKey(_ context.Context, k TransitKey) error {
	if fn := s.hook(&s.beforeCreate); fn != nil {
		fn()
	}
	s.mu.Lock()
	if _, ok := s.keys[k.Name]; ok {
		s.mu.Unlock()
		return coffer.Errorf(coffer.ECONFLICT, "transit key exists")
	}
	s.writes.Add(1)
	s.keys[k.Name] = k
	s.mu.Unlock()
	s.announce()
	return nil
}

func (s *metaStore) TransitKeyNames(context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.keys))
	for n := range s.keys {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}

func (s *metaStore) TransitKey(_ context.Context, name string) (TransitKey, error) {
	s.reads.Add(1)
	s.mu.Lock()
	k, ok := s.keys[name]
	s.mu.Unlock()
	if !ok {
		if fn := s.hook(&s.afterMiss); fn != nil {
			fn()
		}
		return TransitKey{}, coffer.Errorf(coffer.ENOTFOUND, "transit key not found")
	}
	return k, nil
}

func (s *metaStore) ConfigureTransitKey(_ context.Context, k TransitKey) error {
	defer s.announce()
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.keys[k.Name]
	if !ok {
		return coffer.Errorf(coffer.ENOTFOUND, "transit key not found")
	}
	s.writes.Add(1)
	old.MinDecryptionVersion, old.Deletable, old.AutoRotatePeriod = k.MinDecryptionVersion, k.Deletable, k.AutoRotatePeriod
	s.keys[k.Name] = old
	return nil
}

func (s *metaStore) RecordTransitVersion(_ context.Context, name string, v uint32) error {
	defer s.announce()
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.keys[name]
	if !ok {
		return coffer.Errorf(coffer.ENOTFOUND, "transit key not found")
	}
	s.writes.Add(1)
	old.LatestVersion, old.EncryptionsSinceRotate = max(old.LatestVersion, v), 0
	s.keys[name] = old
	return nil
}

func (s *metaStore) DeleteTransitKey(_ context.Context, name string) error {
	defer s.announce()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[name]; !ok {
		return coffer.Errorf(coffer.ENOTFOUND, "transit key not found")
	}
	s.writes.Add(1)
	delete(s.keys, name)
	return nil
}

func (s *metaStore) AddTransitEncryptions(_ context.Context, name string, n int64) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[name]
	if !ok {
		return 0, coffer.Errorf(coffer.ENOTFOUND, "transit key not found")
	}
	s.writes.Add(1)
	k.EncryptionsSinceRotate += n
	s.keys[name] = k
	return k.EncryptionsSinceRotate, nil
}

func (s *metaStore) get(t testing.TB, name string) TransitKey {
	t.Helper()
	k, err := s.TransitKey(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// auth allows the actions in allow and denies every other, recording the
// decision in the note as the policy holder does.
type auth struct {
	mu    sync.Mutex
	allow map[string]bool
	asked []string // "action resource"
}

func (a *auth) Allowed(p *coffer.Principal, action, resource, ip string, note *coffer.AccessNote) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked = append(a.asked, action+" "+resource)
	if p != nil && a.allow[action] {
		note.Allow("allow-" + action)
		return nil
	}
	note.Deny("no rule allows " + action)
	return coffer.Errorf(coffer.EFORBIDDEN, "not allowed to %s %s", action, resource)
}

func (a *auth) set(actions ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.allow = map[string]bool{}
	for _, x := range actions {
		a.allow[x] = true
	}
}

// countingKeys counts the calls that reach a real keyring.
type countingKeys struct {
	Keys
	calls atomic.Int64
}

func (k *countingKeys) Seal(ctx context.Context, id string, pt, ad []byte) ([]byte, error) {
	k.calls.Add(1)
	return k.Keys.Seal(ctx, id, pt, ad)
}

func (k *countingKeys) Open(ctx context.Context, id string, env, ad []byte) ([]byte, error) {
	k.calls.Add(1)
	return k.Keys.Open(ctx, id, env, ad)
}

func (k *countingKeys) Rotate(ctx context.Context, id string) (uint32, error) {
	k.calls.Add(1)
	return k.Keys.Rotate(ctx, id)
}

func (k *countingKeys) Destroy(ctx context.Context, id string) error {
	k.calls.Add(1)
	return k.Keys.Destroy(ctx, id)
}

// fixture is one deployment: shared stores and root key, nodes on demand.
type fixture struct {
	provider keyprovider.Provider
	ks       *keyStore
	ms       *metaStore
	clock    *testclock.Clock
	auth     *auth
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	root := make([]byte, 32)
	if _, err := rand.Read(root); err != nil {
		t.Fatal(err)
	}
	p, err := keyprovider.NewLocal("test", secret.NewKey(root), nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{
		provider: p,
		ks:       &keyStore{keys: map[string]map[uint32]coffer.DataKey{}},
		ms:       &metaStore{keys: map[string]TransitKey{}},
		clock:    testclock.New(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)),
		auth:     &auth{},
	}
	f.auth.set("admin", "read", "encrypt", "decrypt")
	return f
}

// node is one Coffer process: its own keyring cache and Service.
type node struct {
	*Service
	keys *countingKeys
}

func (f *fixture) node(tune ...func(*Config)) node {
	kr := keyring.New(f.provider, f.ks, keyring.Options{Now: f.clock.Now})
	keys := &countingKeys{Keys: kr}
	c := Config{Store: f.ms, Versions: f.ks, Keys: keys, Auth: f.auth, Now: f.clock.Now}
	for _, fn := range tune {
		fn(&c)
	}
	n := node{New(c), keys}
	f.ms.listen(n.ForgetKeys)
	return n
}

func caller() Caller {
	return Caller{
		Principal: &coffer.Principal{ID: "svc-1", Kind: coffer.KindClient, Roles: []string{"app"}},
		IP:        "192.0.2.7",
		Note:      &coffer.AccessNote{},
	}
}

func enc(s string) Plaintext { return Plaintext(base64.StdEncoding.EncodeToString([]byte(s))) }

func mustCreate(t testing.TB, n node, name string, spec KeySpec) KeyInfo {
	t.Helper()
	info, err := n.Create(ctx, caller(), name, spec)
	if err != nil {
		t.Fatalf("Create(%s): %v", name, err)
	}
	return info
}

func mustEncrypt(t testing.TB, n node, name string, items ...Item) []Ciphertext {
	t.Helper()
	out, err := n.Encrypt(ctx, caller(), name, items)
	if err != nil {
		t.Fatalf("Encrypt(%s): %v", name, err)
	}
	if len(out) != len(items) {
		t.Fatalf("Encrypt returned %d ciphertexts for %d items", len(out), len(items))
	}
	return out
}

func mustDecrypt(t testing.TB, n node, name string, ct, context string, want string) {
	t.Helper()
	out, err := n.Decrypt(ctx, caller(), name, []CiphertextItem{{Ciphertext: ct, Context: Plaintext(context)}})
	if err != nil {
		t.Fatalf("Decrypt(%s): %v", name, err)
	}
	if got := out[0].Plaintext; got != enc(want) {
		t.Fatalf("Decrypt(%s) = %s, want %s", name, got.Reveal(), enc(want).Reveal())
	}
}

// wantCode fails unless err is a *coffer.Error with code.
func wantCode(t testing.TB, err error, code string) {
	t.Helper()
	if got := coffer.ErrorCode(err); got != code {
		t.Fatalf("err = %v (code %q), want code %q", err, got, code)
	}
}
