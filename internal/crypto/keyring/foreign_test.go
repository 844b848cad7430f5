package keyring

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
)

// vaultSeal seals pt as HashiCorp Vault's transit engine does for an
// aes256-gcm96 key, written here from its documented layout and not from
// the keyring: a random 12-byte nonce, then AES-256-GCM under the raw key
// with no additional data.
func vaultSeal(t *testing.T, key []byte, pt string) []byte {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, 12)
	if _, err := rand.Read(nonce); err != nil {
		t.Fatal(err)
	}
	return g.Seal(nonce, nonce, []byte(pt), nil)
}

// TestImportAtKeepsVersionNumbers: versions imported at their numbers keep
// them, with the versions below missing, and the newest encrypts.
func TestImportAtKeepsVersionNumbers(t *testing.T) {
	f := newFixture(t)
	kr := f.node()
	const id = "transit/from-vault"
	k3, k4 := bytes.Repeat([]byte{3}, 32), bytes.Repeat([]byte{4}, 32)
	m3, m4 := bytes.Clone(k3), bytes.Clone(k4)
	if err := kr.ImportAt(ctx, id, 3, m3); err != nil {
		t.Fatal(err)
	}
	if err := kr.ImportAt(ctx, id, 4, m4); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m3, make([]byte, 32)) || !bytes.Equal(m4, make([]byte, 32)) {
		t.Fatal("ImportAt did not zero the material")
	}
	if f.s.versions(id) != 2 {
		t.Fatalf("%d versions stored, want 2 (3 and 4)", f.s.versions(id))
	}
	if row := f.s.row(id, 3); row.State != coffer.KeyActive || bytes.Contains(row.Wrapped, k3) {
		t.Fatalf("version 3 stored as %+v: want active and wrapped", row)
	}
	if v := version(t, seal(t, kr, id, "x")); v != 4 {
		t.Fatalf("Seal used version %d, want 4", v)
	}
	// Values Vault sealed under each version open, here and on another node.
	other := f.node()
	for _, c := range []struct {
		n   uint32
		key []byte
	}{{3, k3}, {4, k4}} {
		sealed := vaultSeal(t, c.key, "vault value")
		for _, node := range []*Keyring{kr, other, kr} { // twice here: the built key is kept
			pt, err := node.OpenForeign(ctx, id, c.n, sealed)
			if err != nil || string(pt) != "vault value" {
				t.Fatalf("OpenForeign version %d = %q, %v", c.n, pt, err)
			}
		}
		// Under the other version, altered, or cut short: the one error.
		wrong := c.n ^ 7 // 4 or 3
		if _, err := kr.OpenForeign(ctx, id, wrong, sealed); !errors.Is(err, envelope.ErrDecrypt) {
			t.Fatalf("OpenForeign under version %d: %v, want ErrDecrypt", wrong, err)
		}
		bad := bytes.Clone(sealed)
		bad[len(bad)-1] ^= 1
		if _, err := kr.OpenForeign(ctx, id, c.n, bad); !errors.Is(err, envelope.ErrDecrypt) {
			t.Fatalf("altered value: %v, want ErrDecrypt", err)
		}
		if _, err := kr.OpenForeign(ctx, id, c.n, sealed[:27]); !errors.Is(err, envelope.ErrDecrypt) {
			t.Fatalf("short value: %v, want ErrDecrypt", err)
		}
	}
	// Versions below the first imported one do not exist.
	if _, err := kr.OpenForeign(ctx, id, 2, vaultSeal(t, k3, "x")); !errors.Is(err, envelope.ErrDecrypt) {
		t.Fatalf("OpenForeign of a missing version: %v, want ErrDecrypt", err)
	}
	// A retired version opens nothing, foreign or not.
	if err := kr.Retire(ctx, id, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := kr.OpenForeign(ctx, id, 3, vaultSeal(t, k3, "x")); !errors.Is(err, ErrKeyRetired) {
		t.Fatalf("OpenForeign under a retired version: %v, want ErrKeyRetired", err)
	}
}

// TestImportAtRefusals: a version at or below an existing one, a bad size,
// a permanent or destroyed key id are refused, and nothing is stored.
func TestImportAtRefusals(t *testing.T) {
	f := newFixture(t)
	kr := f.node()
	const id = "transit/taken"
	seal(t, kr, id, "x") // version 1
	if _, err := kr.Rotate(ctx, id); err != nil {
		t.Fatal(err)
	}
	for _, n := range []uint32{1, 2} {
		m := bytes.Repeat([]byte{9}, 32)
		if err := kr.ImportAt(ctx, id, n, m); !errors.Is(err, ErrVersionTaken) {
			t.Fatalf("ImportAt(%d) over versions 1-2: %v, want ErrVersionTaken", n, err)
		}
		if !bytes.Equal(m, make([]byte, 32)) {
			t.Fatal("a refused ImportAt did not zero the material")
		}
	}
	if f.s.versions(id) != 2 {
		t.Fatal("a refused ImportAt stored a version")
	}
	if err := kr.ImportAt(ctx, "transit/x", 1, make([]byte, 16)); !errors.Is(err, ErrMaterialSize) {
		t.Fatalf("16 bytes: %v", err)
	}
	if err := kr.ImportAt(ctx, "transit/x", 0, make([]byte, 32)); err == nil {
		t.Fatal("version 0 was taken")
	}
	if err := kr.ImportAt(ctx, "audit/hmac", 9, make([]byte, 32)); !errors.Is(err, ErrKeyPermanent) {
		t.Fatalf("permanent key id: %v", err)
	}
	if err := kr.Destroy(ctx, "transit/gone"); err != nil {
		t.Fatal(err)
	}
	if err := kr.ImportAt(ctx, "transit/gone", 5, make([]byte, 32)); !errors.Is(err, ErrKeyDestroyed) {
		t.Fatalf("destroyed key id: %v", err)
	}
	// A version Coffer made never opens a foreign value sealed under
	// another key, and its own envelopes are not foreign values.
	env := seal(t, kr, id, "mine")
	if _, err := kr.OpenForeign(ctx, id, 2, env[envelope.HeaderSize:]); !errors.Is(err, envelope.ErrDecrypt) {
		t.Fatalf("an envelope's body opened as a foreign value: %v", err)
	}
}
