package keyring

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
)

// TestImportSealsWithTheGivenMaterial proves that an imported version is
// the one that encrypts and that its AEAD key is derived from exactly the
// material given: the test opens an envelope itself from that material.
func TestImportSealsWithTheGivenMaterial(t *testing.T) {
	f := newFixture(t)
	kr := f.node()
	const id = "transit/byok"
	material := bytes.Repeat([]byte{0x42}, 32)
	known := bytes.Clone(material)
	v, err := kr.Import(ctx, id, material)
	if err != nil || v != 1 {
		t.Fatalf("Import = %d, %v; want version 1", v, err)
	}
	if !bytes.Equal(material, make([]byte, 32)) {
		t.Fatal("Import did not zero the material it was given")
	}
	row := f.s.row(id, 1)
	if row.State != coffer.KeyActive || len(row.Wrapped) == 0 || bytes.Contains(row.Wrapped, known) {
		t.Fatalf("stored row %+v: want an active, wrapped version", row)
	}
	aad := envelope.AAD(id, "rec", "field")
	env := seal(t, kr, id, "hello")
	if version(t, env) != 1 {
		t.Fatalf("envelope version %d, want 1", version(t, env))
	}
	k, err := hkdf.Expand(sha256.New, known, infoAEAD, 32)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(k)
	gcm, _ := cipher.NewGCM(block)
	hdr := env[:envelope.HeaderSize]
	pt, err := gcm.Open(nil, env[envelope.HeaderSize:envelope.HeaderSize+envelope.NonceSize],
		env[envelope.HeaderSize+envelope.NonceSize:], append(bytes.Clone(hdr), aad...))
	if err != nil || string(pt) != "hello" {
		t.Fatalf("opening with the imported material = %q, %v", pt, err)
	}
	// Another node unwraps the same material from the store.
	mustOpen(t, f.node(), id, env, "hello")

	// A second import is the next version and encrypts from then on.
	v2, err := kr.Import(ctx, id, bytes.Repeat([]byte{0x43}, 32))
	if err != nil || v2 != 2 {
		t.Fatalf("second Import = %d, %v; want version 2", v2, err)
	}
	if got := version(t, seal(t, kr, id, "x")); got != 2 {
		t.Fatalf("after a second import the envelope has version %d, want 2", got)
	}
	mustOpen(t, kr, id, env, "hello")
}

func TestImportRefusals(t *testing.T) {
	f := newFixture(t)
	kr := f.node()
	for _, n := range []int{0, 16, 31, 33, 64} {
		m := bytes.Repeat([]byte{1}, n)
		if _, err := kr.Import(ctx, "transit/k", m); !errors.Is(err, ErrMaterialSize) {
			t.Errorf("Import of %d bytes: %v; want ErrMaterialSize", n, err)
		}
		if !bytes.Equal(m, make([]byte, n)) {
			t.Errorf("Import of %d bytes did not zero it", n)
		}
	}
	if f.s.versions("transit/k") != 0 {
		t.Fatal("a refused import stored a version")
	}
	if _, err := kr.Import(ctx, "audit/hmac", make([]byte, 32)); !errors.Is(err, ErrKeyPermanent) {
		t.Errorf("Import into a permanent key id: %v; want ErrKeyPermanent", err)
	}
	if err := kr.Destroy(ctx, "transit/gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Import(ctx, "transit/gone", make([]byte, 32)); !errors.Is(err, ErrKeyDestroyed) {
		t.Errorf("Import into a destroyed key id: %v; want ErrKeyDestroyed", err)
	}
}
