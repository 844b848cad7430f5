package auditadmin

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/secret"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestOfflineAuditOutlivesCancel: an offline command interrupted while
// its operation runs (its context cancelled) still records the outcome,
// and nothing of its audit writer is left running when it returns: the
// outcome is in the store by then.
func TestOfflineAuditOutlivesCancel(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			db := storetest.Open(t, b)
			kr := newKeyring(t, db)
			o := Offline{DB: db, Keys: kr, Node: "n1"}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			err := o.Run(ctx, "backup", "deployment", func() error {
				cancel() // the operator interrupts while the operation runs
				return nil
			})
			if err != nil {
				t.Fatalf("an operation that ran, interrupted: %v", err)
			}
			evs, err := audit.OnRows(db).ListAudit(context.Background(), audit.Filter{})
			if err != nil {
				t.Fatal(err)
			}
			var reasons []string
			for _, e := range evs {
				reasons = append(reasons, e.Reason)
			}
			if len(reasons) != 2 || reasons[0] != "started" || reasons[1] != "done" {
				t.Fatalf("offline events after an interrupted operation: %q, want started, done", reasons)
			}
		})
	}
}

// newKeyring returns a keyring over db under a fresh random root key,
// closed when the test ends.
func newKeyring(t *testing.T, db *store.DB) *keyring.Keyring {
	t.Helper()
	root, err := secret.Random(rand.Reader, 32)
	if err != nil {
		t.Fatal(err)
	}
	p, err := keyprovider.NewLocal("test", root, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kr := keyring.New(p, db, keyring.Options{})
	t.Cleanup(func() { _ = kr.Close() })
	return kr
}
