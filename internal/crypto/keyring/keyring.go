package keyring

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
	"github.com/cofferhq/coffer/internal/secret"
)

// Defaults for Options.
const (
	DefaultCacheTTL = 30 * time.Second
	DefaultMaxKeys  = 10000
	// DefaultSealLimit is the hard stop of a data key version and of the
	// root key: 2^32 - 2^28 encryptions with random 96-bit nonces. NIST SP
	// 800-38D bounds a key at 2^32; the margin of 2^28 covers what other
	// nodes sealed that this one has not seen yet (their counts arrive
	// with their flushes and this node's reloads, within CacheTTL: at
	// 30 s that is nine million seals a second across the deployment).
	DefaultSealLimit = 1<<32 - 1<<28
)

// RootCheckKeyID is the key id Check makes and unwraps to prove the root
// key (coffer.RootCheckKey).
var RootCheckKeyID = coffer.RootCheckKey.String()

// Permanent reports whether keyID keeps every version for good: the audit
// log's keys (audit/hmac chains events, audit/signing signs checkpoints).
// They rotate, but verifying the log needs the version each event and
// checkpoint names for as long as the log is kept, so Retire and Destroy
// refuse them whoever asks (coffer.KeyID.Permanent).
func Permanent(keyID string) bool { return coffer.ParseKeyID(keyID).Permanent() }

// dataKeySize is the length of every data key version: 256 bits.
const dataKeySize = 32

// HKDF info labels; see the package doc.
const (
	infoAEAD = "coffer/keyring/v1/aead"
	infoMAC  = "coffer/keyring/v1/mac"
	infoKey  = "coffer/keyring/v1/key"
)

// maxAttempts bounds the cache-miss retries of one call.
const maxAttempts = 3

// maxVersionAttempts bounds the tries of one rotation or import. Each
// lost try means another node's new version went in first, so this many
// nodes rotating one key at once all succeed.
const maxVersionAttempts = 8

// loadStripes is the number of locks that serialise loading (per key id,
// by hash), so one key id is loaded or created by one goroutine at a time.
const loadStripes = 64

// Options tune a Keyring. The zero value is ready for production.
type Options struct {
	// Rand supplies key bytes and nonces; nil means crypto/rand.Reader.
	// It must be safe for concurrent use.
	Rand io.Reader
	// Now tells the time for key creation and cache age; nil means time.Now.
	Now func() time.Time
	// CacheTTL is how long an unwrapped key id is used before it is
	// reloaded from the Store; 0 or less means DefaultCacheTTL.
	CacheTTL time.Duration
	// MaxKeys bounds how many key ids are cached; 0 or less means
	// DefaultMaxKeys. Past it, stale and then arbitrary ids are evicted.
	MaxKeys int
	// SealLimit is the hard stop of every data key version: a version
	// that sealed this many values (by the count every node shares, see
	// Use counts in the package doc) refuses to seal more (ErrUseLimit).
	// It also bounds the wraps under the root key. 0 means
	// DefaultSealLimit; more than that is DefaultSealLimit too.
	SealLimit uint64
	// RotateAtLimit makes Seal rotate a key whose current version is at
	// SealLimit, once, and seal under the new version, instead of refusing
	// (the lifecycle's rotation by use count should have rotated it
	// before; set it when that rotation is configured). Reseal (a rewrap)
	// and SealVersion (transit, which records its own versions) never
	// rotate: they refuse.
	RotateAtLimit bool
	// OnLimitRotate, if set, is told of each rotation RotateAtLimit made.
	OnLimitRotate func(keyID string, from, to uint32)
}

// Keyring seals, opens and MACs values under versioned data keys. It is
// safe for concurrent use; make one per process and share it.
type Keyring struct {
	// root is the root key provider and, during an unfinished root key
	// rotation, the ones it replaces (see RewrapRoot).
	root    atomic.Pointer[rootState]
	rootMu  sync.Mutex // serialises RewrapRoot
	store   Store
	rand    io.Reader
	now     func() time.Time
	ttl     time.Duration
	maxKeys int
	// gen is raised by Expire: an entry loaded under an older gen is stale.
	gen atomic.Uint64

	seed  maphash.Seed
	loads [loadStripes]sync.Mutex

	// mu guards keys and every use of the key bytes cached in it: they are
	// read under RLock and zeroed only under Lock (and the key id's stripe
	// of loads, so a loader can reuse the versions it found cached).
	mu   sync.RWMutex
	keys map[string]*entry

	// usesMu guards unflushed: the seal counts of versions dropped from
	// the cache before FlushUses wrote them (see uses.go).
	usesMu    sync.Mutex
	unflushed map[useKey]useCount

	limit         uint64
	rotateAtLimit bool
	onLimitRotate func(keyID string, from, to uint32)
	// rootUses counts the wraps under the root key (see rootuses.go).
	rootUses rootUses
}

// entry is what the cache holds for one key id.
type entry struct {
	loaded    time.Time
	gen       uint64 // kr.gen when its load began: older than Expire, stale
	versions  map[uint32]*keyVersion
	max       uint32      // highest version in any state; 0 when none
	current   *keyVersion // highest active version; nil when none
	destroyed bool
}

