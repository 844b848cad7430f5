package transit

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
)

func u32(v uint32) *uint32 { return &v }
func yes() *bool           { b := true; return &b }
func str(s string) *string { return &s }

func TestLifecycleRotateRewrapMinDecryptionVersion(t *testing.T) {
	f := newFixture(t)
	n := f.node()
	info := mustCreate(t, n, "payments", KeySpec{})
	if info.LatestVersion != 1 || info.MinDecryptionVersion != 1 || len(info.Versions) != 1 || info.Exportable {
		t.Fatalf("new key = %+v", info)
	}

	c1 := mustEncrypt(t, n, "payments", Item{Plaintext: enc("first")})[0]
	if !strings.HasPrefix(c1.Ciphertext, "coffer:v1:") || c1.KeyVersion != 1 {
		t.Fatalf("v1 ciphertext = %q (version %d)", c1.Ciphertext, c1.KeyVersion)
	}
	f.clock.Advance(time.Hour)
	info, err := n.Rotate(ctx, caller(), "payments")
	if err != nil || info.LatestVersion != 2 || len(info.Versions) != 2 {
		t.Fatalf("Rotate = %+v, %v", info, err)
	}
	if !info.Versions[1].CreatedAt.Equal(f.clock.Now()) || info.Versions[0].CreatedAt.Equal(info.Versions[1].CreatedAt) {
		t.Fatalf("version creation times = %+v", info.Versions)
	}
	c2 := mustEncrypt(t, n, "payments", Item{Plaintext: enc("second")})[0]
	if !strings.HasPrefix(c2.Ciphertext, "coffer:v2:") {
		t.Fatalf("after rotation ciphertext = %q, want v2", c2.Ciphertext)
	}
	mustDecrypt(t, n, "payments", c1.Ciphertext, "", "first")
	mustDecrypt(t, n, "payments", c2.Ciphertext, "", "second")

	rw, err := n.Rewrap(ctx, caller(), "payments", []CiphertextItem{{Ciphertext: c1.Ciphertext}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rw[0].Ciphertext, "coffer:v2:") || rw[0].KeyVersion != 2 {
		t.Fatalf("rewrapped = %q, want v2", rw[0].Ciphertext)
	}
	if strings.Contains(fmt.Sprint(rw), "first") {
		t.Fatal("rewrap answer holds the plaintext")
	}

	info, err = n.Configure(ctx, caller(), "payments", KeyConfig{MinDecryptionVersion: u32(2)})
	if err != nil || info.MinDecryptionVersion != 2 {
		t.Fatalf("Configure = %+v, %v", info, err)
	}
	_, err = n.Decrypt(ctx, caller(), "payments", []CiphertextItem{{Ciphertext: c1.Ciphertext}})
	wantCode(t, err, coffer.EMALFORMED)
	if coffer.ErrorMessage(err) != MsgUndecryptable {
		t.Fatalf("v1 below the minimum: message %q", coffer.ErrorMessage(err))
	}
	_, err = n.Rewrap(ctx, caller(), "payments", []CiphertextItem{{Ciphertext: c1.Ciphertext}})
	wantCode(t, err, coffer.EMALFORMED)
	mustDecrypt(t, n, "payments", rw[0].Ciphertext, "", "first")
	mustDecrypt(t, n, "payments", c2.Ciphertext, "", "second")

	// Lowering the minimum again lets v1 decrypt: nothing was destroyed.
	if _, err := n.Configure(ctx, caller(), "payments", KeyConfig{MinDecryptionVersion: u32(1)}); err != nil {
		t.Fatal(err)
	}
	mustDecrypt(t, n, "payments", c1.Ciphertext, "", "first")
}

func TestUndecryptableCiphertextsShareOneOpaqueError(t *testing.T) {
	f := newFixture(t)
	n := f.node()
	mustCreate(t, n, "a", KeySpec{})
	mustCreate(t, n, "b", KeySpec{})
	ctxA := base64.StdEncoding.EncodeToString([]byte("tenant-1"))
	ctxB := base64.StdEncoding.EncodeToString([]byte("tenant-2"))
	good := mustEncrypt(t, n, "a", Item{Plaintext: enc("secret value"), Context: Plaintext(ctxA)})[0].Ciphertext
	noCtx := mustEncrypt(t, n, "a", Item{Plaintext: enc("secret value")})[0].Ciphertext
	ofB := mustEncrypt(t, n, "b", Item{Plaintext: enc("secret value"), Context: Plaintext(ctxA)})[0].Ciphertext

	// The reference: another key's ciphertext.
	_, wrongKey := n.Decrypt(ctx, caller(), "a", []CiphertextItem{{Ciphertext: ofB, Context: Plaintext(ctxA)}})
	wantCode(t, wrongKey, coffer.EMALFORMED)

	_, env, err := ParseCiphertext(good)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) string {
		e := bytes.Clone(env)
		e[i] ^= 1
		s, _ := FormatCiphertext(e)
		return s
	}
	otherVersion := func() string {
		e := bytes.Clone(env)
		e[4] = 2 // v2 does not exist yet for key a
		s, _ := FormatCiphertext(e)
		return s
	}
	mismatch := "coffer:v2:" + strings.SplitN(good, ":", 3)[2]
	tests := []struct {
		name, ct, ctx string
	}{
		{"refused/tampered nonce", flip(envelope.HeaderSize), ctxA},
		{"refused/tampered body", flip(envelope.HeaderSize + envelope.NonceSize), ctxA},
		{"refused/tampered tag", flip(len(env) - 1), ctxA},
		{"refused/header version altered", otherVersion(), ctxA},
		{"refused/prefix version altered", mismatch, ctxA},
		{"refused/wrong context", good, ctxB},
		{"refused/missing context", good, ""},
		{"refused/context where none was bound", noCtx, ctxA},
		{"refused/another key's ciphertext", ofB, ctxA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := n.Decrypt(ctx, caller(), "a", []CiphertextItem{{Ciphertext: tt.ct, Context: Plaintext(tt.ctx)}})
			if err == nil {
				t.Fatal("decrypted")
			}
			if err.Error() != wrongKey.Error() || coffer.ErrorCode(err) != coffer.ErrorCode(wrongKey) {
				t.Fatalf("err = %q, want the same as a wrong key: %q", err, wrongKey)
			}
			var ce *coffer.Error
			if !errors.As(err, &ce) || ce.Cause != nil || len(ce.Problems) != 0 {
				t.Fatalf("opaque error carries detail: %#v", ce)
			}
		})
	}
	mustDecrypt(t, n, "a", good, ctxA, "secret value")
}

