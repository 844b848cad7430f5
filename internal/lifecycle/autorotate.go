package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// AutoRotateJob names the lease of the automatic key rotation.
const AutoRotateJob = "autorotate"

// RotationPolicy says when the current version of a data key is due for
// rotation. Which rules apply depends on the key id (see Rules).
//
// The use rule counts every value sealed under a version, those the
// rewrap after a rotation resealed included: each is one more random GCM
// nonce. So a key that holds more values than AfterUses allows fills its
// new version past the bound as soon as the rewrap has run, and rotating
// it again would only reseal the same values again, at every check. A
// version is therefore due by uses only when more of its uses are new
// values than the rewrap's (coffer.DataKey.RewrapUses): see Due. A key
// over the bound that a rotation would not help is reported instead (see
// TooManyValues), since only splitting it (its collection) or a higher
// bound can.
type RotationPolicy struct {
	// After rotates a version older than this; 0: never by age.
	After time.Duration
	// AfterUses rotates a version that sealed more values than this
	// (coffer.DataKey.Uses), unless most of them were resealed by the
	// rewrap (see Due); 0: never by use count.
	AfterUses uint64
}

// Rules reports which rules may rotate keyID automatically (the use count
// rule only when a rotation helps: see RotationPolicy.Due):
//
//   - collection keys ("collection/NAME") and token value keys
//     ("tokens/TYPE"): by age and by use count;
//   - subject keys ("subject/ID"): by use count only. Each protects the
//     few values of one data subject, so it never comes near the GCM
//     bound, while an age rule would, every RotateAfter, make a new
//     version of every subject key and rewrap every subject's records,
//     for no gain; erasing the subject destroys the key anyway;
//   - the audit keys ("audit/hmac", "audit/signing"): by age only. The
//     audit log goes on under the new version with nothing to rewrap, and
//     a key that leaked unnoticed stops being useful for new events or
//     checkpoints (verification refuses a version that goes back). They
//     seal no value, so use counts never grow. Every old version stays
//     (the keyring refuses to retire or destroy them): verifying needs it;
//   - nothing else. Blind index keys, tokens/index and tokens/order find
//     rows by their MACs, the root check key proves the root key; transit
//     keys rotate themselves. Token FPE and deterministic keys
//     ("tokens/TYPE/fpe", "…/deterministic") seal no value, and rotating
//     them changes the token a value maps to: an operator does that on
//     purpose, never a schedule. Likewise the hash mask's pseudonym keys
//     ("mask/hash/COLLECTION/FIELD"): rotating one changes every
//     pseudonym of its field.
func Rules(keyID string) (byAge, byUses bool) { return coffer.ParseKeyID(keyID).AutoRotates() }

// Due reports whether k, the current version of its key id, is due at now
// and why ("age" or "uses"), under the rules its key id allows.
//
// By uses, a version is due when it sealed more than AfterUses values and
// more of them were new values than values resealed by the rewrap after
// its rotation (Uses - RewrapUses > RewrapUses). For a key holding at most
// AfterUses/2 values this is simply Uses > AfterUses. For a key holding
// more, a rotation right after the rewrap would only reseal the same
// values again: it waits until as many new values were sealed. So a key
// never rotates by uses twice without more than AfterUses/2 new seals in
// between (no rotation loop), the rewrap that follows costs fewer than
// two reseals per new seal, and a key whose values are mostly updated,
// not added, still has its count kept to about twice its values. See
// TooManyValues for the versions over AfterUses this leaves unrotated.
func (p RotationPolicy) Due(k coffer.DataKey, now time.Time) (reason string, due bool) {
	if k.State != coffer.KeyActive {
		return "", false
	}
	byAge, byUses := Rules(k.KeyID)
	if byUses && p.overUses(k) && newSeals(k) > k.RewrapUses {
		return "uses", true
	}
	if byAge && p.After > 0 && now.Sub(k.Created) > p.After {
		return "age", true
	}
	return "", false
}

// TooManyValues reports whether k, the current version of its key id,
// sealed more than AfterUses values under a rule that rotates it by uses,
// yet is not due by uses (see Due) because most of its uses are its key's
// own values resealed by the rewrap: the key holds too many values for
// AfterUses (over half of it), and no rotation keeps it under the bound.
// Splitting the collection, or raising AfterUses (keys.rotate_after_uses,
// at most 2^32) to well over twice the key's values, does. It says
// nothing of the age rule, which may still make k due.
func (p RotationPolicy) TooManyValues(k coffer.DataKey) bool {
	if k.State != coffer.KeyActive {
		return false
	}
	_, byUses := Rules(k.KeyID)
	return byUses && p.overUses(k) && newSeals(k) <= k.RewrapUses
}

