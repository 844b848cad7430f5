package keyring

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
)

// RootRewrapStore is what RewrapRoot needs of the Store besides Store: a
// walk over every stored data key and a compare-and-swap of one version's
// wrapped bytes. The SQL stores implement it; it must be safe for
// concurrent use.
type RootRewrapStore interface {
	// DataKeysAfter returns up to limit data key rows — of every key id,
	// every version and every state, Wrapped included — that come strictly
	// after (keyID, version) in the order (key id, version) ascending:
	//
	//	WHERE key_id > $1 OR (key_id = $1 AND version > $2)
	//	ORDER BY key_id, version LIMIT $3
	//
	// ("", 0) starts at the first row; an empty result is the end. The
	// key id order may be any deterministic total order the store keeps
	// (a column collation), provided the comparison and the ORDER BY use
	// the same one: walking page by page, each call passing the last row of
	// the page before, must visit every row that exists throughout the walk
	// exactly once. limit is at least 1.
	DataKeysAfter(ctx context.Context, keyID string, version uint32, limit int) ([]coffer.DataKey, error)
	// ReplaceWrapped sets the wrapped bytes of version of keyID to
	// newWrapped if, and only if, the row exists, its state is not
	// coffer.KeyDestroyed, and its wrapped bytes equal oldWrapped byte for
	// byte — atomically (one UPDATE … WHERE key_id = $1 AND version = $2
	// AND wrapped = $3 AND state <> 'destroyed'), and durably before it
	// returns. It changes nothing else: not the state, not the creation
	// time, not any other row. When the condition does not hold it changes
	// nothing and returns an error wrapping ErrWrappedChanged; any other
	// error means the outcome is unknown (RewrapRoot stops and can be run
	// again).
	ReplaceWrapped(ctx context.Context, keyID string, version uint32, oldWrapped, newWrapped []byte) error
}

// ErrWrappedChanged is what a RootRewrapStore's ReplaceWrapped wraps when
// the row is gone, destroyed, or no longer holds the wrapped bytes the
// caller read.
var ErrWrappedChanged = coffer.ErrWrappedKeyChanged

// rootState is the provider the keyring wraps with and, during an
// unfinished root key rotation, those it replaces, tried in turn when the
// first says ErrUnwrap.
type rootState struct {
	wrap keyprovider.Provider
	old  []keyprovider.Provider
}

// rootUnwrap unwraps under the root key, or under a root key being
// replaced while a rotation is unfinished.
func (kr *Keyring) rootUnwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	st := kr.root.Load()
	raw, err := st.wrap.Unwrap(ctx, wrapped, aad)
	for _, p := range st.old {
		if !errors.Is(err, keyprovider.ErrUnwrap) {
			break
		}
		raw, err = p.Unwrap(ctx, wrapped, aad)
	}
	return raw, err
}

// rewrapPage is how many rows RewrapRoot reads at a time.
const rewrapPage = 500

// maxRootPasses bounds RewrapRoot's walks over the store: each walk after
// the first only finds keys made meanwhile under the old root key.
const maxRootPasses = 5

// RewrapRoot moves every stored data key to a new root key: each version,
// active or retired, is unwrapped under the keyring's root key and wrapped
// under newProvider with the same additional data, and replaced in s by
// compare-and-swap. Values, states and versions do not change, so every
// value sealed before still opens; destroyed keys are skipped and never
// brought back (a key destroyed meanwhile makes its swap fail). It returns
// how many versions it moved, also when it fails part-way.
//
// First it proves newProvider by wrapping and unwrapping a probe. From then
// on this keyring wraps new data keys under newProvider and unwraps under
// either root key, so nothing it makes is left behind. It walks s until a
// walk finds nothing left to move (keys made meanwhile by nodes still on
// the old root key are picked up by the next walk), and rewraps the check
// key (RootCheckKeyID) last: a node started with newProvider alone refuses
// to serve (ErrWrongRootKey from Check) until everything else was moved.
// On success the keyring uses newProvider alone. Versions that already
// open under newProvider are left as they are, so the job is resumable:
// after an error, the keyring wraps under its old root key again but keeps
// unwrapping under both, and calling RewrapRoot again with the same
// newProvider finishes the move.
//
// A version that opens under neither root key stops the job with an error
// wrapping keyprovider.ErrUnwrap. Every new wrap is unwrapped again and
// compared before it replaces the old one, so a faulty provider cannot
// destroy keys. Nodes still running with the old root key after RewrapRoot
// returned may make keys under it; stop them or restart them with the new
// root key, then run RewrapRoot from a Keyring over the old provider to
// move those few. Calls on one Keyring are serialised; run one at a time
// per deployment (concurrent runs are safe, only wasteful).
func (kr *Keyring) RewrapRoot(ctx context.Context, newProvider keyprovider.Provider, s RootRewrapStore) (n int, err error) {
	kr.rootMu.Lock()
	defer kr.rootMu.Unlock()
	if err := kr.probe(ctx, newProvider); err != nil {
		return 0, err
	}
	st := kr.root.Load()
	from := append([]keyprovider.Provider{st.wrap}, st.old...)
	kr.root.Store(&rootState{wrap: newProvider, old: from})
	// Wraps counted so far were under the old root key; from here on they
	// are under the new one (see rootuses.go).
	oldWraps := kr.rootUses.wraps.Swap(0)
	defer func() {
		if err != nil {
			// Wrap under the old root key again, and keep unwrapping
			// under the new one what was moved.
			kr.root.Store(&rootState{wrap: st.wrap, old: append(slices.Clone(st.old), newProvider)})
			kr.rootUses.wraps.Add(oldWraps)
		}
	}()

	done := false
	for range maxRootPasses {
		moved, conflicts, err := kr.rewrapWalk(ctx, newProvider, from, s, "", false)
		n += moved
		if err != nil {
			return n, err
		}
		if moved == 0 && conflicts == 0 {
			done = true
			break
		}
	}
	if !done {
		return n, fmt.Errorf("keyring: rewrap root key: data keys under the old root key keep appearing after %d walks; stop the nodes still using it and run again", maxRootPasses)
	}
	for range maxAttempts {
		moved, conflicts, err := kr.rewrapWalk(ctx, newProvider, from, s, RootCheckKeyID, true)
		n += moved
		if err != nil {
			return n, err
		}
		if conflicts == 0 {
			kr.root.Store(&rootState{wrap: newProvider})
			// The new root key wrapped the probe and every version moved.
			// Should the count not be written, the old one, higher, stays:
			// it errs on the side of the bound.
			_ = kr.restartRootWraps(ctx, uint64(n)+1) // #nosec G115 -- n counts rows, never negative
			return n, nil
		}
	}
	return n, fmt.Errorf("keyring: rewrap root key: %s keeps changing; run again", RootCheckKeyID)
}

