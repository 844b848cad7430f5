package transit

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/transit/transittest"
)

// rotating makes a node's wrapping keys rotate every 30 days with an hour
// of grace (1024-bit keys, to keep the test fast).
func rotating(meta *kv) func(*Config) {
	return func(c *Config) {
		c.Meta, c.WrappingKeyRotateAfter, c.WrappingKeyGrace, c.wrappingBits = meta, 30*24*time.Hour, time.Hour, 1024
	}
}

// wrapFor wraps key for wrapping key w, as a client does.
func wrapFor(t *testing.T, w WrappingKey, key []byte) ImportRequest {
	t.Helper()
	pub, err := transittest.ParsePublicKey(w.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := transittest.Wrap(pub, sha256.New(), key)
	if err != nil {
		t.Fatal(err)
	}
	return ImportRequest{Ciphertext: base64.StdEncoding.EncodeToString(ct)}
}

// #16.7: the import wrapping key rotates on its schedule; the one before
// still unwraps imports for its grace, on every node, and is deleted
// after it; every node then hands out and uses the new one.
func TestWrappingKeyRotatesWithGrace(t *testing.T) {
	f := newFixture(t)
	meta := &kv{m: map[string]string{}}
	n := f.node(rotating(meta))
	w1, err := n.WrappingKey(ctx, caller())
	if err != nil || w1.Version != 1 || w1.CreatedAt == nil {
		t.Fatalf("first wrapping key %+v %v", w1, err)
	}
	key := bytes.Repeat([]byte{0x42}, 32)
	forV1 := wrapFor(t, w1, key)

	f.clock.Advance(31 * 24 * time.Hour)
	w2, err := n.WrappingKey(ctx, caller())
	if err != nil || w2.Version != 2 || w2.PublicKey == w1.PublicKey {
		t.Fatalf("after 31 days: %+v %v; want a new version 2", w2, err)
	}
	other := f.node(rotating(meta))
	if w, err := other.WrappingKey(ctx, caller()); err != nil || w.PublicKey != w2.PublicKey {
		t.Fatalf("another node hands out %+v %v", w, err)
	}
	// In the grace: an import wrapped for the old key still works.
	if _, err := other.Import(ctx, caller(), "in-grace", forV1); err != nil {
		t.Fatalf("an import for the previous key in its grace: %v", err)
	}
	if _, err := n.Import(ctx, caller(), "new-key", wrapFor(t, w2, key)); err != nil {
		t.Fatal(err)
	}

	// After it: refused like any ciphertext that does not unwrap, and
	// the old key is gone from the store.
	f.clock.Advance(2 * time.Hour)
	_, err = n.Import(ctx, caller(), "too-late", forV1)
	wantCode(t, err, coffer.EINVALID)
	if coffer.ErrorMessage(err) != MsgNotAKey {
		t.Fatalf("late import: %q", coffer.ErrorMessage(err))
	}
	if meta.has(wrappingKeyMetaV(1)) || !meta.has(wrappingKeyMetaV(2)) {
		t.Fatalf("stored wrapping keys after the grace: %v", meta.m)
	}
}

// A wrapping key made before keys rotated (stored under the old name, of
// unknown age) keeps working without rotation, and is replaced at once
// when rotation is on, with its grace.
func TestLegacyWrappingKey(t *testing.T) {
	f := newFixture(t)
	meta := &kv{m: map[string]string{}}
	n := f.node(withMeta(meta), func(c *Config) { c.wrappingBits = 1024 })
	// What the first releases stored.
	legacy, err := n.newWrappingKey(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	der := mustPKCS8(t, legacy)
	env, err := n.c.Keys.Seal(ctx, wrappingKeyID, der, wrappingKeyAAD(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	meta.m = map[string]string{wrappingKeyMeta: base64.StdEncoding.EncodeToString(env)}

	fresh := f.node(withMeta(meta), func(c *Config) { c.wrappingBits = 1024 })
	w1, err := fresh.WrappingKey(ctx, caller())
	if err != nil || w1.Version != 1 || w1.CreatedAt != nil {
		t.Fatalf("legacy key %+v %v", w1, err)
	}
	key := bytes.Repeat([]byte{7}, 32)
	if _, err := fresh.Import(ctx, caller(), "legacy", wrapFor(t, w1, key)); err != nil {
		t.Fatal(err)
	}
	rot := f.node(rotating(meta))
	w2, err := rot.WrappingKey(ctx, caller())
	if err != nil || w2.Version != 2 {
		t.Fatalf("with rotation on: %+v %v", w2, err)
	}
	if _, err := rot.Import(ctx, caller(), "legacy-in-grace", wrapFor(t, w1, key)); err != nil {
		t.Fatalf("legacy key in its grace: %v", err)
	}
	f.clock.Advance(2 * time.Hour)
	if _, err := rot.WrappingKey(ctx, caller()); err != nil {
		t.Fatal(err)
	}
	if meta.has(wrappingKeyMeta) {
		t.Fatal("the legacy wrapping key outlived its grace")
	}
}

func mustPKCS8(t *testing.T, w *wrapping) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(w.priv)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
