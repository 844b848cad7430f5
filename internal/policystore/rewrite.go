package policystore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/policy"
)

// Change is one change an upgrade made to the stored policy document
// (policy.Rewrites); `coffer migrate` prints each for review.
type Change = policy.Change

// RewriteStore holds the stored policy document and the version of the
// policy language it was written for.
type RewriteStore interface {
	StoredPolicy(ctx context.Context) (version int64, format string, source []byte, schema int64, err error)
	RewritePolicy(ctx context.Context, version int64, format string, source []byte, now time.Time) (int64, error)
}

// ErrRewritePending is the error of a node started on a store whose
// policy document was written for an older meaning of the policy language
// and not yet rewritten: serving it would silently change what it grants.
var ErrRewritePending = errors.New("the stored policy was written for an older policy language: run `coffer migrate`, which rewrites it and prints what changed")

// Rewrite applies every pending policy.Rewrites to the document in
// db and returns what changed (nothing when no policy was ever saved, or
// none is pending). The rewritten document replaces the stored one as a
// new version, unless the document changed meanwhile, in which case it
// starts again from the new one.
func Rewrite(ctx context.Context, db RewriteStore, now time.Time) ([]Change, error) {
	for range 3 {
		v, format, out, changes, err := pendingRewrite(ctx, db)
		if err != nil || len(changes) == 0 {
			return nil, err
		}
		_, err = db.RewritePolicy(ctx, v, format, out, now)
		if coffer.ErrorCode(err) == coffer.ECONFLICT {
			continue
		}
		if err != nil {
			return nil, err
		}
		return changes, nil
	}
	return nil, errors.New("the stored policy keeps changing while coffer migrate rewrites it; try again")
}

// RewritePending reports whether the stored policy still needs a
// rewrite (see Rewrite).
func RewritePending(ctx context.Context, db RewriteStore) (bool, error) {
	_, _, _, changes, err := pendingRewrite(ctx, db)
	return len(changes) > 0, err
}

// pendingRewrite returns the stored policy's version and format, the
// document rewritten, and what changed; no changes when no policy was
// ever saved or none is pending.
func pendingRewrite(ctx context.Context, db RewriteStore) (v int64, format string, out []byte, changes []Change, err error) {
	v, format, src, schema, err := db.StoredPolicy(ctx)
	if coffer.ErrorCode(err) == coffer.ENOTFOUND {
		return 0, "", nil, nil, nil
	}
	if err != nil {
		return 0, "", nil, nil, err
	}
	out, changes, err = policy.ApplyRewrites(src, format, schema, policy.Rewrites())
	if err != nil {
		return 0, "", nil, nil, fmt.Errorf("stored policy version %d: %w", v, err)
	}
	return v, format, out, changes, nil
}