// probe wraps and unwraps a random key under p.
func (kr *Keyring) probe(ctx context.Context, p keyprovider.Provider) error {
	raw := make([]byte, dataKeySize)
	defer clear(raw)
	if _, err := kr.rand.Read(raw); err != nil {
		return fmt.Errorf("keyring: rewrap root key: %w", err)
	}
	aad := envelope.AAD("coffer/keyring/root-probe/v1")
	w, err := p.Wrap(ctx, raw, aad)
	if err != nil {
		return fmt.Errorf("keyring: rewrap root key: new root key %s cannot wrap: %w", p.Name(), err)
	}
	back, err := p.Unwrap(ctx, w, aad)
	defer clear(back)
	if err != nil {
		return fmt.Errorf("keyring: rewrap root key: new root key %s cannot unwrap what it wrapped: %w", p.Name(), err)
	}
	if subtle.ConstantTimeCompare(back, raw) != 1 {
		return fmt.Errorf("keyring: rewrap root key: new root key %s unwraps something other than it wrapped", p.Name())
	}
	return nil
}

// rewrapWalk walks s once and moves the versions that do not open under
// to. With only, it visits the rows of keyID alone; without, every row but
// the check key's. It counts versions moved and swaps that lost a race.
func (kr *Keyring) rewrapWalk(ctx context.Context, to keyprovider.Provider, from []keyprovider.Provider, s RootRewrapStore, keyID string, only bool) (moved, conflicts int, err error) {
	curID, curVer := keyID, uint32(0)
	for {
		rows, err := s.DataKeysAfter(ctx, curID, curVer, rewrapPage)
		if err != nil {
			return moved, conflicts, fmt.Errorf("keyring: rewrap root key: list data keys: %w", err)
		}
		if len(rows) == 0 {
			return moved, conflicts, nil
		}
		for _, r := range rows {
			if only && r.KeyID != keyID {
				return moved, conflicts, nil
			}
			curID, curVer = r.KeyID, r.Version
			if !only && r.KeyID == RootCheckKeyID || r.State == coffer.KeyDestroyed || len(r.Wrapped) == 0 {
				continue
			}
			ok, err := kr.rewrapRow(ctx, to, from, s, r)
			switch {
			case errors.Is(err, ErrWrappedChanged):
				conflicts++
			case err != nil:
				return moved, conflicts, err
			case ok:
				moved++
			}
		}
	}
}

// rewrapRow moves one version to the root key to, unless it is there
// already (false, nil).
func (kr *Keyring) rewrapRow(ctx context.Context, to keyprovider.Provider, from []keyprovider.Provider, s RootRewrapStore, r coffer.DataKey) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	aad := wrapAAD(r.KeyID, r.Version)
	raw, err := to.Unwrap(ctx, r.Wrapped, aad)
	clear(raw)
	if err == nil {
		return false, nil
	}
	for _, p := range from {
		if !errors.Is(err, keyprovider.ErrUnwrap) {
			break
		}
		raw, err = p.Unwrap(ctx, r.Wrapped, aad)
	}
	defer clear(raw)
	if errors.Is(err, keyprovider.ErrUnwrap) {
		return false, fmt.Errorf("keyring: rewrap root key: %s version %d opens under neither the old nor the new root key: %w", r.KeyID, r.Version, err)
	}
	if err != nil {
		return false, fmt.Errorf("keyring: rewrap root key: unwrap %s version %d: %w", r.KeyID, r.Version, err)
	}
	w, err := to.Wrap(ctx, raw, aad)
	if err != nil {
		return false, fmt.Errorf("keyring: rewrap root key: wrap %s version %d with %s: %w", r.KeyID, r.Version, to.Name(), err)
	}
	back, err := to.Unwrap(ctx, w, aad)
	defer clear(back)
	if err != nil || subtle.ConstantTimeCompare(back, raw) != 1 {
		return false, fmt.Errorf("keyring: rewrap root key: %s does not unwrap what it wrapped for %s version %d; nothing replaced", to.Name(), r.KeyID, r.Version)
	}
	if err := s.ReplaceWrapped(ctx, r.KeyID, r.Version, r.Wrapped, w); err != nil {
		if errors.Is(err, ErrWrappedChanged) {
			return false, err
		}
		return false, fmt.Errorf("keyring: rewrap root key: replace %s version %d: %w", r.KeyID, r.Version, err)
	}
	return true, nil
}
