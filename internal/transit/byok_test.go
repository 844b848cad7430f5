package transit

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha1" // #nosec G505 -- the OAEP hash some BYOK tooling uses
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"strings"
	"sync"
	"testing"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/transit/transittest"
)

// kv is an in-memory Meta with the store's contract.
type kv struct {
	mu sync.Mutex
	m  map[string]string
}

func (s *kv) Meta(_ context.Context, key string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	if !ok {
		return "", coffer.Errorf(coffer.ENOTFOUND, "meta not found")
	}
	return v, nil
}

func (s *kv) AddMeta(_ context.Context, key, value string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.m[key]; ok {
		return v, nil
	}
	s.m[key] = value
	return value, nil
}

func (s *kv) DeleteMeta(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	return nil
}

func (s *kv) has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[key]
	return ok
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestUnwrapKWPKnownAnswer checks the KWP wrapper against a vector made
// outside Go: OpenSSL's id-aes256-wrap-pad and pyca/cryptography's
// aes_key_wrap_with_padding both give this wrap of a 32-byte key under a
// 32-byte KEK. RFC 5649 §6's own vectors use an AES-192 KEK, which Tink's
// KWP (and so the wrapper) refuses: that refusal is checked too.
func TestUnwrapKWPKnownAnswer(t *testing.T) {
	kek := unhex(t, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	key := unhex(t, "00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f")
	wrapped := unhex(t, "4a8029243027353b0694cf1bd8fc745bb0ce8a739b19b1960b12426d4c39cfeda926d103ab34e9f6")
	got, err := unwrapKWP(kek, wrapped)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("unwrapKWP = %x, %v; want %x", got, err, key)
	}
	for i := range wrapped {
		bad := bytes.Clone(wrapped)
		bad[i] ^= 0x01
		if _, err := unwrapKWP(kek, bad); err == nil {
			t.Fatalf("a wrap with byte %d flipped unwrapped", i)
		}
	}
	if _, err := unwrapKWP(kek, wrapped[:len(wrapped)-8]); err == nil {
		t.Fatal("a truncated wrap unwrapped")
	}
	// RFC 5649 §6, 20-octet key: the KEK is AES-192.
	rfcKEK := unhex(t, "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8")
	rfcWrapped := unhex(t, "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a")
	if _, err := unwrapKWP(rfcKEK, rfcWrapped); err == nil {
		t.Fatal("unwrapKWP accepted an AES-192 KEK")
	}
}

