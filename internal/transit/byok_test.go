package transit

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" // #nosec G505 -- the OAEP hash some BYOK tooling uses
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"hash"
	"strings"
	"sync"
	"testing"

	"github.com/tink-crypto/tink-go/v2/kwp/subtle"

	"github.com/cofferhq/coffer/internal/coffer"
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

// byokWrap is what a client does: RSA-OAEP of a fresh AES-256 key, then
// KWP of key under it.
func byokWrap(t testing.TB, pub *rsa.PublicKey, h func() hash.Hash, key []byte) []byte {
	t.Helper()
	aesKey := make([]byte, 32)
	if _, err := rand.Read(aesKey); err != nil {
		t.Fatal(err)
	}
	head, err := rsa.EncryptOAEP(h(), rand.Reader, pub, aesKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := subtle.NewKWP(aesKey)
	if err != nil {
		t.Fatal(err)
	}
	tail, err := w.Wrap(key)
	if err != nil {
		t.Fatal(err)
	}
	return append(head, tail...)
}

func publicKey(t testing.TB, w WrappingKey) *rsa.PublicKey {
	t.Helper()
	b, _ := pem.Decode([]byte(w.PublicKey))
	if b == nil || b.Type != "PUBLIC KEY" {
		t.Fatalf("public_key is not a PEM public key: %q", w.PublicKey)
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := k.(*rsa.PublicKey)
	if !ok || pub.N.BitLen() != 4096 {
		t.Fatalf("wrapping key is %T, want RSA-4096", k)
	}
	return pub
}

// openIndependently decrypts a transit ciphertext from the raw key alone,
// following the documented layout: coffer:vN:BASE64 of 0x01 ‖ version
// (4 bytes, big endian) ‖ nonce (12) ‖ AES-256-GCM sealed data, the GCM key
// being HKDF-Expand(SHA-256, key, "coffer/keyring/v1/aead", 32) and the
// additional data the 5 header bytes ‖ each of "transit", the key name and
// the context prefixed by its uvarint length.
func openIndependently(t testing.TB, key []byte, name, ct string, bound []byte) []byte {
	t.Helper()
	rest, ok := strings.CutPrefix(ct, "coffer:v")
	if !ok {
		t.Fatalf("ciphertext %q has no coffer:v prefix", ct)
	}
	_, body, _ := strings.Cut(rest, ":")
	env, err := base64.StdEncoding.DecodeString(body)
	if err != nil || len(env) < 5+12+16 || env[0] != 1 {
		t.Fatalf("ciphertext body: %v", err)
	}
	gk, err := hkdf.Expand(sha256.New, key, "coffer/keyring/v1/aead", 32)
	if err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(gk)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	ad := bytes.Clone(env[:5])
	for _, p := range []string{"transit", name, string(bound)} {
		ad = binary.AppendUvarint(ad, uint64(len(p)))
		ad = append(ad, p...)
	}
	pt, err := gcm.Open(nil, env[5:17], env[17:], ad)
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
	if sealed := meta.m[wrappingKeyMeta]; sealed == "" || strings.Contains(sealed, "PRIVATE") {
		t.Fatalf("stored wrapping key %q: want a sealed envelope", sealed)
	}
	// Another node (and a restart) reads the same key back.
	if wk2, err := f.node(withMeta(meta)).WrappingKey(ctx, caller()); err != nil || wk2 != wk {
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

	// SHA-1 as the OAEP hash, when named, works too.
	other := bytes.Repeat([]byte{0x11}, 32)
	if _, err := n.Import(ctx, caller(), "byok-sha1", ImportRequest{HashFunction: "SHA1",
		Ciphertext: base64.StdEncoding.EncodeToString(byokWrap(t, pub, sha1.New, other))}); err != nil {
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
