package keyring_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestDestroyOneVersionSQLStores: against real SQLite and PostgreSQL
// stores, one retired version is destroyed on its own — its wrapped bytes
// erased, its values unopenable here at once and on another node once its
// cache expires — while the key id's other versions seal and open as
// before; the version that encrypts and active versions are refused,
// destroyed is final, and unretire brings a retired version back.
func TestDestroyOneVersionSQLStores(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := storetest.Open(t, b)
			p := newRootProvider(t)
			if _, ok := keyring.Store(sqlKeys{db}).(keyring.VersionStore); !ok {
				t.Fatal("the SQL store is no VersionStore")
			}
			var clock time.Duration
			now := func() time.Time { return time.Now().Add(clock) }
			kr := keyring.New(p, sqlKeys{db}, keyring.Options{Now: now})
			other := keyring.New(p, sqlKeys{db}, keyring.Options{Now: now})
			const id = "collection/c"
			aad := envelope.AAD("c", "r", "f")
			old, err := kr.Seal(ctx, id, []byte("v1 value"), aad)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := other.Open(ctx, id, old, aad); err != nil { // other caches version 1
				t.Fatal(err)
			}
			if _, err := kr.Rotate(ctx, id); err != nil {
				t.Fatal(err)
			}
			cur, err := kr.Seal(ctx, id, []byte("v2 value"), aad)
			if err != nil {
				t.Fatal(err)
			}
			if err := kr.DestroyVersion(ctx, id, 1); !errors.Is(err, keyring.ErrNotRetired) {
				t.Fatalf("destroy an active version: %v", err)
			}
			if err := kr.DestroyVersion(ctx, id, 2); !errors.Is(err, keyring.ErrCurrentVersion) {
				t.Fatalf("destroy the current version: %v", err)
			}
			if err := kr.DestroyVersion(ctx, id, 9); !errors.Is(err, keyring.ErrKeyNotFound) {
				t.Fatalf("destroy a missing version: %v", err)
			}
			if err := kr.DestroyVersion(ctx, "audit/hmac", 1); !errors.Is(err, keyring.ErrKeyPermanent) {
				t.Fatalf("destroy an audit key version: %v", err)
			}
			// Retire, unretire, retire again.
			if err := kr.Retire(ctx, id, 1); err != nil {
				t.Fatal(err)
			}
			if _, err := kr.Open(ctx, id, old, aad); !errors.Is(err, keyring.ErrKeyRetired) {
				t.Fatalf("open under a retired version: %v", err)
			}
			// The other node follows within its cache time.
			if _, err := other.Open(ctx, id, old, aad); err != nil {
				t.Fatalf("other node within its cache time of the retirement: %v", err)
			}
			clock += keyring.DefaultCacheTTL + time.Second
			if _, err := other.Open(ctx, id, old, aad); !errors.Is(err, keyring.ErrKeyRetired) {
				t.Fatalf("other node after its cache expired: %v", err)
			}
			if err := kr.Unretire(ctx, id, 1); err != nil {
				t.Fatal(err)
			}
			if err := kr.Unretire(ctx, id, 1); err != nil {
				t.Fatalf("unretire an active version: %v", err)
			}
			if pt, err := kr.Open(ctx, id, old, aad); err != nil || string(pt) != "v1 value" {
				t.Fatalf("open after unretire: %q %v", pt, err)
			}
			if v, err := kr.CurrentVersion(ctx, id); err != nil || v != 2 {
				t.Fatalf("current version after unretiring 1: %d %v", v, err)
			}
			clock += keyring.DefaultCacheTTL + time.Second
			if pt, err := other.Open(ctx, id, old, aad); err != nil || string(pt) != "v1 value" {
				t.Fatalf("other node after unretire and its cache time: %q %v", pt, err)
			}
			if err := kr.Retire(ctx, id, 1); err != nil {
				t.Fatal(err)
			}
			if err := kr.DestroyVersion(ctx, id, 1); err != nil {
				t.Fatal(err)
			}
			if err := kr.DestroyVersion(ctx, id, 1); err != nil {
				t.Fatalf("destroy a destroyed version again: %v", err)
			}
			rows, err := db.DataKeys(ctx, id)
			if err != nil || len(rows) != 2 {
				t.Fatalf("data keys: %v %v", rows, err)
			}
			for _, r := range rows {
				switch r.Version {
				case 1:
					if r.State != coffer.KeyDestroyed || len(r.Wrapped) != 0 {
						t.Fatalf("version 1 after destroy: state %s, %d wrapped bytes", r.State, len(r.Wrapped))
					}
				case 2:
					if r.State != coffer.KeyActive || len(r.Wrapped) == 0 {
						t.Fatalf("version 2 after destroying 1: state %s, %d wrapped bytes", r.State, len(r.Wrapped))
					}
				}
			}
			if _, err := kr.Open(ctx, id, old, aad); !errors.Is(err, keyring.ErrVersionDestroyed) || errors.Is(err, keyring.ErrKeyDestroyed) {
				t.Fatalf("open under the destroyed version here: %v", err)
			}
			if err := kr.Unretire(ctx, id, 1); !errors.Is(err, keyring.ErrVersionDestroyed) {
				t.Fatalf("unretire a destroyed version: %v", err)
			}
			if err := kr.Retire(ctx, id, 1); !errors.Is(err, keyring.ErrVersionDestroyed) {
				t.Fatalf("retire a destroyed version: %v", err)
			}
			// The key lives on: version 2 opens and seals, and a rotation
			// goes past the destroyed version.
			for _, k := range []*keyring.Keyring{kr, other} {
				if pt, err := k.Open(ctx, id, cur, aad); err != nil || string(pt) != "v2 value" {
					t.Fatalf("open under version 2: %q %v", pt, err)
				}
			}
			if v, err := kr.CurrentVersion(ctx, id); err != nil || v != 2 {
				t.Fatalf("current version: %d %v", v, err)
			}
			// The other node still holds version 1 until its cache expires.
			clock += keyring.DefaultCacheTTL + time.Second
			if pt, err := other.Open(ctx, id, old, aad); err == nil || bytes.Equal(pt, []byte("v1 value")) {
				t.Fatalf("other node after its cache expired: %q %v", pt, err)
			}
			if _, err := other.Open(ctx, id, old, aad); !errors.Is(err, keyring.ErrVersionDestroyed) {
				t.Fatalf("other node: %v", err)
			}
			if v, err := kr.Rotate(ctx, id); err != nil || v != 3 {
				t.Fatalf("rotate after destroying a version: %d %v", v, err)
			}
			// Destroying the whole key still shreds every version.
			if err := kr.Destroy(ctx, id); err != nil {
				t.Fatal(err)
			}
			if _, err := kr.Open(ctx, id, cur, aad); !errors.Is(err, keyring.ErrKeyDestroyed) {
				t.Fatalf("open after the key was destroyed: %v", err)
			}
		})
	}
}