// keyVersion is one data key version; the key fields are set for active
// versions only.
type keyVersion struct {
	n       uint32
	state   string
	wrapped []byte
	aead    *envelope.AEAD
	mac     secret.Key
	export  secret.Key
	// foreign opens values another system sealed under the version's
	// bytes themselves (OpenForeign); built on first use, nil until then.
	foreign atomic.Pointer[cipher.AEAD]
	// seals counts this node's Seals under the version that FlushUses
	// has not yet added to the Store's count, and reseals its Reseals
	// (disjoint: each seal is in exactly one). Seal and Reseal add to
	// them under mu's read lock; a version leaving the cache hands them on
	// under mu's lock.
	seals   atomic.Uint64
	reseals atomic.Uint64
	// base is the Store's count of the version when it was loaded, plus
	// what FlushUses wrote of this node's since: with seals and reseals,
	// the count SealLimit is checked against.
	base atomic.Uint64
}

// used is the version's count as this node knows it.
func (v *keyVersion) used() uint64 { return v.base.Load() + v.seals.Load() + v.reseals.Load() }

func (v *keyVersion) zero() {
	v.mac.Zero()
	v.export.Zero()
	v.foreign.Store(nil)
}

// New returns a Keyring whose data keys are wrapped by p and stored in s.
func New(p keyprovider.Provider, s Store, o Options) *Keyring {
	kr := &Keyring{
		store:   s,
		rand:    o.Rand,
		now:     o.Now,
		ttl:     o.CacheTTL,
		maxKeys: o.MaxKeys,
		seed:    maphash.MakeSeed(),
		keys:    make(map[string]*entry),

		unflushed:     make(map[useKey]useCount),
		limit:         o.SealLimit,
		rotateAtLimit: o.RotateAtLimit,
		onLimitRotate: o.OnLimitRotate,
	}
	if kr.limit == 0 || kr.limit > DefaultSealLimit {
		kr.limit = DefaultSealLimit
	}
	kr.root.Store(&rootState{wrap: p})
	if kr.rand == nil {
		kr.rand = rand.Reader
	}
	if kr.now == nil {
		kr.now = time.Now
	}
	if kr.ttl <= 0 {
		kr.ttl = DefaultCacheTTL
	}
	if kr.maxKeys <= 0 {
		kr.maxKeys = DefaultMaxKeys
	}
	return kr
}

// Seal encrypts plaintext bound to aad under the newest active version of
// keyID, creating version 1 on first use. Bind the value's place into aad,
// e.g. envelope.AAD(collection, recordID, field); the envelope header, which
// GCM authenticates, already binds the key version, which Seal picks. It
// returns ErrKeyDestroyed for a destroyed key id and never makes a new key
// for it, and an error wrapping keyprovider.ErrUnwrap when a stored key
// does not unwrap (wrong root key, or a wrapped key moved between rows).
func (kr *Keyring) Seal(ctx context.Context, keyID string, plaintext, aad []byte) ([]byte, error) {
	return kr.seal(ctx, keyID, plaintext, aad, false)
}