// overUses reports whether k sealed more values than AfterUses allows.
func (p RotationPolicy) overUses(k coffer.DataKey) bool {
	return p.AfterUses > 0 && k.Uses > p.AfterUses
}

// newSeals is how many of k's uses sealed new values rather than values
// the rewrap moved to it. The store adds both counts in one step, so
// RewrapUses never passes Uses; were it to, there would be no new seals.
func newSeals(k coffer.DataKey) uint64 {
	if k.RewrapUses >= k.Uses {
		return 0
	}
	return k.Uses - k.RewrapUses
}

// RotationConfig configures the automatic rotation of data keys.
type RotationConfig struct {
	Policy RotationPolicy
	// Interval is how often Run looks for due keys; 0 or less: never.
	Interval time.Duration
	// Rotate rotates keyID as an operator's rotation does (scheduling the
	// rewrap of record keys) and returns the new version. Nil: no
	// automatic rotation.
	Rotate func(ctx context.Context, keyID string) (uint32, error)
	// Flush, if set, writes this node's use counts to the store first
	// (keyring.FlushUses), so its own recent seals count.
	Flush func(ctx context.Context) error
	// OnRotated, if set, is told of each automatic rotation.
	OnRotated func(keyID string, from, to uint32)
	// OnTooManyValues, if set, is told of each key left unrotated because
	// it holds too many values for a rotation to bring it under
	// Policy.AfterUses (RotationPolicy.TooManyValues), once per run.
	OnTooManyValues func(keyID string)
	// RootWraps, if set, tells how many data keys the root key wrapped
	// (keyring.RootWraps). Past Policy.AfterUses each run logs a warning:
	// only an operator can rotate the root key (it needs the new key),
	// and at the keyring's hard stop no data key can be made.
	RootWraps func(ctx context.Context) (uint64, error)
}

// RotateReport says what an AutoRotate run did.
type RotateReport struct {
	// Rotated counts the keys rotated.
	Rotated int
	// Rewrap: a record key (collection or subject) was rotated, so its
	// values wait for the rewrap job. Token and audit keys need none.
	Rewrap bool
	// TooManyValues counts the keys over Policy.AfterUses that were not
	// rotated because a rotation would not bring them under it
	// (RotationPolicy.TooManyValues); each was logged.
	TooManyValues int
	// RootOverUses: the root key wrapped more data keys than
	// Policy.AfterUses; it was logged.
	RootOverUses bool
}

// dueScan is one prefix AutoRotate looks at, with whether age counts.
type dueScan struct {
	prefix string
	byAge  bool
}

// dueScans lists the prefixes of the key ids Rules lets rotate, with their
// rules (token FPE, deterministic, index and order keys come back from the
// tokens/ scan when old and are skipped by Due).
func dueScans() []dueScan {
	return []dueScan{{coffer.KeyPrefix(coffer.KeyCollection), true}, {"tokens/", true},
		{coffer.KeyPrefix(coffer.KeySubject), false}, {coffer.KeyPrefix(coffer.KeyAudit), true}}
}

