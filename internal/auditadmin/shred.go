package auditadmin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/store"
)

// ShredValues makes every searched value the audit log names
// unlinkable, for a data subject's erasure: the audit log is immutable, so
// the MACs of the subject's values that past searches left in it (under
// "audit-value/COLLECTION/FIELD" keys, see audit.ValueHMAC) must lose their
// key instead. Each such key gets a new version for the searches to come,
// and every older version is retired and destroyed: from then on nobody,
// root key holder included, can tie any earlier search's MAC to a value.
// (Other nodes drop their cached copy within the keyring's cache time.)
// Tokens are not bound to subjects; their key (audit.TokenValueKeyID) is
// kept. It is safe to run again: an erasure retried shreds again.
func ShredValues(ctx context.Context, kr *keyring.Keyring, db *store.DB, now time.Time) error {
	// Every key id under the prefix that is not destroyed: the query
	// makes each one "due" with a creation bound in the future.
	q := coffer.DueKeyQuery{Prefix: coffer.KeyPrefix(coffer.KeyAuditValue), CreatedBefore: now.Add(24 * time.Hour), Limit: 500}
	var ids []string
	for {
		keys, err := db.DueDataKeys(ctx, q)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if k.KeyID != audit.TokenValueKeyID {
				ids = append(ids, k.KeyID)
			}
		}
		if len(keys) < q.Limit {
			break
		}
		q.After = keys[len(keys)-1].KeyID
	}
	for _, id := range ids {
		cur, err := kr.Rotate(ctx, id)
		if err != nil {
			return fmt.Errorf("rotate %s: %w", id, err)
		}
		// Down from the newest older version: the first one already
		// destroyed was shredded by an earlier erasure with all below it.
		for n := cur - 1; n >= 1; n-- {
			err := kr.Retire(ctx, id, n)
			if errors.Is(err, keyring.ErrVersionDestroyed) || errors.Is(err, keyring.ErrKeyNotFound) {
				break
			}
			if err != nil {
				return fmt.Errorf("retire %s version %d: %w", id, n, err)
			}
			if err := kr.DestroyVersion(ctx, id, n); err != nil {
				return fmt.Errorf("destroy %s version %d: %w", id, n, err)
			}
		}
	}
	return nil
}
