package keyring_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/secret"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// sqlKeys maps the store's duplicate-version error to the keyring's, as
// the app does.
type sqlKeys struct{ *store.DB }

func (k sqlKeys) InsertDataKey(ctx context.Context, dk coffer.DataKey) error {
	err := k.DB.InsertDataKey(ctx, dk)
	if errors.Is(err, store.ErrVersionExists) {
		return fmt.Errorf("%w: %w", keyring.ErrVersionExists, err)
	}
	return err
}

// newRootProvider returns a local root key provider with a random key.
func newRootProvider(t testing.TB) keyprovider.Provider {
	t.Helper()
	root, err := secret.Random(rand.Reader, keyprovider.RootKeySize)
	if err != nil {
		t.Fatal(err)
	}
	p, err := keyprovider.NewLocal("test", root, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFlushUsesToSQLStores: against real SQLite and PostgreSQL stores,
// FlushUses writes every seal to data_keys.uses and the Reseals alone also
// to data_keys.rewrap_uses, per version, and two nodes' flushes add up.
func TestFlushUsesToSQLStores(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := storetest.Open(t, b)
			p := newRootProvider(t)
			if _, ok := keyring.Store(sqlKeys{db}).(keyring.UseStore); !ok {
				t.Fatal("the SQL store is no UseStore")
			}
			a := keyring.New(p, sqlKeys{db}, keyring.Options{})
			other := keyring.New(p, sqlKeys{db}, keyring.Options{})
			const id = "collection/c"
			aad := envelope.AAD("c", "r", "f")
			seal := func(kr *keyring.Keyring, n int, reseal bool) {
				t.Helper()
				for range n {
					f := kr.Seal
					if reseal {
						f = kr.Reseal
					}
					if _, err := f(ctx, id, []byte("v"), aad); err != nil {
						t.Fatal(err)
					}
				}
			}
			check := func(when string, want map[uint32][2]uint64) {
				t.Helper()
				ks, err := db.DataKeys(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if len(ks) != len(want) {
					t.Fatalf("%s: %d versions, want %d", when, len(ks), len(want))
				}
				for _, k := range ks {
					if w := want[k.Version]; k.Uses != w[0] || k.RewrapUses != w[1] {
						t.Errorf("%s: version %d has %d uses, %d rewrap uses; want %d and %d",
							when, k.Version, k.Uses, k.RewrapUses, w[0], w[1])
					}
				}
			}
			seal(a, 4, false)
			if err := a.FlushUses(ctx); err != nil {
				t.Fatal(err)
			}
			check("after seals", map[uint32][2]uint64{1: {4, 0}}) // a Seal is no rewrap use
			if _, err := a.Rotate(ctx, id); err != nil {
				t.Fatal(err)
			}
			seal(a, 4, true) // the rewrap moves the 4 values
			seal(a, 1, false)
			seal(other, 2, true) // another node resealing too
			check("before a flush", map[uint32][2]uint64{1: {4, 0}, 2: {0, 0}})
			for _, kr := range []*keyring.Keyring{a, other} {
				if err := kr.FlushUses(ctx); err != nil {
					t.Fatal(err)
				}
			}
			check("after both flushed", map[uint32][2]uint64{1: {4, 0}, 2: {7, 6}})
			if err := a.FlushUses(ctx); err != nil { // nothing new: adds nothing
				t.Fatal(err)
			}
			check("after an empty flush", map[uint32][2]uint64{1: {4, 0}, 2: {7, 6}})
		})
	}
}

// TestRootWrapsInSQLStores: against real SQLite and PostgreSQL stores,
// root key wraps are flushed as uses of the root check key and read by
// every node, and the store can start the count again (a root rotation).
func TestRootWrapsInSQLStores(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := storetest.Open(t, b)
			p := newRootProvider(t)
			if _, ok := keyring.Store(sqlKeys{db}).(keyring.UseResetStore); !ok {
				t.Fatal("the SQL store is no UseResetStore")
			}
			a := keyring.New(p, sqlKeys{db}, keyring.Options{})
			if err := a.Check(ctx); err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{"collection/x", "subject/y"} {
				if _, err := a.Seal(ctx, id, []byte("v"), envelope.AAD(id)); err != nil {
					t.Fatal(err)
				}
			}
			if err := a.FlushUses(ctx); err != nil {
				t.Fatal(err)
			}
			other := keyring.New(p, sqlKeys{db}, keyring.Options{})
			if n, err := other.RootWraps(ctx); err != nil || n != 3 {
				t.Fatalf("another node sees %d root wraps (%v), want 3", n, err)
			}
			if err := db.SetDataKeyUses(ctx, keyring.RootCheckKeyID, 1, 1); err != nil {
				t.Fatal(err)
			}
			if n, err := other.RootWraps(ctx); err != nil || n != 1 {
				t.Fatalf("after a reset: %d root wraps (%v), want 1", n, err)
			}
		})
	}
}