// TestVaultPrefixDecryptsOnBothSurfaces: a ciphertext shown as Vault's
// transit engine shows it (vault:vN:) is the same envelope and decrypts,
// and one altered under that prefix is the one opaque error.
func TestVaultPrefixDecryptsOnBothSurfaces(t *testing.T) {
	f := newFixture(t)
	n := f.node()
	mustCreate(t, n, "k", KeySpec{})
	good := mustEncrypt(t, n, "k", Item{Plaintext: enc("x"), Context: enc("ctx")})[0].Ciphertext
	vault := VaultCiphertext(good)
	if !strings.HasPrefix(vault, "vault:v1:") || strings.TrimPrefix(vault, "vault:") != strings.TrimPrefix(good, "coffer:") {
		t.Fatalf("VaultCiphertext(%q) = %q", good, vault)
	}
	mustDecrypt(t, n, "k", vault, string(enc("ctx")), "x")
	_, err := n.Decrypt(ctx, caller(), "k", []CiphertextItem{{Ciphertext: vault, Context: enc("other")}})
	wantCode(t, err, coffer.EMALFORMED)
}

func TestMalformedCiphertextsAre422WithoutTheValue(t *testing.T) {
	f := newFixture(t)
	n := f.node()
	mustCreate(t, n, "k", KeySpec{})
	good := mustEncrypt(t, n, "k", Item{Plaintext: enc("x")})[0].Ciphertext
	body := strings.SplitN(good, ":", 3)[2]
	for _, ct := range []string{
		"", "vault:v0:" + body, "VAULT:v1:" + body, "coffer:v0:" + body, "coffer:v01:" + body, "coffer:v-1:" + body,
		"coffer:v1:" + body + "!", "coffer:v1:" + body[:8], "coffer:v1:AAAA",
		"coffer:v99999999999:" + body, "coffer:v1:\n" + body, "COFFER:V1:" + body, "coffer:v1",
	} {
		t.Run(fmt.Sprintf("invalid/%q", ct), func(t *testing.T) {
			_, err := n.Decrypt(ctx, caller(), "k", []CiphertextItem{{Ciphertext: ct}})
			wantCode(t, err, coffer.EINVALID)
			if len(ct) > 4 && strings.Contains(coffer.ErrorMessage(err), ct) {
				t.Fatal("message echoes the ciphertext")
			}
		})
	}
}