// AutoRotate rotates every data key whose current version is due under
// the policy of Config.Rotation, through Config.Rotation.Rotate, on one
// node at a time (it returns ErrBusy when another node holds the job).
// It flushes this node's use counts first. A key that fails to rotate is
// logged and skipped, and the run goes on; the error returned then says
// how many failed. Each rotation is logged with the key id and versions,
// never key material. A key over the use bound that holds too many values
// for a rotation to help (RotationPolicy.TooManyValues) is not rotated:
// it is logged as a warning, with its key id and counts, and reported
// (RotateReport.TooManyValues, RotationConfig.OnTooManyValues), at every
// run until its collection is split or the bound raised.
func (j *Jobs) AutoRotate(ctx context.Context) (RotateReport, error) {
	var rep RotateReport
	r := j.c.Rotation
	if r.Rotate == nil || r.Policy.After <= 0 && r.Policy.AfterUses == 0 {
		return rep, nil
	}
	lease, release, _, err := j.acquire(ctx, AutoRotateJob)
	if err != nil {
		return rep, err
	}
	defer release()
	if r.Flush != nil {
		if err := r.Flush(ctx); err != nil && ctx.Err() == nil {
			// The stored counts lag a little more; they still count.
			j.c.Logger.Warn("data key use count flush failed", "error", err)
		}
	}
	var (
		failed   int
		firstErr error
	)
	for _, s := range dueScans() {
		now := j.c.Now()
		q := coffer.DueKeyQuery{Prefix: s.prefix, UsesOver: r.Policy.AfterUses, Limit: j.c.Batch}
		if s.byAge && r.Policy.After > 0 {
			q.CreatedBefore = now.Add(-r.Policy.After)
		}
		if q.CreatedBefore.IsZero() && q.UsesOver == 0 {
			continue
		}
		for {
			keys, err := j.c.Store.DueDataKeys(ctx, q)
			if err != nil {
				return rep, err
			}
			for _, k := range keys {
				reason, due := r.Policy.Due(k, now)
				if !due {
					if r.Policy.TooManyValues(k) {
						rep.TooManyValues++
						j.c.Logger.Warn("data key holds too many values for keys.rotate_after_uses (over half of it): "+
							"a rotation would only reseal them again, so it is not rotated by uses until new values outnumber them; "+
							"split the collection or raise keys.rotate_after_uses (at most 2^32)",
							"key_id", k.KeyID, "version", k.Version, "uses", k.Uses, "rewrap_uses", k.RewrapUses,
							"rotate_after_uses", r.Policy.AfterUses)
						if r.OnTooManyValues != nil {
							r.OnTooManyValues(k.KeyID)
						}
					}
					continue
				}
				// Each rotation starts under a lease renewed just before,
				// with its fencing token unchanged: a node that was paused
				// past its lease while another took the job rotates
				// nothing more.
				if lease, err = j.renew(ctx, lease); err != nil {
					return rep, err
				}
				v, err := r.Rotate(ctx, k.KeyID)
				if err != nil {
					if ctx.Err() != nil {
						return rep, ctx.Err()
					}
					failed++
					if firstErr == nil {
						firstErr = err
					}
					j.c.Logger.Warn("automatic key rotation failed", "key_id", k.KeyID, "version", k.Version, "error", err)
					continue
				}
				rep.Rotated++
				rep.Rewrap = rep.Rewrap || coffer.ParseKeyID(k.KeyID).SealsRecords()
				j.c.Logger.Info("data key rotated automatically", "key_id", k.KeyID,
					"from_version", k.Version, "to_version", v, "reason", reason, "uses", k.Uses, "created", k.Created)
				if r.OnRotated != nil {
					r.OnRotated(k.KeyID, k.Version, v)
				}
			}
			if len(keys) < q.Limit {
				break
			}
			q.After = keys[len(keys)-1].KeyID
			if lease, err = j.renew(ctx, lease); err != nil {
				return rep, err
			}
		}
	}
	if r.RootWraps != nil && r.Policy.AfterUses > 0 {
		if n, err := r.RootWraps(ctx); err != nil {
			j.c.Logger.Warn("root key wrap count unavailable", "error", err)
		} else if n > r.Policy.AfterUses {
			rep.RootOverUses = true
			j.c.Logger.Warn("the root key wrapped more data keys than keys.rotate_after_uses: rotate it (coffer keys rotate-root); "+
				"at the hard stop no data key can be made", "root_wraps", n, "rotate_after_uses", r.Policy.AfterUses)
		}
	}
	if failed > 0 {
		return rep, fmt.Errorf("lifecycle: %d keys due for rotation failed to rotate (first: %w)", failed, firstErr)
	}
	return rep, nil
}

// autoRotate runs AutoRotate for Run and logs what it did; it reports
// whether a rewrap is waiting.
func (j *Jobs) autoRotate(ctx context.Context) bool {
	rep, err := j.AutoRotate(ctx)
	switch {
	case errors.Is(err, ErrBusy), ctx.Err() != nil:
	case err != nil:
		j.c.Logger.Warn("automatic key rotation failed", "error", err)
	case rep.Rotated > 0:
		j.c.Logger.Info("automatic key rotation", "keys", rep.Rotated)
	}
	return rep.Rewrap
}