// byokWrap is what a client does (transittest.Wrap), with the OAEP hash h.
func byokWrap(t testing.TB, pub *rsa.PublicKey, h func() hash.Hash, key []byte) []byte {
	t.Helper()
	ct, err := transittest.Wrap(pub, h(), key)
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

func publicKey(t testing.TB, w WrappingKey) *rsa.PublicKey {
	t.Helper()
	pub, err := transittest.ParsePublicKey(w.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if pub.N.BitLen() != 4096 {
		t.Fatalf("wrapping key of %d bits, want 4096", pub.N.BitLen())
	}
	return pub
}

// openIndependently decrypts a transit ciphertext from the raw key alone
// (transittest.Open), not through this package.
func openIndependently(t testing.TB, key []byte, name, ct string, bound []byte) []byte {
	t.Helper()
	pt, err := transittest.Open(key, name, ct, bound)
	if err != nil {
		t.Fatalf("the ciphertext does not open with the imported key: %v", err)
	}
	return pt
}

func withMeta(m *kv) func(*Config) { return func(c *Config) { c.Meta = m } }

func TestImportEncryptsWithTheImportedKey(t *testing.T) {
	f := newFixture(t)
	meta := &kv{m: map[string]string{}}
	n := f.node(withMeta(meta))
	wk, err := n.WrappingKey(ctx, caller())
	if err != nil {
		t.Fatal(err)
	}
	pub := publicKey(t, wk)
	if sealed := meta.m[wrappingKeyMetaV(1)]; sealed == "" || strings.Contains(sealed, "PRIVATE") {
		t.Fatalf("stored wrapping key %q: want a sealed envelope", sealed)
	}
	// Another node (and a restart) reads the same key back.
	if wk2, err := f.node(withMeta(meta)).WrappingKey(ctx, caller()); err != nil || wk2.PublicKey != wk.PublicKey || wk2.Version != wk.Version {
		t.Fatalf("second node's wrapping key differs: %v", err)
	}

	key := bytes.Repeat([]byte{0x5a}, 32)
	key[0] = 7
	info, err := n.Import(ctx, caller(), "byok", ImportRequest{Ciphertext: base64.StdEncoding.EncodeToString(byokWrap(t, pub, sha256.New, key))})
	if err != nil {
		t.Fatal(err)
	}
	if info.LatestVersion != 1 || info.Exportable || len(info.Versions) != 1 {
		t.Fatalf("imported key info %+v", info)
	}
	out := mustEncrypt(t, n, "byok", Item{Plaintext: enc("card 4111"), Context: enc("tenant-1")})
	if got := openIndependently(t, key, "byok", out[0].Ciphertext, []byte("tenant-1")); string(got) != "card 4111" {
		t.Fatalf("independent decryption = %q", got)
	}
	mustDecrypt(t, f.node(withMeta(meta)), "byok", out[0].Ciphertext, string(enc("tenant-1")), "card 4111")

	// SHA-1 as the OAEP hash is refused, unless allowed; then it works.
	other := bytes.Repeat([]byte{0x11}, 32)
	sha1Req := ImportRequest{HashFunction: "SHA1", Ciphertext: base64.StdEncoding.EncodeToString(byokWrap(t, pub, sha1.New, other))}
	_, err = n.Import(ctx, caller(), "byok-sha1", sha1Req)
	wantCode(t, err, coffer.EINVALID)
	if coffer.ErrorMessage(err) != MsgSHA1Refused {
		t.Fatalf("SHA-1 refused with %q", coffer.ErrorMessage(err))
	}
	allow := f.node(withMeta(meta), func(c *Config) { c.AllowSHA1 = true })
	if _, err := allow.Import(ctx, caller(), "byok-sha1", sha1Req); err != nil {
		t.Fatal(err)
	}

	// The name is taken now.
	_, err = n.Import(ctx, caller(), "byok", ImportRequest{Ciphertext: base64.StdEncoding.EncodeToString(byokWrap(t, pub, sha256.New, key))})
	wantCode(t, err, coffer.ECONFLICT)
}

func TestImportRefusals(t *testing.T) {
	f := newFixture(t)
	meta := &kv{m: map[string]string{}}
	n := f.node(withMeta(meta))
	wk, err := n.WrappingKey(ctx, caller())
	if err != nil {
		t.Fatal(err)
	}
	pub := publicKey(t, wk)
	key := bytes.Repeat([]byte{0x33}, 32)
	good := byokWrap(t, pub, sha256.New, key)
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x80
		return b
	}
	b64 := base64.StdEncoding.EncodeToString
	cases := []struct {
		name string
		req  ImportRequest
		code string
		msg  string
	}{
		{"16-byte key", ImportRequest{Ciphertext: b64(byokWrap(t, pub, sha256.New, key[:16]))}, coffer.EINVALID, msgImportSize},
		{"48-byte key", ImportRequest{Ciphertext: b64(byokWrap(t, pub, sha256.New, bytes.Repeat(key, 2)[:48]))}, coffer.EINVALID, msgImportSize},
		{"tampered OAEP part", ImportRequest{Ciphertext: b64(flip(10))}, coffer.EINVALID, MsgNotAKey},
		{"tampered KWP part", ImportRequest{Ciphertext: b64(flip(512 + 3))}, coffer.EINVALID, MsgNotAKey},
		{"truncated KWP part", ImportRequest{Ciphertext: b64(good[:len(good)-8])}, coffer.EINVALID, MsgNotAKey},
		{"OAEP part only", ImportRequest{Ciphertext: b64(good[:512])}, coffer.EINVALID, MsgNotAKey},
		{"short", ImportRequest{Ciphertext: b64(good[:100])}, coffer.EINVALID, MsgNotAKey},
		{"wrong hash function", ImportRequest{Ciphertext: b64(good), HashFunction: "SHA512"}, coffer.EINVALID, MsgNotAKey},
		{"wrapped with SHA-1, said SHA-256", ImportRequest{Ciphertext: b64(byokWrap(t, pub, sha1.New, key))}, coffer.EINVALID, MsgNotAKey},
		{"SHA-1 not allowed", ImportRequest{Ciphertext: b64(byokWrap(t, pub, sha1.New, key)), HashFunction: "SHA1"}, coffer.EINVALID, MsgSHA1Refused},
		{"unknown hash function", ImportRequest{Ciphertext: b64(good), HashFunction: "MD5"}, coffer.EINVALID, ""},
		{"not base64", ImportRequest{Ciphertext: "%%%"}, coffer.EINVALID, ""},
		{"empty", ImportRequest{}, coffer.EINVALID, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := n.Import(ctx, caller(), "refused", c.req)
			wantCode(t, err, c.code)
			if c.msg != "" && coffer.ErrorMessage(err) != c.msg {
				t.Fatalf("message %q, want %q", coffer.ErrorMessage(err), c.msg)
			}
		})
	}
	if f.ks.count(KeyID("refused")) != 0 {
		t.Fatal("a refused import left key material")
	}
	if _, err := f.ms.TransitKey(ctx, "refused"); coffer.ErrorCode(err) != coffer.ENOTFOUND {
		t.Fatalf("a refused import left a key: %v", err)
	}

	// The reserved name, on create and import.
	_, err = n.Create(ctx, caller(), WrappingKeyName, KeySpec{})
	wantCode(t, err, coffer.EINVALID)
	_, err = n.Import(ctx, caller(), WrappingKeyName, ImportRequest{Ciphertext: b64(good)})
	wantCode(t, err, coffer.EINVALID)

	// Without admin: neither the wrapping key nor an import.
	f.auth.set("read", "encrypt", "decrypt")
	_, err = n.WrappingKey(ctx, caller())
	wantCode(t, err, coffer.EFORBIDDEN)
	_, err = n.Import(ctx, caller(), "byok", ImportRequest{Ciphertext: b64(good)})
	wantCode(t, err, coffer.EFORBIDDEN)

	// Without a metadata store: fail closed.
	f.auth.set("admin")
	_, err = f.node().WrappingKey(ctx, caller())
	if err == nil {
		t.Fatal("WrappingKey without a metadata store succeeded")
	}
}

