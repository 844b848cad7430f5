package transit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// keyState is what this node keeps about one transit key.
type keyState struct {
	// pending counts encryptions not yet added to the store's count.
	pending atomic.Int64
	// admin serialises this node's rotations and metadata updates of the
	// key, so two requests that both find a rotation due make one version.
	admin sync.Mutex

	// mu guards the creation time of the latest version, cached for the
	// age check.
	mu         sync.Mutex
	ageVersion uint32
	ageCreated time.Time
}

// state returns the state of name, making it on first use.
func (s *Service) state(name string) *keyState {
	s.mu.Lock()
	defer s.mu.Unlock()
	ks := s.keys[name]
	if ks == nil {
		ks = &keyState{}
		s.keys[name] = ks
	}
	return ks
}

// forget drops the state of name.
func (s *Service) forget(name string) {
	s.cache.forget(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.keys, name)
}

// forgetMissing drops the state of a key err says does not exist.
func (s *Service) forgetMissing(name string, err error) {
	if coffer.ErrorCode(err) == coffer.ENOTFOUND {
		s.forget(name)
	}
}

// maybeRotate rotates k before n more encryptions when they would take its
// count past RotateAfter or when its latest version is older than its
// AutoRotatePeriod, and returns the key as it is afterwards.
func (s *Service) maybeRotate(ctx context.Context, k TransitKey, n int) (TransitKey, error) {
	ks := s.state(k.Name)
	due := k.EncryptionsSinceRotate+ks.pending.Load()+int64(n) > s.c.RotateAfter
	if !due && k.AutoRotatePeriod > 0 {
		created, err := s.latestCreated(ctx, ks, k)
		if err != nil {
			return k, err
		}
		due = !created.IsZero() && s.c.Now().Sub(created) >= k.AutoRotatePeriod
	}
	if !due {
		return k, nil
	}
	return s.rotate(ctx, k.Name, k.LatestVersion, true)
}

// latestCreated returns when k's latest version was made, from the
// keyring's store once per version, or the zero time if it has no row.
func (s *Service) latestCreated(ctx context.Context, ks *keyState, k TransitKey) (time.Time, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.ageVersion == k.LatestVersion {
		return ks.ageCreated, nil
	}
	rows, err := s.c.Versions.DataKeys(ctx, KeyID(k.Name))
	if err != nil {
		return time.Time{}, fmt.Errorf("transit: list key versions: %w", err)
	}
	for _, r := range rows {
		if r.Version == k.LatestVersion {
			ks.ageVersion, ks.ageCreated = r.Version, r.Created
			return r.Created, nil
		}
	}
	return time.Time{}, nil
}

// count adds n encryptions of name, flushing them once FlushEvery are
// pending. A count that cannot be flushed stays pending and is logged: the
// encryptions happened, and their answer must not be lost.
func (s *Service) count(ctx context.Context, name string, n int) {
	ks := s.state(name)
	if ks.pending.Add(int64(n)) < s.c.FlushEvery {
		return
	}
	if err := s.flushKey(ctx, name, ks); err != nil {
		s.c.Log.LogAttrs(ctx, slog.LevelWarn, "transit: flush encryption count",
			slog.String("key", name), slog.String("error", err.Error()))
	}
}

// flushKey adds the pending count of name to the store's.
func (s *Service) flushKey(ctx context.Context, name string, ks *keyState) error {
	n := ks.pending.Swap(0)
	if n == 0 {
		return nil
	}
	total, err := s.c.Store.AddTransitEncryptions(ctx, name, n)
	switch {
	case coffer.ErrorCode(err) == coffer.ENOTFOUND:
		s.forget(name) // deleted, here or on another node
		return nil
	case err != nil:
		ks.pending.Add(n)
		return fmt.Errorf("transit: flush encryption count of %s: %w", name, err)
	}
	s.cache.counted(name, total)
	return nil
}

// Flush adds every key's pending encryption count to the store. Call it on
// a ticker (every few seconds) and once at shutdown; counts that cannot be
// written stay pending for the next call.
func (s *Service) Flush(ctx context.Context) error {
	s.mu.Lock()
	names := make([]string, 0, len(s.keys))
	states := make([]*keyState, 0, len(s.keys))
	for name, ks := range s.keys {
		names, states = append(names, name), append(states, ks)
	}
	s.mu.Unlock()
	var errs []error
	for i, name := range names {
		if err := s.flushKey(ctx, name, states[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