func TestBatchOf1000(t *testing.T) {
	f := newFixture(t)
	n := f.node()
	mustCreate(t, n, "batch", KeySpec{})
	items := make([]Item, 1000)
	for i := range items {
		items[i] = Item{Plaintext: enc(fmt.Sprintf("value-%d", i)), Context: enc(fmt.Sprintf("row-%d", i))}
	}
	c := caller()
	cts, err := n.Encrypt(ctx, c, "batch", items)
	if err != nil {
		t.Fatal(err)
	}
	if c.Note.Count != 1000 || c.Note.Action != "encrypt" || c.Note.Resource != "keys/batch" || c.Note.Decision != "allow" {
		t.Fatalf("note = %+v", c.Note)
	}
	seen := map[string]bool{}
	in := make([]CiphertextItem, len(cts))
	for i, ct := range cts {
		if seen[ct.Ciphertext] {
			t.Fatal("two ciphertexts are equal")
		}
		seen[ct.Ciphertext] = true
		in[i] = CiphertextItem{Ciphertext: ct.Ciphertext, Context: items[i].Context}
	}
	c = caller()
	pts, err := n.Decrypt(ctx, c, "batch", in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range pts {
		if pts[i].Plaintext != items[i].Plaintext {
			t.Fatalf("item %d decrypted to another value", i)
		}
	}
	if c.Note.Count != 1000 || c.Note.Action != "decrypt" {
		t.Fatalf("decrypt note = %+v", c.Note)
	}
	// Swapping two contexts fails the batch.
	in[0].Context, in[1].Context = in[1].Context, in[0].Context
	_, err = n.Decrypt(ctx, caller(), "batch", in)
	wantCode(t, err, coffer.EMALFORMED)
}

func TestBatchIsValidatedBeforeAnyWork(t *testing.T) {
	f := newFixture(t)
	n := f.node(func(c *Config) { c.MaxPlaintextBytes = 16 })
	mustCreate(t, n, "k", KeySpec{})
	good := mustEncrypt(t, n, "k", Item{Plaintext: enc("ok")})[0].Ciphertext
	okItems := func(k int) []Item {
		items := make([]Item, k)
		for i := range items {
			items[i] = Item{Plaintext: enc("ok")}
		}
		return items
	}
	tests := []struct {
		name  string
		items []Item
		code  string
	}{
		{"invalid/empty batch", nil, coffer.EINVALID},
		{"too large/over the batch limit", okItems(DefaultMaxBatch + 1), coffer.ETOOLARGE},
		{"invalid/last plaintext not base64", append(okItems(50), Item{Plaintext: "not base64!"}), coffer.EINVALID},
		{"invalid/context not base64", append(okItems(5), Item{Plaintext: enc("x"), Context: "%%"}), coffer.EINVALID},
		{"too large/plaintext over the limit", append(okItems(5), Item{Plaintext: enc(strings.Repeat("x", 17))}), coffer.ETOOLARGE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := n.keys.calls.Load()
			_, err := n.Encrypt(ctx, caller(), "k", tt.items)
			wantCode(t, err, tt.code)
			if d := n.keys.calls.Load() - before; d != 0 {
				t.Fatalf("%d keyring calls before the batch was refused", d)
			}
		})
	}
	t.Run("invalid/one malformed ciphertext among good ones", func(t *testing.T) {
		before := n.keys.calls.Load()
		items := []CiphertextItem{{Ciphertext: good}, {Ciphertext: good}, {Ciphertext: "coffer:v1:@@"}}
		_, err := n.Decrypt(ctx, caller(), "k", items)
		wantCode(t, err, coffer.EINVALID)
		if !strings.Contains(coffer.ErrorMessage(err), "items[2]") {
			t.Fatalf("message %q does not name the item", coffer.ErrorMessage(err))
		}
		if d := n.keys.calls.Load() - before; d != 0 {
			t.Fatalf("%d keyring calls before the batch was refused", d)
		}
	})
	t.Run("invalid/problems are capped", func(t *testing.T) {
		items := make([]Item, 100)
		for i := range items {
			items[i] = Item{Plaintext: "!"}
		}
		_, err := n.Encrypt(ctx, caller(), "k", items)
		var ce *coffer.Error
		if !errors.As(err, &ce) || len(ce.Problems) != maxProblems+1 || !strings.Contains(ce.Message, "and 80 more") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestDeleteOnlyWhenDeletable(t *testing.T) {
	f := newFixture(t)
	n := f.node()
	mustCreate(t, n, "old", KeySpec{})
	ct := mustEncrypt(t, n, "old", Item{Plaintext: enc("keep me")})[0].Ciphertext

	wantCode(t, n.Delete(ctx, caller(), "old"), coffer.ECONFLICT)
	mustDecrypt(t, n, "old", ct, "", "keep me")

	if _, err := n.Configure(ctx, caller(), "old", KeyConfig{Deletable: yes()}); err != nil {
		t.Fatal(err)
	}
	if err := n.Delete(ctx, caller(), "old"); err != nil {
		t.Fatal(err)
	}
	c := caller()
	_, err := n.Get(ctx, c, "old")
	wantCode(t, err, coffer.ENOTFOUND)
	if !c.Note.Missing {
		t.Fatal("note does not mark the key missing")
	}
	_, err = n.Decrypt(ctx, caller(), "old", []CiphertextItem{{Ciphertext: ct}})
	wantCode(t, err, coffer.ENOTFOUND)
	for _, r := range must(f.ks.DataKeys(ctx, "transit/old")) {
		if r.State != coffer.KeyDestroyed || len(r.Wrapped) != 0 {
			t.Fatalf("version %d not destroyed: %s", r.Version, r.State)
		}
	}
	// The material is gone for every node, and the name is not reused.
	if _, err := f.node().keys.Seal(ctx, "transit/old", []byte("x"), nil); !errors.Is(err, keyring.ErrKeyDestroyed) {
		t.Fatalf("keyring Seal after delete: %v", err)
	}
	_, err = n.Create(ctx, caller(), "old", KeySpec{})
	wantCode(t, err, coffer.ECONFLICT)
	wantCode(t, n.Delete(ctx, caller(), "old"), coffer.ENOTFOUND)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestDeniedCallsDoNothing(t *testing.T) {
	f := newFixture(t)
	n := f.node()
	mustCreate(t, n, "k", KeySpec{Deletable: true})
	ct := mustEncrypt(t, n, "k", Item{Plaintext: enc("x")})[0].Ciphertext
	items := []CiphertextItem{{Ciphertext: ct}}
	calls := []struct {
		name  string
		allow []string
		do    func(Caller) error
	}{
		{"forbidden/create", []string{"read", "encrypt", "decrypt"}, func(c Caller) error { _, err := n.Create(ctx, c, "new", KeySpec{}); return err }},
		{"forbidden/get", []string{"admin", "encrypt", "decrypt"}, func(c Caller) error { _, err := n.Get(ctx, c, "k"); return err }},
		{"forbidden/rotate", []string{"read", "encrypt", "decrypt"}, func(c Caller) error { _, err := n.Rotate(ctx, c, "k"); return err }},
		{"forbidden/configure", []string{"read", "encrypt", "decrypt"}, func(c Caller) error {
			_, err := n.Configure(ctx, c, "k", KeyConfig{MinDecryptionVersion: u32(1)})
			return err
		}},
		{"forbidden/delete", []string{"read", "encrypt", "decrypt"}, func(c Caller) error { return n.Delete(ctx, c, "k") }},
		{"forbidden/encrypt", []string{"admin", "read", "decrypt"}, func(c Caller) error {
			_, err := n.Encrypt(ctx, c, "k", []Item{{Plaintext: enc("x")}})
			return err
		}},
		{"forbidden/decrypt", []string{"admin", "read", "encrypt"}, func(c Caller) error { _, err := n.Decrypt(ctx, c, "k", items); return err }},
		{"forbidden/rewrap without encrypt", []string{"admin", "read", "decrypt"}, func(c Caller) error { _, err := n.Rewrap(ctx, c, "k", items); return err }},
		{"forbidden/rewrap without decrypt", []string{"admin", "read", "encrypt"}, func(c Caller) error { _, err := n.Rewrap(ctx, c, "k", items); return err }},
		{"forbidden/unknown key looks the same", []string{"admin", "read", "decrypt"}, func(c Caller) error {
			_, err := n.Encrypt(ctx, c, "nope", []Item{{Plaintext: enc("x")}})
			return err
		}},
	}
	for _, tt := range calls {
		t.Run(tt.name, func(t *testing.T) {
			f.auth.set(tt.allow...)
			defer f.auth.set("admin", "read", "encrypt", "decrypt")
			writes, keyCalls, versions := f.ms.writes.Load(), n.keys.calls.Load(), f.ks.count("transit/k")
			c := caller()
			err := tt.do(c)
			wantCode(t, err, coffer.EFORBIDDEN)
			if c.Note.Decision != "deny" || c.Note.Reason == "" || c.Note.Missing {
				t.Fatalf("note = %+v", c.Note)
			}
			if f.ms.writes.Load() != writes || n.keys.calls.Load() != keyCalls || f.ks.count("transit/k") != versions {
				t.Fatal("a denied call changed the store or used a key")
			}
		})
	}
	mustDecrypt(t, n, "k", ct, "", "x")
	if k := f.ms.get(t, "k"); k.LatestVersion != 1 {
		t.Fatalf("key changed: %+v", k)
	}
}

func TestInvalidNamesAreRefusedBeforeThePolicy(t *testing.T) {
	f := newFixture(t)
	n := f.node()
	for _, name := range []string{"", "Upper", "a/b", "../x", "sp ace", strings.Repeat("a", 65), "ü"} {
		t.Run(fmt.Sprintf("invalid/%q", name), func(t *testing.T) {
			f.auth.asked = nil
			c := caller()
			_, err := n.Create(ctx, c, name, KeySpec{})
			wantCode(t, err, coffer.EINVALID)
			_, err = n.Encrypt(ctx, c, name, []Item{{Plaintext: enc("x")}})
			wantCode(t, err, coffer.EINVALID)
			if len(f.auth.asked) != 0 || c.Note.Resource != "keys" {
				t.Fatalf("asked %v; note %+v", f.auth.asked, c.Note)
			}
		})
	}
	for _, name := range []string{"a", "a-b_c9", strings.Repeat("z", 64)} {
		if !ValidName(name) {
			t.Errorf("ValidName(%q) = false", name)
		}
	}
}

func TestPolicyIsAskedAboutTheKeyResource(t *testing.T) {
	f := newFixture(t)
	n := f.node()
	mustCreate(t, n, "k", KeySpec{})
	ct := mustEncrypt(t, n, "k", Item{Plaintext: enc("x")})[0].Ciphertext
	f.auth.asked = nil
	c := caller()
	if _, err := n.Rewrap(ctx, c, "k", []CiphertextItem{{Ciphertext: ct}, {Ciphertext: ct}}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.auth.asked, ","); got != "decrypt keys/k,encrypt keys/k" {
		t.Fatalf("asked %q", got)
	}
	if c.Note.Action != "rewrap" || c.Note.Resource != "keys/k" || c.Note.Count != 2 || c.Note.Decision != "allow" {
		t.Fatalf("note = %+v", c.Note)
	}
}

func TestCreate(t *testing.T) {
	f := newFixture(t)
	n := f.node()
	info := mustCreate(t, n, "k", KeySpec{AutoRotatePeriod: "720h", Deletable: true})
	if info.AutoRotatePeriod != "720h0m0s" || !info.Deletable || !info.CreatedAt.Equal(f.clock.Now()) {
		t.Fatalf("info = %+v", info)
	}
	js, _ := json.Marshal(info)
	if bytes.Contains(js, []byte("wrapped")) || !bytes.Contains(js, []byte(`"versions":[{"version":1,`)) {
		t.Fatalf("info JSON = %s", js)
	}
	_, err := n.Create(ctx, caller(), "k", KeySpec{})
	wantCode(t, err, coffer.ECONFLICT)
	if f.ks.count("transit/k") != 1 {
		t.Fatal("a conflicting Create made a version")
	}
	for _, p := range []string{"1m", "soon", "-720h", "1000000h"} {
		_, err := n.Create(ctx, caller(), "p", KeySpec{AutoRotatePeriod: p})
		wantCode(t, err, coffer.EINVALID)
	}
	if f.ks.count("transit/p") != 0 {
		t.Fatal("an invalid Create made a key")
	}
}

func TestConfigureValidates(t *testing.T) {
	f := newFixture(t)
	n := f.node()
	mustCreate(t, n, "k", KeySpec{})
	if _, err := n.Rotate(ctx, caller(), "k"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  KeyConfig
		code string
	}{
		{"invalid/min 0", KeyConfig{MinDecryptionVersion: u32(0)}, coffer.EINVALID},
		{"invalid/min above latest", KeyConfig{MinDecryptionVersion: u32(3)}, coffer.EINVALID},
		{"invalid/period", KeyConfig{AutoRotatePeriod: str("5s")}, coffer.EINVALID},
		{"ok/min latest and period", KeyConfig{MinDecryptionVersion: u32(2), AutoRotatePeriod: str("24h")}, ""},
		{"ok/period off", KeyConfig{AutoRotatePeriod: str("0")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.ms.get(t, "k")
			_, err := n.Configure(ctx, caller(), "k", tt.cfg)
			wantCode(t, err, tt.code)
			if tt.code != "" && f.ms.get(t, "k") != before {
				t.Fatal("a refused Configure changed the key")
			}
		})
	}
	if k := f.ms.get(t, "k"); k.MinDecryptionVersion != 2 || k.AutoRotatePeriod != 0 {
		t.Fatalf("key = %+v", k)
	}
	_, err := n.Configure(ctx, caller(), "missing", KeyConfig{Deletable: yes()})
	wantCode(t, err, coffer.ENOTFOUND)
}

func versionsOf(t *testing.T, cts []Ciphertext) map[uint32]int {
	t.Helper()
	out := map[uint32]int{}
	for _, c := range cts {
		v, _, err := ParseCiphertext(c.Ciphertext)
		if err != nil || v != c.KeyVersion {
			t.Fatalf("ciphertext %q: version %d, %v", c.Ciphertext, c.KeyVersion, err)
		}
		out[v]++
	}
	return out
}

func TestRotatesBeforeTheUseCountPassesTheBound(t *testing.T) {
	f := newFixture(t)
	n := f.node(func(c *Config) { c.RotateAfter, c.FlushEvery = 10, 4 })
	mustCreate(t, n, "k", KeySpec{})
	var all []Ciphertext
	for range 7 {
		all = append(all, mustEncrypt(t, n, "k", Item{Plaintext: enc("a")}, Item{Plaintext: enc("b")}, Item{Plaintext: enc("c")})...)
	}
	per := versionsOf(t, all)
	if len(per) < 2 {
		t.Fatalf("21 encryptions with a bound of 10 made one version: %v", per)
	}
	for v, c := range per {
		if c > 10 {
			t.Fatalf("version %d encrypted %d values, bound is 10", v, c)
		}
	}
	if err := n.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	k := f.ms.get(t, "k")
	if k.EncryptionsSinceRotate != int64(per[k.LatestVersion]) {
		t.Fatalf("store counts %d encryptions of v%d, made %d", k.EncryptionsSinceRotate, k.LatestVersion, per[k.LatestVersion])
	}
	// Rewrap counts as encryption too, and every ciphertext still decrypts.
	in := make([]CiphertextItem, len(all))
	for i, c := range all {
		in[i].Ciphertext = c.Ciphertext
	}
	pts, err := n.Decrypt(ctx, caller(), "k", in)
	if err != nil || len(pts) != len(all) {
		t.Fatal(err)
	}
}

func TestUseCountIsSharedThroughTheStore(t *testing.T) {
	f := newFixture(t)
	a := f.node(func(c *Config) { c.RotateAfter, c.FlushEvery = 100, 1 })
	b := f.node(func(c *Config) { c.RotateAfter, c.FlushEvery = 100, 1 })
	mustCreate(t, a, "k", KeySpec{})
	items := make([]Item, 60)
	for i := range items {
		items[i] = Item{Plaintext: enc("x")}
	}
	mustEncrypt(t, a, "k", items...)
	if got := versionsOf(t, mustEncrypt(t, b, "k", items...)); got[2] != 60 {
		t.Fatalf("node b made %v; the 60 of node a were not counted", got)
	}
}

func TestRotatesByAge(t *testing.T) {
	f := newFixture(t)
	n := f.node()
	mustCreate(t, n, "k", KeySpec{AutoRotatePeriod: "24h"})
	f.clock.Advance(23 * time.Hour)
	if v := mustEncrypt(t, n, "k", Item{Plaintext: enc("x")})[0].KeyVersion; v != 1 {
		t.Fatalf("rotated early: v%d", v)
	}
	f.clock.Advance(time.Hour)
	if v := mustEncrypt(t, n, "k", Item{Plaintext: enc("x")})[0].KeyVersion; v != 2 {
		t.Fatalf("not rotated after 24h: v%d", v)
	}
	if v := mustEncrypt(t, n, "k", Item{Plaintext: enc("x")})[0].KeyVersion; v != 2 {
		t.Fatalf("rotated twice: v%d", v)
	}
}

func TestNodeWithAStaleKeyringNeverEncryptsBelowTheMinimum(t *testing.T) {
	f := newFixture(t)
	a, b := f.node(), f.node()
	mustCreate(t, a, "k", KeySpec{})
	old := mustEncrypt(t, b, "k", Item{Plaintext: enc("x")})[0] // b caches v1
	if _, err := a.Rotate(ctx, caller(), "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Configure(ctx, caller(), "k", KeyConfig{MinDecryptionVersion: u32(2)}); err != nil {
		t.Fatal(err)
	}
	got := mustEncrypt(t, b, "k", Item{Plaintext: enc("y")})[0]
	if old.KeyVersion != 1 || got.KeyVersion != 2 {
		t.Fatalf("node b encrypted under v%d after a rotation to v2 with minimum 2", got.KeyVersion)
	}
	mustDecrypt(t, a, "k", got.Ciphertext, "", "y")
}

// TestUnrecordedVersionNeverEncrypts: a version the keyring holds but the
// store does not record as the latest (a rotation whose store update was
// lost, an import that lost the race for a new name to another node) is
// never used to encrypt, and nothing sealed under it decrypts; the next
// rotation goes past it.
func TestUnrecordedVersionNeverEncrypts(t *testing.T) {
	f := newFixture(t)
	n := f.node()
	mustCreate(t, n, "k", KeySpec{})
	if _, err := n.keys.Rotate(ctx, "transit/k"); err != nil { // v2, its update lost
		t.Fatal(err)
	}
	material := bytes.Repeat([]byte{7}, 32)
	if _, err := n.keys.Import(ctx, "transit/k", bytes.Clone(material)); err != nil { // v3, the other node's import
		t.Fatal(err)
	}
	ct := mustEncrypt(t, n, "k", Item{Plaintext: enc("x")})[0]
	if ct.KeyVersion != 1 || f.ms.get(t, "k").LatestVersion != 1 {
		t.Fatalf("ciphertext v%d, store latest %d; want 1 and 1", ct.KeyVersion, f.ms.get(t, "k").LatestVersion)
	}
	mustDecrypt(t, n, "k", ct.Ciphertext, "", "x")
	// Whoever brought v3's material cannot make a ciphertext the key opens.
	forged, err := n.keys.SealVersion(ctx, "transit/k", 3, []byte("forged"), aad("k", nil))
	if err != nil {
		t.Fatal(err)
	}
	text, err := FormatCiphertext(forged)
	if err != nil {
		t.Fatal(err)
	}
	_, err = n.Decrypt(ctx, caller(), "k", []CiphertextItem{{Ciphertext: text}})
	wantCode(t, err, coffer.EMALFORMED)
	info, err := n.Rotate(ctx, caller(), "k")
	if err != nil || info.LatestVersion != 4 {
		t.Fatalf("rotate after unrecorded versions: %+v %v, want latest 4", info, err)
	}
	if ct := mustEncrypt(t, n, "k", Item{Plaintext: enc("y")})[0]; ct.KeyVersion != 4 {
		t.Fatalf("encrypted under v%d after the rotation, want 4", ct.KeyVersion)
	}
}

// TestRefusedCreationOnAnotherNodeIsDisowned: node b creates a name just
// after node a did, having checked before a's row was in; b's version,
// newer than a's, is refused with the name and retired, so that once a
// rotation records a version above it, nothing sealed under it (by whoever
// holds its material) decrypts or rewraps.
func TestRefusedCreationOnAnotherNodeIsDisowned(t *testing.T) {
	f := newFixture(t)
	a, b := f.node(), f.node()
	var forged string
	f.ms.afterMiss = func() {
		mustCreate(t, a, "k", KeySpec{}) // a: v1, recorded
		f.ms.beforeCreate = func() {
			// b's own version, v2, exists now: seal under it, as whoever
			// brought its material could.
			env, err := b.keys.SealVersion(ctx, "transit/k", 2, []byte("forged"), aad("k", nil))
			if err != nil {
				t.Error(err)
				return
			}
			if forged, err = FormatCiphertext(env); err != nil {
				t.Error(err)
			}
		}
	}
	if _, err := b.Create(ctx, caller(), "k", KeySpec{}); coffer.ErrorCode(err) != coffer.ECONFLICT {
		t.Fatalf("the later creation: %v, want a conflict", err)
	}
	if forged == "" {
		t.Fatal("the race did not happen as staged")
	}
	info, err := a.Rotate(ctx, caller(), "k")
	if err != nil || info.LatestVersion != 3 {
		t.Fatalf("rotate: %+v %v, want latest 3", info, err)
	}
	for _, n := range []node{a, b} {
		_, err := n.Decrypt(ctx, caller(), "k", []CiphertextItem{{Ciphertext: forged}})
		wantCode(t, err, coffer.EMALFORMED)
		_, err = n.Rewrap(ctx, caller(), "k", []CiphertextItem{{Ciphertext: forged}})
		wantCode(t, err, coffer.EMALFORMED)
		if ct := mustEncrypt(t, n, "k", Item{Plaintext: enc("x")})[0]; ct.KeyVersion != 3 {
			t.Fatalf("encrypted under v%d, want 3", ct.KeyVersion)
		}
	}
}

func TestPlaintextNeverPrints(t *testing.T) {
	const value = "c2VjcmV0IHZhbHVl"
	it := Item{Plaintext: value, Context: value}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "item", it, "pt", it.Plaintext)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "pt", it.Plaintext)
	for _, s := range []string{fmt.Sprint(it), fmt.Sprintf("%+v %#v %s %q", it, it, it.Plaintext, it.Plaintext), logged.String()} {
		if strings.Contains(s, value) {
			t.Fatalf("value printed: %s", s)
		}
	}
	js, _ := json.Marshal(Decrypted{Plaintext: value})
	if string(js) != `{"plaintext":"`+value+`"}` {
		t.Fatalf("JSON = %s", js)
	}
	var back Item
	if err := json.Unmarshal([]byte(`{"plaintext":"`+value+`"}`), &back); err != nil || back.Plaintext.Reveal() != value {
		t.Fatalf("Unmarshal = %v", err)
	}
}

type brokenAuth struct{}

func (brokenAuth) Allowed(*coffer.Principal, string, string, string, *coffer.AccessNote) error {
	return errors.New("policy store down")
}

func TestPolicyOutageDeniesAsAnInternalError(t *testing.T) {
	f := newFixture(t)
	mustCreate(t, f.node(), "k", KeySpec{})
	n := f.node(func(c *Config) { c.Auth = brokenAuth{} })
	c := caller()
	_, err := n.Encrypt(ctx, c, "k", []Item{{Plaintext: enc("x")}})
	wantCode(t, err, coffer.EINTERNAL)
	if n.keys.calls.Load() != 0 || c.Note.Decision != "deny" {
		t.Fatalf("keyring calls %d, note %+v", n.keys.calls.Load(), c.Note)
	}
}

// Administrative calls are authorized as admin on keys/NAME but noted for
// the audit log as what they did, refused ones too.
func TestAdminCallsNoteTheirOperation(t *testing.T) {
	f := newFixture(t)
	n := f.node()
	check := func(what, wantAction, wantDecision string, do func(Caller) error) {
		t.Helper()
		c := caller()
		err := do(c)
		if (err == nil) != (wantDecision == "allow") || c.Note.Action != wantAction || c.Note.Resource != "keys/k" || c.Note.Decision != wantDecision {
			t.Errorf("%s: %v, note %+v; want %s, %s on keys/k", what, err, *c.Note, wantAction, wantDecision)
		}
	}
	check("create", "keys.create", "allow", func(c Caller) error { _, err := n.Create(ctx, c, "k", KeySpec{Deletable: true}); return err })
	check("rotate", "keys.rotate", "allow", func(c Caller) error { _, err := n.Rotate(ctx, c, "k"); return err })
	check("configure", "keys.configure", "allow", func(c Caller) error {
		v := uint32(2)
		_, err := n.Configure(ctx, c, "k", KeyConfig{MinDecryptionVersion: &v})
		return err
	})
	f.auth.set("read", "encrypt", "decrypt")
	check("delete without admin", "keys.delete", "deny", func(c Caller) error { return n.Delete(ctx, c, "k") })
	f.auth.set("admin", "read", "encrypt", "decrypt")
	check("delete", "keys.delete", "allow", func(c Caller) error { return n.Delete(ctx, c, "k") })
}