func TestImportVersion(t *testing.T) {
	f := newFixture(t)
	meta := &kv{m: map[string]string{}}
	n := f.node(withMeta(meta))
	wk, err := n.WrappingKey(ctx, caller())
	if err != nil {
		t.Fatal(err)
	}
	pub := publicKey(t, wk)
	b64 := base64.StdEncoding.EncodeToString
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)

	_, err = n.ImportVersion(ctx, caller(), "missing", ImportRequest{Ciphertext: b64(byokWrap(t, pub, sha256.New, k2))})
	wantCode(t, err, coffer.ENOTFOUND)

	if _, err := n.Import(ctx, caller(), "byok", ImportRequest{Ciphertext: b64(byokWrap(t, pub, sha256.New, k1))}); err != nil {
		t.Fatal(err)
	}
	old := mustEncrypt(t, n, "byok", Item{Plaintext: enc("one")})[0]
	info, err := n.ImportVersion(ctx, caller(), "byok", ImportRequest{Ciphertext: b64(byokWrap(t, pub, sha256.New, k2))})
	if err != nil || info.LatestVersion != 2 || info.MinDecryptionVersion != 1 || len(info.Versions) != 2 {
		t.Fatalf("ImportVersion = %+v, %v", info, err)
	}
	cur := mustEncrypt(t, n, "byok", Item{Plaintext: enc("two")})[0]
	if cur.KeyVersion != 2 || string(openIndependently(t, k2, "byok", cur.Ciphertext, nil)) != "two" {
		t.Fatalf("after ImportVersion the key encrypts with version %d", cur.KeyVersion)
	}
	if string(openIndependently(t, k1, "byok", old.Ciphertext, nil)) != "one" {
		t.Fatal("version 1 is not the first imported key")
	}
	mustDecrypt(t, f.node(withMeta(meta)), "byok", old.Ciphertext, "", "one")

	bad := byokWrap(t, pub, sha256.New, k2)
	bad[len(bad)-1] ^= 1
	_, err = n.ImportVersion(ctx, caller(), "byok", ImportRequest{Ciphertext: b64(bad)})
	wantCode(t, err, coffer.EINVALID)
	if coffer.ErrorMessage(err) != MsgNotAKey {
		t.Fatalf("message %q", coffer.ErrorMessage(err))
	}
	_, err = n.ImportVersion(ctx, caller(), "byok", ImportRequest{Ciphertext: b64(byokWrap(t, pub, sha256.New, k2[:24]))})
	wantCode(t, err, coffer.EINVALID)
	if f.ks.count(KeyID("byok")) != 2 {
		t.Fatal("a refused ImportVersion added a version")
	}
	f.auth.set("read", "encrypt", "decrypt")
	_, err = n.ImportVersion(ctx, caller(), "byok", ImportRequest{Ciphertext: b64(byokWrap(t, pub, sha256.New, k2))})
	wantCode(t, err, coffer.EFORBIDDEN)
}

// Imports racing for one name on a node: one wins, the others are
// refused, and the key that encrypts is the winner's.
func TestConcurrentImportsOfOneName(t *testing.T) {
	f := newFixture(t)
	n := f.node(withMeta(&kv{m: map[string]string{}}))
	wk, err := n.WrappingKey(ctx, caller())
	if err != nil {
		t.Fatal(err)
	}
	pub := publicKey(t, wk)
	keys := make([][]byte, 6)
	errs := make([]error, len(keys))
	var wg sync.WaitGroup
	for i := range keys {
		keys[i] = bytes.Repeat([]byte{byte(0x20 + i)}, 32)
		ct := base64.StdEncoding.EncodeToString(byokWrap(t, pub, sha256.New, keys[i]))
		wg.Go(func() { _, errs[i] = n.Import(ctx, caller(), "race", ImportRequest{Ciphertext: ct}) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner < 0:
			winner = i
		case err == nil:
			t.Fatalf("imports %d and %d both succeeded", winner, i)
		default:
			wantCode(t, err, coffer.ECONFLICT)
		}
	}
	if winner < 0 {
		t.Fatal("no import succeeded")
	}
	out := mustEncrypt(t, n, "race", Item{Plaintext: enc("x")})
	if got := openIndependently(t, keys[winner], "race", out[0].Ciphertext, nil); string(got) != "x" {
		t.Fatalf("the key that encrypts is not the winning import's: %q", got)
	}
}
