package auditadmin

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"testing"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestAuditKeySourceAndLookup: against a real keyring and store, the
// writer's source follows a rotation (deriving a key only when its version
// changes), and the verifiers' lookup finds every version and no other.
func TestAuditKeySourceAndLookup(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			kr := newKeyring(t, storetest.Open(t, b))
			lookup := KeyLookup{kr}
			if _, err := lookup.HMACKeyVersion(ctx, 1); !errors.Is(err, audit.ErrUnknownKeyVersion) {
				t.Fatalf("lookup before any key: %v, want ErrUnknownKeyVersion (and no key made)", err)
			}
			src := NewKeySource(kr)
			k1, err := src.CurrentKeys(ctx)
			if err != nil || k1.HMACVersion != 1 || k1.SigningVersion != 1 {
				t.Fatalf("first keys: %v, %v", k1, err)
			}
			if _, err := kr.Rotate(ctx, HMACKeyID); err != nil {
				t.Fatal(err)
			}
			k2, err := src.CurrentKeys(ctx)
			if err != nil || k2.HMACVersion != 2 || k2.SigningVersion != 1 || bytes.Equal(k1.HMACKey, k2.HMACKey) {
				t.Fatalf("after the HMAC rotation: %v, %v", k2, err)
			}
			if &k2.SigningKey[0] != &k1.SigningKey[0] {
				t.Fatal("the signing key was derived again though its version did not change")
			}
			if _, err := kr.Rotate(ctx, SigningKeyID); err != nil {
				t.Fatal(err)
			}
			k3, err := src.CurrentKeys(ctx)
			if err != nil || k3.SigningVersion != 2 || k3.SigningKey.Equal(k1.SigningKey) {
				t.Fatalf("after the signing rotation: %v, %v", k3, err)
			}
			if !bytes.Equal(k1.HMACKey, mustLookup(t, lookup.HMACKeyVersion, 1)) ||
				!bytes.Equal(k2.HMACKey, mustLookup(t, lookup.HMACKeyVersion, 2)) {
				t.Fatal("the lookup's HMAC keys differ from the writer's")
			}
			for v, k := range map[uint32]audit.Keys{1: k1, 2: k3} {
				if pub := mustLookup(t, lookup.PublicKeyVersion, v); !pub.Equal(k.SigningKey.Public().(ed25519.PublicKey)) {
					t.Fatalf("public key version %d differs from the writer's signing key", v)
				}
			}
			if _, err := lookup.HMACKeyVersion(ctx, 3); !errors.Is(err, audit.ErrUnknownKeyVersion) {
				t.Fatalf("HMAC key version 3: %v, want ErrUnknownKeyVersion", err)
			}
			if _, err := lookup.PublicKeyVersion(ctx, 3); !errors.Is(err, audit.ErrUnknownKeyVersion) {
				t.Fatalf("signing key version 3: %v, want ErrUnknownKeyVersion", err)
			}
			for _, id := range []string{HMACKeyID, SigningKeyID} {
				if err := kr.Destroy(ctx, id); !errors.Is(err, keyring.ErrKeyPermanent) {
					t.Fatalf("Destroy(%s) = %v", id, err)
				}
				if err := kr.Retire(ctx, id, 1); !errors.Is(err, keyring.ErrKeyPermanent) {
					t.Fatalf("Retire(%s, 1) = %v", id, err)
				}
			}
		})
	}
}

func mustLookup[K any](t *testing.T, f func(context.Context, uint32) (K, error), v uint32) K {
	t.Helper()
	k, err := f(context.Background(), v)
	if err != nil {
		t.Fatalf("lookup of version %d: %v", v, err)
	}
	return k
}