// SealVersion is Seal under version n of keyID, for a caller that keeps
// its own record of which version encrypts (transit's latest version):
// a newer version the keyring holds, made by a rotation or an import whose
// caller has not recorded it (yet, or ever), is not used. It counts as a
// seal of n. It returns ErrKeyRetired or ErrVersionDestroyed for a version
// in that state, ErrKeyNotFound for a key id without that version, and
// ErrKeyDestroyed for a destroyed key id; it never makes a version.
func (kr *Keyring) SealVersion(ctx context.Context, keyID string, n uint32, plaintext, aad []byte) ([]byte, error) {
	var out []byte
	err := kr.withVersion(ctx, keyID, n, ErrKeyNotFound, func(v *keyVersion) (err error) {
		if v.used() >= kr.limit {
			return useLimit(keyID, v.n)
		}
		if out, err = v.aead.Seal(kr.rand, plaintext, aad); err == nil {
			v.seals.Add(1) // one more random nonce under this version
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Reseal is Seal for a value that was already sealed under an older
// version of keyID and is moved to the newest one (the rewrap after a
// rotation). It counts as a use of the version like any seal (each is one
// more random nonce), and also in the version's rewrap count
// (coffer.DataKey.RewrapUses), so that the rotation policy can tell a
// version used by new values from one filled by its own rewrap.
func (kr *Keyring) Reseal(ctx context.Context, keyID string, plaintext, aad []byte) ([]byte, error) {
	return kr.seal(ctx, keyID, plaintext, aad, true)
}

// seal is Seal, counted as a Reseal when rewrap is set. A version at the
// seal limit refuses; with RotateAtLimit, a Seal (never a Reseal) rotates
// the key once and seals under the new version.
func (kr *Keyring) seal(ctx context.Context, keyID string, plaintext, aad []byte, rewrap bool) ([]byte, error) {
	out, full, err := kr.sealCurrent(ctx, keyID, plaintext, aad, rewrap)
	if full == 0 || rewrap || !kr.rotateAtLimit {
		return out, err
	}
	from := full
	to, rerr := kr.addVersion(ctx, keyID, nil, from)
	if rerr != nil {
		return nil, fmt.Errorf("%w (and rotating it failed: %w)", err, rerr)
	}
	if to > 0 && kr.onLimitRotate != nil {
		kr.onLimitRotate(keyID, from, to)
	}
	out, _, err = kr.sealCurrent(ctx, keyID, plaintext, aad, rewrap)
	return out, err
}

// sealCurrent seals under the current version of keyID; when that
// version is at the seal limit it returns the version and the error.
func (kr *Keyring) sealCurrent(ctx context.Context, keyID string, plaintext, aad []byte, rewrap bool) (out []byte, full uint32, err error) {
	err = kr.withCurrent(ctx, keyID, func(v *keyVersion) (err error) {
		if v.used() >= kr.limit {
			full = v.n
			return useLimit(keyID, v.n)
		}
		out, err = v.aead.Seal(kr.rand, plaintext, aad)
		if err != nil {
			return err
		}
		// One more random nonce under this version.
		if rewrap {
			v.reseals.Add(1)
		} else {
			v.seals.Add(1)
		}
		return nil
	})
	if err != nil {
		return nil, full, err
	}
	return out, 0, nil
}

// useLimit is the error of a version at the seal limit: ErrUseLimit for
// callers, a 503 for clients.
func useLimit(keyID string, n uint32) error {
	return &coffer.Error{Code: coffer.EUNAVAILABLE, RetryAfterSeconds: 60,
		Message: "a data key reached its use bound and must be rotated before it seals more values",
		Cause:   fmt.Errorf("%w: %s version %d", ErrUseLimit, keyID, n)}
}

// Open decrypts an envelope of keyID bound to aad, with the version its
// header names. It returns ErrKeyDestroyed, ErrKeyRetired or ErrKeyNotFound
// when the key is in that state, and envelope.ErrDecrypt for every envelope
// that does not open (malformed, tampered, wrong aad, unknown version).
// Like Seal, it returns an error wrapping keyprovider.ErrUnwrap for a stored
// key that does not unwrap.
func (kr *Keyring) Open(ctx context.Context, keyID string, env, aad []byte) ([]byte, error) {
	ver, err := envelope.KeyVersion(env)
	if err != nil {
		return nil, envelope.ErrDecrypt
	}
	var out []byte
	err = kr.withVersion(ctx, keyID, ver, envelope.ErrDecrypt, func(v *keyVersion) (err error) {
		out, err = v.aead.Open(env, aad)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// MAC returns HMAC-SHA256 of data under the newest active version of keyID
// (creating version 1 on first use) and that version, for blind indexes,
// deterministic tokens and audit chains. Store the version with the MAC.
func (kr *Keyring) MAC(ctx context.Context, keyID string, data []byte) (uint32, []byte, error) {
	var n uint32
	var out []byte
	err := kr.withCurrent(ctx, keyID, func(v *keyVersion) error {
		n, out = v.n, mac(v, data)
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	return n, out, nil
}

// MACVersion returns HMAC-SHA256 of data under the given version of keyID,
// to compare with a MAC made earlier. Compare MACs with hmac.Equal.
func (kr *Keyring) MACVersion(ctx context.Context, keyID string, version uint32, data []byte) ([]byte, error) {
	var out []byte
	err := kr.withVersion(ctx, keyID, version, ErrKeyNotFound, func(v *keyVersion) error {
		out = mac(v, data)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// MACAll returns HMAC-SHA256 of data under every active version of keyID,
// the newest first (creating version 1 on first use), with that newest
// version: a blind index searched while a background reindex moves its
// entries from an old version to the new one must look for both.
func (kr *Keyring) MACAll(ctx context.Context, keyID string, data []byte) (uint32, [][]byte, error) {
	cur, first, err := kr.MAC(ctx, keyID, data)
	if err != nil {
		return 0, nil, err
	}
	out := [][]byte{first}
	for n := cur - 1; n >= 1; n-- {
		m, err := kr.MACVersion(ctx, keyID, n, data)
		if errors.Is(err, ErrKeyRetired) || errors.Is(err, ErrKeyNotFound) || errors.Is(err, ErrVersionDestroyed) {
			continue // retired once reindexed: nothing is filed under it
		}
		if err != nil {
			return 0, nil, err
		}
		out = append(out, m)
	}
	return cur, out, nil
}

func mac(v *keyVersion, data []byte) []byte {
	k := v.mac.Bytes()
	defer clear(k)
	h := hmac.New(sha256.New, k)
	h.Write(data)
	return h.Sum(nil)
}

// Key returns the newest active version of keyID and a 32-byte key derived
// from it for use outside the keyring (FF1 token keys), creating version 1
// on first use. It is never the key Seal encrypts with nor the MAC key. The
// caller owns the returned copy and should Zero it when done.
func (kr *Keyring) Key(ctx context.Context, keyID string) (uint32, secret.Key, error) {
	var n uint32
	var k secret.Key
	err := kr.withCurrent(ctx, keyID, func(v *keyVersion) error {
		n, k = v.n, copyKey(v.export)
		return nil
	})
	if err != nil {
		return 0, secret.Key{}, err
	}
	return n, k, nil
}

// KeyVersion returns the key Key returned for the given version of keyID.
func (kr *Keyring) KeyVersion(ctx context.Context, keyID string, version uint32) (secret.Key, error) {
	var k secret.Key
	err := kr.withVersion(ctx, keyID, version, ErrKeyNotFound, func(v *keyVersion) error {
		k = copyKey(v.export)
		return nil
	})
	if err != nil {
		return secret.Key{}, err
	}
	return k, nil
}

func copyKey(k secret.Key) secret.Key {
	b := k.Bytes()
	defer clear(b)
	return secret.NewKey(b)
}

// withCurrent runs fn, under the read lock, with the version of keyID that
// encrypts, loading the key id when its cache entry is missing or stale
// and creating version 1 when it has none.
func (kr *Keyring) withCurrent(ctx context.Context, keyID string, fn func(*keyVersion) error) error {
	for attempt := range maxAttempts {
		kr.mu.RLock()
		e := kr.keys[keyID]
		if e != nil && (attempt > 0 || kr.fresh(e)) {
			var err error
			switch {
			case e.destroyed:
				err = fmt.Errorf("%w: %s", ErrKeyDestroyed, keyID)
			case e.current != nil:
				err = fn(e.current)
			case len(e.versions) > 0:
				err = fmt.Errorf("%w: %s has no active version", ErrKeyRetired, keyID)
			default:
				err = errRetry
			}
			kr.mu.RUnlock()
			if err != errRetry { //nolint:errorlint // internal marker, never wrapped
				return err
			}
		} else {
			kr.mu.RUnlock()
		}
		if err := kr.refresh(ctx, keyID, e, true); err != nil {
			return err
		}
	}
	return fmt.Errorf("keyring: %s: key cache churned; try again", keyID)
}

// errRetry marks a cache entry that cannot serve the call as it is.
var errRetry = errors.New("keyring: retry")

// withVersion runs fn, under the read lock, with version n of keyID,
// loading the key id once when its entry is missing, stale or older than n.
// A version the key id does not have is reported as unknown.
func (kr *Keyring) withVersion(ctx context.Context, keyID string, n uint32, unknown error, fn func(*keyVersion) error) error {
	for attempt := range maxAttempts {
		kr.mu.RLock()
		e := kr.keys[keyID]
		if e != nil && (attempt > 0 || kr.fresh(e) && n <= e.max) {
			var err error
			v := e.versions[n]
			switch {
			case e.destroyed:
				err = fmt.Errorf("%w: %s", ErrKeyDestroyed, keyID)
			case len(e.versions) == 0:
				err = fmt.Errorf("%w: %s", ErrKeyNotFound, keyID)
			case v == nil:
				err = unknown
			case v.state == coffer.KeyRetired:
				err = fmt.Errorf("%w: %s version %d", ErrKeyRetired, keyID, n)
			case v.state == coffer.KeyDestroyed:
				err = fmt.Errorf("%w: %s version %d", ErrVersionDestroyed, keyID, n)
			default:
				err = fn(v)
			}
			kr.mu.RUnlock()
			return err
		}
		kr.mu.RUnlock()
		if err := kr.refresh(ctx, keyID, e, false); err != nil {
			return err
		}
	}
	return fmt.Errorf("keyring: %s: key cache churned; try again", keyID)
}

func (kr *Keyring) fresh(e *entry) bool {
	return e.gen == kr.gen.Load() && kr.now().Sub(e.loaded) < kr.ttl
}

// Expire makes every cached key id stale: its next use reloads it from
// the Store (another node rotated, retired or destroyed a version). Key
// versions whose wrapped bytes did not change are reused, not unwrapped
// again.
func (kr *Keyring) Expire() { kr.gen.Add(1) }

func (kr *Keyring) stripe(keyID string) *sync.Mutex {
	return &kr.loads[maphash.String(kr.seed, keyID)%loadStripes]
}

// refresh reloads keyID from the Store into the cache, unless another
// goroutine did so since the caller saw seen; with create, it makes
// version 1 of a key id that has no versions.
func (kr *Keyring) refresh(ctx context.Context, keyID string, seen *entry, create bool) error {
	l := kr.stripe(keyID)
	l.Lock()
	defer l.Unlock()
	kr.mu.RLock()
	cur := kr.keys[keyID]
	kr.mu.RUnlock()
	if cur != nil && cur != seen && kr.fresh(cur) && !(create && len(cur.versions) == 0) {
		return nil
	}
	e, err := kr.load(ctx, keyID, cur)
	if err != nil {
		return err
	}
	if create && len(e.versions) == 0 {
		v, err := kr.create(ctx, keyID, 1)
		switch {
		case errors.Is(err, ErrVersionExists): // another node made it first
			if e, err = kr.load(ctx, keyID, cur); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			e.add(v)
		}
	}
	kr.install(keyID, e)
	return nil
}

// load reads every version of keyID from the Store and unwraps the active
// ones, reusing the versions of old whose wrapped bytes did not change.
func (kr *Keyring) load(ctx context.Context, keyID string, old *entry) (*entry, error) {
	gen := kr.gen.Load()
	rows, err := kr.store.DataKeys(ctx, keyID)
	if err != nil {
		return nil, fmt.Errorf("keyring: load %s: %w", keyID, err)
	}
	e := &entry{loaded: kr.now(), gen: gen, versions: make(map[uint32]*keyVersion, len(rows))}
	// The key id is destroyed (crypto-shredded) when every version is:
	// Destroy ends them all at once. A single destroyed version next to
	// live ones is one DestroyVersion ended; it alone no longer opens.
	for _, r := range rows {
		switch r.State {
		case coffer.KeyActive, coffer.KeyRetired, coffer.KeyDestroyed:
		default:
			return nil, fmt.Errorf("keyring: load %s: version %d has unknown state %q", keyID, r.Version, r.State)
		}
	}
	e.destroyed = coffer.Erased(rows)
	var made []*keyVersion
	for _, r := range rows {
		v := &keyVersion{n: r.Version, state: r.State}
		if r.State == coffer.KeyActive && !e.destroyed {
			if ov := old.reusable(r); ov != nil {
				v = ov
				// The Store's count has this node's flushes and the
				// other nodes'; never count lower than before.
				if b := v.base.Load(); r.Uses > b {
					v.base.CompareAndSwap(b, r.Uses)
				}
			} else {
				if v, err = kr.unwrap(ctx, r); err != nil {
					for _, m := range made {
						m.zero()
					}
					return nil, err
				}
				made = append(made, v)
			}
		}
		e.add(v)
	}
	return e, nil
}

// reusable returns old's version of r if it is active with the same
// wrapped bytes, so it need not be unwrapped again.
func (e *entry) reusable(r coffer.DataKey) *keyVersion {
	if e == nil || e.destroyed {
		return nil
	}
	v := e.versions[r.Version]
	if v == nil || v.state != coffer.KeyActive || !bytes.Equal(v.wrapped, r.Wrapped) {
		return nil
	}
	return v
}

func (e *entry) add(v *keyVersion) {
	e.versions[v.n] = v
	e.max = max(e.max, v.n)
	if v.state == coffer.KeyActive && !e.destroyed && (e.current == nil || v.n > e.current.n) {
		e.current = v
	}
}

// wrapAAD binds a wrapped data key to its key id and version.
func wrapAAD(keyID string, n uint32) []byte {
	return envelope.AAD("coffer/keyring/datakey/v1", keyID, strconv.FormatUint(uint64(n), 10))
}

func (kr *Keyring) unwrap(ctx context.Context, r coffer.DataKey) (*keyVersion, error) {
	raw, err := kr.rootUnwrap(ctx, r.Wrapped, wrapAAD(r.KeyID, r.Version))
	if err != nil {
		return nil, fmt.Errorf("keyring: unwrap %s version %d with %s: %w", r.KeyID, r.Version, kr.root.Load().wrap.Name(), err)
	}
	defer clear(raw)
	if len(raw) != dataKeySize {
		return nil, fmt.Errorf("keyring: unwrap %s version %d: data key is %d bytes, want %d", r.KeyID, r.Version, len(raw), dataKeySize)
	}
	v, err := derive(r.Version, r.State, r.Wrapped, raw)
	if err != nil {
		return nil, err
	}
	v.base.Store(r.Uses)
	return v, nil
}

// derive builds an active version from its raw key bytes.
func derive(n uint32, state string, wrapped, raw []byte) (*keyVersion, error) {
	sub := func(info string) (secret.Key, error) {
		b, err := hkdf.Expand(sha256.New, raw, info, dataKeySize)
		if err != nil {
			return secret.Key{}, fmt.Errorf("keyring: derive key: %w", err)
		}
		defer clear(b)
		return secret.NewKey(b), nil
	}
	enc, err := sub(infoAEAD)
	if err != nil {
		return nil, err
	}
	defer enc.Zero()
	a, err := envelope.New(enc, n)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	v := &keyVersion{n: n, state: state, wrapped: bytes.Clone(wrapped), aead: a}
	if v.mac, err = sub(infoMAC); err != nil {
		return nil, err
	}
	if v.export, err = sub(infoKey); err != nil {
		v.zero()
		return nil, err
	}
	return v, nil
}

// create makes, wraps and stores version n of keyID. The Store's error
// wraps ErrVersionExists if another node made it first.
func (kr *Keyring) create(ctx context.Context, keyID string, n uint32) (*keyVersion, error) {
	k, err := secret.Random(kr.rand, dataKeySize)
	if err != nil {
		return nil, fmt.Errorf("keyring: new data key: %w", err)
	}
	defer k.Zero()
	raw := k.Bytes()
	defer clear(raw)
	return kr.createFrom(ctx, keyID, n, raw)
}

// createFrom wraps and stores raw as version n of keyID. The caller
// zeroes raw.
func (kr *Keyring) createFrom(ctx context.Context, keyID string, n uint32, raw []byte) (*keyVersion, error) {
	if err := kr.admitRootWrap(ctx); err != nil {
		return nil, err
	}
	p := kr.root.Load().wrap
	wrapped, err := p.Wrap(ctx, raw, wrapAAD(keyID, n))
	kr.rootUses.wraps.Add(1)
	if err != nil {
		return nil, fmt.Errorf("keyring: wrap %s version %d with %s: %w", keyID, n, p.Name(), err)
	}
	v, err := derive(n, coffer.KeyActive, wrapped, raw)
	if err != nil {
		return nil, err
	}
	err = kr.store.InsertDataKey(ctx, coffer.DataKey{
		KeyID: keyID, Version: n, Wrapped: wrapped, State: coffer.KeyActive, Created: kr.now().UTC(),
	})
	if err != nil {
		v.zero()
		return nil, fmt.Errorf("keyring: store %s version %d: %w", keyID, n, err)
	}
	return v, nil
}

// keep adds the version v just made to keyID's cached entry e, unless e
// was evicted meanwhile: then v is zeroed and the next use reloads.
func (kr *Keyring) keep(keyID string, e *entry, v *keyVersion) {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if kr.keys[keyID] == e {
		e.add(v)
		return
	}
	v.zero()
}

// install puts e in the cache for keyID and zeroes the versions of the
// entry it replaces that e does not keep. The caller holds keyID's stripe:
// a cached version is zeroed only under its key id's stripe and mu, so
// load may reuse the versions of the entry it read under the stripe.
func (kr *Keyring) install(keyID string, e *entry) {
	kr.mu.Lock()
	if old := kr.keys[keyID]; old != nil {
		for n, v := range old.versions {
			if e.versions[n] != v {
				kr.keepSeals(keyID, v)
				v.zero()
			}
		}
	}
	kr.keys[keyID] = e
	over := len(kr.keys) > kr.maxKeys
	kr.mu.Unlock()
	if over {
		kr.shrink(keyID)
	}
}

// shrink evicts key ids, stale ones first, until the cache holds at most
// nine tenths of MaxKeys. It skips keyID and any key id whose stripe is
// busy (it only tries those locks, so it cannot deadlock with a loader).
// The caller holds keyID's stripe.
func (kr *Keyring) shrink(keyID string) {
	target := kr.maxKeys - kr.maxKeys/10
	now := kr.now()
	kr.mu.RLock()
	var stale, live []string
	for id, e := range kr.keys {
		switch {
		case id == keyID:
		case now.Sub(e.loaded) >= kr.ttl:
			stale = append(stale, id)
		default:
			live = append(live, id)
		}
	}
	kr.mu.RUnlock()
	held := kr.stripe(keyID)
	for _, id := range append(stale, live...) {
		kr.mu.RLock()
		n := len(kr.keys)
		kr.mu.RUnlock()
		if n <= target {
			return
		}
		l := kr.stripe(id)
		if l == held {
			kr.evict(id)
			continue
		}
		if !l.TryLock() {
			continue
		}
		kr.evict(id)
		l.Unlock()
	}
}

// evict zeroes and drops keyID's cached keys. The caller holds its stripe.
func (kr *Keyring) evict(keyID string) {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if e := kr.keys[keyID]; e != nil {
		for _, v := range e.versions {
			kr.keepSeals(keyID, v)
			v.zero()
		}
		delete(kr.keys, keyID)
	}
}

// Close zeroes and drops every cached key. The Keyring stays usable: it
// reloads from the Store on next use. Seal counts not yet flushed are
// kept for the next FlushUses: call it after Close at shutdown.
func (kr *Keyring) Close() error {
	for i := range kr.loads {
		kr.loads[i].Lock()
		defer kr.loads[i].Unlock()
	}
	kr.mu.Lock()
	defer kr.mu.Unlock()
	for id, e := range kr.keys {
		for _, v := range e.versions {
			kr.keepSeals(id, v)
			v.zero()
		}
		delete(kr.keys, id)
	}
	return nil
}

// Rotate makes a new version of keyID the one Seal encrypts with, here at
// once and on other nodes within CacheTTL, and returns it (a SealVersion
// caller uses it once it records it). Older active versions
// still decrypt. Rotating a key id without versions makes version 1.
func (kr *Keyring) Rotate(ctx context.Context, keyID string) (uint32, error) {
	return kr.addVersion(ctx, keyID, nil, 0)
}

// Import makes a new version of keyID from the given material, a key the
// caller brought (transit's bring-your-own-key import), and returns it: it
// is wrapped under the root key and stored like a version Rotate makes,
// becomes the active version Seal encrypts with (a SealVersion caller's
// once it records it), and its seals are counted the same way. The material must be exactly 32 bytes (ErrMaterialSize);
// Import zeroes it before it returns, whatever happens. A Permanent key id
// is refused (ErrKeyPermanent): the audit log's keys are Coffer's own.
func (kr *Keyring) Import(ctx context.Context, keyID string, material []byte) (uint32, error) {
	defer clear(material)
	if Permanent(keyID) {
		return 0, fmt.Errorf("%w: %s", ErrKeyPermanent, keyID)
	}
	if len(material) != dataKeySize {
		return 0, fmt.Errorf("%w: %s: got %d bytes", ErrMaterialSize, keyID, len(material))
	}
	return kr.addVersion(ctx, keyID, material, 0)
}

// addVersion makes the next version of keyID, from material when it is
// not nil and from random bytes otherwise. With ifCurrent set, it makes
// one only while version ifCurrent is the one that encrypts, and returns
// 0 when another caller or node rotated it first (callers that found it
// at the seal limit at once make one new version between them).
func (kr *Keyring) addVersion(ctx context.Context, keyID string, material []byte, ifCurrent uint32) (uint32, error) {
	l := kr.stripe(keyID)
	l.Lock()
	defer l.Unlock()
	for range maxVersionAttempts {
		kr.mu.RLock()
		cur := kr.keys[keyID]
		kr.mu.RUnlock()
		e, err := kr.load(ctx, keyID, cur)
		if err != nil {
			return 0, err
		}
		kr.install(keyID, e)
		if e.destroyed {
			return 0, fmt.Errorf("%w: %s", ErrKeyDestroyed, keyID)
		}
		if ifCurrent != 0 && e.current != nil && e.current.n != ifCurrent {
			return 0, nil
		}
		if e.max == math.MaxUint32 {
			return 0, fmt.Errorf("keyring: %s has no version numbers left", keyID)
		}
		var v *keyVersion
		if material != nil {
			v, err = kr.createFrom(ctx, keyID, e.max+1, material)
		} else {
			v, err = kr.create(ctx, keyID, e.max+1)
		}
		if errors.Is(err, ErrVersionExists) {
			continue // another node rotated at the same time: go past it
		}
		if err != nil {
			return 0, err
		}
		kr.keep(keyID, e, v)
		return v.n, nil
	}
	return 0, fmt.Errorf("keyring: add a version to %s: other nodes keep rotating it; try again", keyID)
}

// Retire stops version n of keyID from decrypting (ErrKeyRetired), once
// every value has been moved to a newer version. The version that encrypts
// cannot be retired (ErrCurrentVersion); rotate first. Retiring a retired
// version does nothing. A Permanent key id is refused (ErrKeyPermanent).
func (kr *Keyring) Retire(ctx context.Context, keyID string, n uint32) error {
	return kr.retire(ctx, keyID, n, false)
}

// Disown retires version n of keyID even if it is the newest: for a caller
// that seals with SealVersion under versions it records itself (transit),
// to end a version it made but could not record (its record failed, or
// another node's won), so that the version neither encrypts nor, once a
// later version is recorded above it, decrypts. Seal and Reseal then use
// the newest version still active. A Permanent key id is refused
// (ErrKeyPermanent).
func (kr *Keyring) Disown(ctx context.Context, keyID string, n uint32) error {
	return kr.retire(ctx, keyID, n, true)
}

// retire is Retire, and Disown with newest.
func (kr *Keyring) retire(ctx context.Context, keyID string, n uint32, newest bool) error {
	if Permanent(keyID) {
		return fmt.Errorf("%w: %s", ErrKeyPermanent, keyID)
	}
	e, v, unlock, err := kr.lockVersion(ctx, keyID, n)
	if err != nil {
		return err
	}
	defer unlock()
	switch {
	case v.state == coffer.KeyRetired:
		return nil
	case v.state == coffer.KeyDestroyed:
		return fmt.Errorf("%w: %s version %d", ErrVersionDestroyed, keyID, n)
	case v == e.current && !newest:
		return fmt.Errorf("%w: %s version %d", ErrCurrentVersion, keyID, n)
	}
	if vs, ok := kr.store.(VersionStore); ok {
		done, err := vs.SwapDataKeyState(ctx, keyID, n, coffer.KeyActive, coffer.KeyRetired)
		if err != nil {
			return fmt.Errorf("keyring: retire %s version %d: %w", keyID, n, err)
		}
		if !done {
			kr.evict(keyID)
			return fmt.Errorf("keyring: retire %s version %d: its state changed meanwhile; try again", keyID, n)
		}
	} else if err := kr.store.SetDataKeyState(ctx, keyID, n, coffer.KeyRetired); err != nil {
		return fmt.Errorf("keyring: retire %s version %d: %w", keyID, n, err)
	}
	// The cache must not still let version n decrypt.
	return kr.reload(ctx, keyID, e)
}

// lockVersion takes keyID's stripe lock, reloads the key id from the Store
// into the cache and returns it with its version n, and the func that
// releases the lock. It fails, the lock released, when the key id is
// destroyed or has no version n.
func (kr *Keyring) lockVersion(ctx context.Context, keyID string, n uint32) (*entry, *keyVersion, func(), error) {
	l := kr.stripe(keyID)
	l.Lock()
	kr.mu.RLock()
	cur := kr.keys[keyID]
	kr.mu.RUnlock()
	e, err := kr.load(ctx, keyID, cur)
	if err != nil {
		l.Unlock()
		return nil, nil, nil, err
	}
	kr.install(keyID, e)
	v := e.versions[n]
	switch {
	case e.destroyed:
		l.Unlock()
		return nil, nil, nil, fmt.Errorf("%w: %s", ErrKeyDestroyed, keyID)
	case v == nil:
		l.Unlock()
		return nil, nil, nil, fmt.Errorf("%w: %s version %d", ErrKeyNotFound, keyID, n)
	}
	return e, v, l.Unlock, nil
}

// reload loads keyID afresh after a change to the Store (seen is what the
// cache held) and installs it; if that fails it evicts the key id, so that
// no stale state stays cached.
func (kr *Keyring) reload(ctx context.Context, keyID string, seen *entry) error {
	e, err := kr.load(ctx, keyID, seen)
	if err != nil {
		kr.evict(keyID)
		return err
	}
	kr.install(keyID, e)
	return nil
}

// Destroy crypto-shreds keyID: every version is destroyed in the Store and
// its wrapped bytes erased, and the cached keys are zeroed. Afterwards Open,
// Seal, MAC and Key return ErrKeyDestroyed — here at once, on other nodes
// within CacheTTL — and no new key is ever made for keyID. Destroying a key
// id that never had a key records it as destroyed all the same. A
// Permanent key id is refused (ErrKeyPermanent) and left as it is.
func (kr *Keyring) Destroy(ctx context.Context, keyID string) error {
	if Permanent(keyID) {
		return fmt.Errorf("%w: %s", ErrKeyPermanent, keyID)
	}
	l := kr.stripe(keyID)
	l.Lock()
	defer l.Unlock()
	// Whatever happens next, this node forgets the keys now.
	kr.evict(keyID)
	if err := kr.destroyAll(ctx, keyID); err != nil {
		return err
	}
	e, err := kr.load(ctx, keyID, nil)
	if err != nil {
		return err
	}
	if !e.destroyed {
		return fmt.Errorf("keyring: destroy %s: the store still holds live versions", keyID)
	}
	kr.install(keyID, e)
	return nil
}

// destroyAll destroys every version of keyID in the Store and puts a
// destroyed tombstone above them. A key id counts as destroyed only while
// every version is (see load), so the tombstone is what keeps it so: a
// node that read the versions before the erasure and now adds the next one
// collides with it (ErrVersionExists), reloads and finds the key
// destroyed. A version added between the read and the tombstone is
// destroyed on the next attempt.
func (kr *Keyring) destroyAll(ctx context.Context, keyID string) error {
	for range maxAttempts {
		rows, err := kr.store.DataKeys(ctx, keyID)
		if err != nil {
			return fmt.Errorf("keyring: destroy %s: %w", keyID, err)
		}
		if coffer.Erased(rows) {
			// Already erased, tombstone and all: a repeated erasure adds
			// no row (a racing rotation collides with the tombstone there).
			return nil
		}
		if err := kr.store.DestroyDataKeys(ctx, keyID); err != nil {
			return fmt.Errorf("keyring: destroy %s: %w", keyID, err)
		}
		next := uint32(1)
		for _, r := range rows {
			next = max(next, r.Version+1)
		}
		err = kr.store.InsertDataKey(ctx, coffer.DataKey{
			KeyID: keyID, Version: next, State: coffer.KeyDestroyed, Created: kr.now().UTC(),
		})
		if !errors.Is(err, ErrVersionExists) {
			if err != nil {
				return fmt.Errorf("keyring: destroy %s: %w", keyID, err)
			}
			return nil
		}
	}
	return fmt.Errorf("keyring: destroy %s: other nodes keep adding versions; try again", keyID)
}

// Check proves that the Provider holds the root key the Store's keys were
// wrapped with: it unwraps the check key (RootCheckKeyID), making it on
// first use. A root key that cannot unwrap it returns an error wrapping
// ErrWrongRootKey. Call it before serving, and first when the Store is
// new: a Store whose data keys predate the check key gets one made with
// whatever root key Check is given.
func (kr *Keyring) Check(ctx context.Context) error {
	for range maxAttempts {
		rows, err := kr.store.DataKeys(ctx, RootCheckKeyID)
		if err != nil {
			return fmt.Errorf("keyring: check root key: %w", err)
		}
		if len(rows) == 0 {
			v, err := kr.create(ctx, RootCheckKeyID, 1)
			if errors.Is(err, ErrVersionExists) {
				continue // another node made it first: check theirs
			}
			if err != nil {
				return fmt.Errorf("keyring: check root key: %w", err)
			}
			v.zero()
			return nil
		}
		var newest *coffer.DataKey
		for i := range rows {
			if rows[i].State == coffer.KeyActive && (newest == nil || rows[i].Version > newest.Version) {
				newest = &rows[i]
			}
		}
		if newest == nil {
			return fmt.Errorf("keyring: check root key: %s has no active version", RootCheckKeyID)
		}
		raw, err := kr.rootUnwrap(ctx, newest.Wrapped, wrapAAD(RootCheckKeyID, newest.Version))
		clear(raw)
		if errors.Is(err, keyprovider.ErrUnwrap) {
			return fmt.Errorf("%w (root key from %s)", ErrWrongRootKey, kr.root.Load().wrap.Name())
		}
		if err != nil {
			return fmt.Errorf("keyring: check root key: %w", err)
		}
		return nil
	}
	return fmt.Errorf("keyring: check root key: %s keeps changing", RootCheckKeyID)
}