// TestDestroyOutlastsARacingRotation: a node that read a key's versions
// before another node erased it, and then adds the next version, collides
// with Destroy's tombstone instead of bringing the key back; a rotation
// from any node afterwards is refused, and nothing seals under the key.
func TestDestroyOutlastsARacingRotation(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := storetest.Open(t, b)
			p := newRootProvider(t)
			a := keyring.New(p, sqlKeys{db}, keyring.Options{})
			id := "subject/racing"
			if _, err := a.Seal(ctx, id, []byte("v"), nil); err != nil {
				t.Fatal(err)
			}
			if err := keyring.New(p, sqlKeys{db}, keyring.Options{}).Destroy(ctx, id); err != nil {
				t.Fatal(err)
			}
			// What a racing rotation that read version 1 as the newest
			// writes now: version 2, active.
			err := sqlKeys{db}.InsertDataKey(ctx, coffer.DataKey{KeyID: id, Version: 2, State: coffer.KeyActive,
				Wrapped: []byte("racing"), Created: time.Now().UTC()})
			if !errors.Is(err, keyring.ErrVersionExists) {
				t.Fatalf("a racing version 2 after the erasure: %v, want ErrVersionExists", err)
			}
			if _, err := a.Rotate(ctx, id); !errors.Is(err, keyring.ErrKeyDestroyed) {
				t.Fatalf("rotate after the erasure: %v, want ErrKeyDestroyed", err)
			}
			fresh := keyring.New(p, sqlKeys{db}, keyring.Options{})
			if _, err := fresh.Seal(ctx, id, []byte("v"), nil); !errors.Is(err, keyring.ErrKeyDestroyed) {
				t.Fatalf("seal after the erasure: %v, want ErrKeyDestroyed", err)
			}
		})
	}
}
