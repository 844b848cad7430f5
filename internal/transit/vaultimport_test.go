package transit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/transit/transittest"
)

// vaultKey is one version of a Vault transit key in a test: its bytes, as
// Vault's export gives them.
type vaultKey struct {
	n   uint32
	key []byte
}

func vaultKeys(from, to uint32) []vaultKey {
	var out []vaultKey
	for n := from; n <= to; n++ {
		out = append(out, vaultKey{n, bytes.Repeat([]byte{byte(0x40 + n)}, 32)})
	}
	return out
}

func vaultSeal(t testing.TB, k vaultKey, pt string) string {
	t.Helper()
	ct, err := transittest.VaultSeal(k.key, k.n, []byte(pt))
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

// vaultImport wraps each version for n's wrapping key.
func vaultImport(t testing.TB, n node, keys []vaultKey) VaultImport {
	t.Helper()
	wk, err := n.WrappingKey(ctx, caller())
	if err != nil {
		t.Fatal(err)
	}
	pub := publicKey(t, wk)
	var req VaultImport
	for _, k := range keys {
		req.Versions = append(req.Versions, VaultVersion{Version: k.n,
			Ciphertext: base64.StdEncoding.EncodeToString(byokWrap(t, pub, sha256.New, k.key))})
	}
	return req
}

func decryptOne(n node, name, ct, bound string) (string, error) {
	out, err := n.Decrypt(ctx, caller(), name, []CiphertextItem{{Ciphertext: ct, Context: Plaintext(bound)}})
	if err != nil {
		return "", err
	}
	b, _ := base64.StdEncoding.DecodeString(string(out[0].Plaintext))
	return string(b), nil
}

// TestImportVaultOpensVaultCiphertexts: a key imported from Vault keeps
// its version numbers and minimum decryption version, opens what Vault
// sealed under each version (single, batch, rewrap, on another node),
// refuses what it must with the one opaque error, and encrypts under the
// latest version with the same material.
func TestImportVaultOpensVaultCiphertexts(t *testing.T) {
	f := newFixture(t)
	meta := &kv{m: map[string]string{}}
	n := f.node(withMeta(meta))
	keys := vaultKeys(2, 4) // Vault's min_decryption_version is 2
	var cts []string
	for _, k := range keys {
		cts = append(cts, vaultSeal(t, k, fmt.Sprintf("value under v%d", k.n)))
	}
	c := caller()
	info, err := n.ImportVault(ctx, c, "orders", vaultImport(t, n, keys))
	if err != nil {
		t.Fatal(err)
	}
	if info.LatestVersion != 4 || info.MinDecryptionVersion != 2 || !info.Imported || info.ImportedFrom != "vault" ||
		info.VaultLatestVersion != 4 || info.Exportable || len(info.Versions) != 3 || info.Versions[0].Version != 2 {
		t.Fatalf("imported key info %+v", info)
	}
	if c.Note.Action != "keys.import_vault" || c.Note.Resource != "keys/orders" || c.Note.Count != 3 || c.Note.Decision != "allow" {
		t.Fatalf("note %+v", c.Note)
	}
	for _, v := range []string{"keys/orders/versions/2", "keys/orders/versions/3", "keys/orders/versions/4"} {
		if !strings.Contains(strings.Join(c.Note.Targets, " "), v) {
			t.Fatalf("targets %v lack %s", c.Note.Targets, v)
		}
	}
	noteText := fmt.Sprintf("%+v", *c.Note)
	for _, k := range keys {
		for _, form := range []string{base64.StdEncoding.EncodeToString(k.key), fmt.Sprintf("%x", k.key), string(k.key)} {
			if strings.Contains(noteText, form) {
				t.Fatal("the audit note holds key material")
			}
		}
	}

	other := f.node(withMeta(meta))
	for i, ct := range cts {
		want := fmt.Sprintf("value under v%d", keys[i].n)
		for _, node := range []node{n, other} {
			// Vault binds no context to a key that is not derived: one
			// given is not used, as Vault ignores it.
			for _, bound := range []string{"", string(enc("tenant-1"))} {
				if got, err := decryptOne(node, "orders", ct, bound); err != nil || got != want {
					t.Fatalf("decrypt %s = %q, %v; want %q", ct, got, err, want)
				}
			}
		}
	}
	// A batch, with a tampered item failing alone and opaquely.
	tampered := []byte(cts[1])
	tampered[len(tampered)-3] ^= 1
	res, err := n.DecryptBatch(ctx, caller(), "orders", []BatchCiphertextItem{
		{CiphertextItem: CiphertextItem{Ciphertext: cts[0]}}, {CiphertextItem: CiphertextItem{Ciphertext: string(tampered)}},
		{CiphertextItem: CiphertextItem{Ciphertext: cts[2]}}})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Plaintext == nil || *res[0].Plaintext != enc("value under v2") || res[1].Error != MsgUndecryptable || res[2].Plaintext == nil {
		t.Fatalf("batch results %+v", res)
	}
	// Refused with the one opaque error: Vault's body under another
	// version's number, under coffer:vN:, and below the minimum decryption
	// version (Vault archived version 1; Coffer never had it).
	body := strings.TrimPrefix(cts[2], "vault:v4:")
	k1 := vaultKey{1, bytes.Repeat([]byte{0x41}, 32)}
	for _, bad := range []string{"vault:v3:" + body, "vault:v1:" + strings.TrimPrefix(vaultSeal(t, k1, "x"), "vault:v1:"), string(tampered)} {
		_, err := decryptOne(n, "orders", bad, "")
		wantCode(t, err, coffer.EMALFORMED)
		if coffer.ErrorMessage(err) != MsgUndecryptable {
			t.Fatalf("%s refused with %q", bad, coffer.ErrorMessage(err))
		}
	}
	if _, err := decryptOne(n, "orders", "coffer:v4:"+body, ""); coffer.ErrorCode(err) == "" {
		t.Fatal("Vault's ciphertext under coffer:v4: decrypted")
	}

	// New values are Coffer's envelopes under version 4, made from the
	// same material as Vault's version 4 (opened here from it alone).
	out := mustEncrypt(t, n, "orders", Item{Plaintext: enc("new"), Context: enc("ctx")})
	if out[0].KeyVersion != 4 {
		t.Fatalf("encrypted under version %d, want 4", out[0].KeyVersion)
	}
	if got := openIndependently(t, keys[2].key, "orders", out[0].Ciphertext, []byte("ctx")); string(got) != "new" {
		t.Fatalf("independent open = %q", got)
	}
	mustDecrypt(t, n, "orders", VaultCiphertext(out[0].Ciphertext), string(enc("ctx")), "new")

	// Rewrap moves a Vault ciphertext to a Coffer one under the latest version.
	rw, err := n.Rewrap(ctx, caller(), "orders", []CiphertextItem{{Ciphertext: cts[0]}})
	if err != nil || !strings.HasPrefix(rw[0].Ciphertext, "coffer:v4:") {
		t.Fatalf("rewrap = %+v, %v", rw, err)
	}
	mustDecrypt(t, n, "orders", rw[0].Ciphertext, "", "value under v2")

	// After a rotation, version 5 is Coffer's: a Vault layout under it is
	// a malformed ciphertext, as for any key Coffer made.
	if _, err := n.Rotate(ctx, caller(), "orders"); err != nil {
		t.Fatal(err)
	}
	k5 := vaultKey{5, bytes.Repeat([]byte{0x45}, 32)}
	_, err = decryptOne(n, "orders", vaultSeal(t, k5, "x"), "")
	wantCode(t, err, coffer.EINVALID)
	if got, err := decryptOne(n, "orders", cts[2], ""); err != nil || got != "value under v4" {
		t.Fatalf("after a rotation, version 4's Vault ciphertext = %q, %v", got, err)
	}
	// The minimum decryption version is respected for Vault's ciphertexts.
	three := uint32(3)
	if _, err := n.Configure(ctx, caller(), "orders", KeyConfig{MinDecryptionVersion: &three}); err != nil {
		t.Fatal(err)
	}
	_, err = decryptOne(n, "orders", cts[0], "")
	wantCode(t, err, coffer.EMALFORMED)
	if got, err := decryptOne(n, "orders", cts[1], ""); err != nil || got != "value under v3" {
		t.Fatalf("version 3 after min_decryption_version 3 = %q, %v", got, err)
	}
}

// TestVaultLayoutOnlyForImportedKeys: a key Coffer made (or imported with
// BYOK) answers a vault:vN: text that is not its envelope as before: a
// malformed ciphertext, 422, even when its body is Vault's layout under
// the key's own bytes.
func TestVaultLayoutOnlyForImportedKeys(t *testing.T) {
	f := newFixture(t)
	meta := &kv{m: map[string]string{}}
	n := f.node(withMeta(meta))
	wk, err := n.WrappingKey(ctx, caller())
	if err != nil {
		t.Fatal(err)
	}
	key := vaultKey{1, bytes.Repeat([]byte{0x77}, 32)}
	info, err := n.Import(ctx, caller(), "byok", ImportRequest{Ciphertext: base64.StdEncoding.EncodeToString(byokWrap(t, publicKey(t, wk), sha256.New, key.key))})
	if err != nil {
		t.Fatal(err)
	}
	if !info.Imported || info.ImportedFrom != "byok" || info.VaultLatestVersion != 0 {
		t.Fatalf("BYOK key info %+v", info)
	}
	_, err = decryptOne(n, "byok", vaultSeal(t, key, "x"), "")
	wantCode(t, err, coffer.EINVALID)
	if made := mustCreate(t, n, "made", KeySpec{}); made.Imported || made.ImportedFrom != "" {
		t.Fatalf("a key Coffer made says imported: %+v", made)
	}
}

// TestImportVaultRefusals: bad requests, names in use, and a denied
// caller store nothing; importing over an existing key leaves its
// material as it was.
func TestImportVaultRefusals(t *testing.T) {
	f := newFixture(t)
	meta := &kv{m: map[string]string{}}
	n := f.node(withMeta(meta))
	keys := vaultKeys(1, 2)
	good := vaultImport(t, n, keys)

	mustCreate(t, n, "existing", KeySpec{})
	before := mustEncrypt(t, n, "existing", Item{Plaintext: enc("kept")})
	for _, c := range []struct {
		name, what string
		req        VaultImport
		code       string
	}{
		{"v", "no versions", VaultImport{}, coffer.EINVALID},
		{"v", "version 0", VaultImport{Versions: []VaultVersion{{0, good.Versions[0].Ciphertext}}}, coffer.EINVALID},
		{"v", "not consecutive", VaultImport{Versions: []VaultVersion{good.Versions[0], {3, good.Versions[1].Ciphertext}}}, coffer.EINVALID},
		{"v", "too many", VaultImport{Versions: make([]VaultVersion, MaxVaultVersions+1)}, coffer.ETOOLARGE},
		{"v", "not base64", VaultImport{Versions: []VaultVersion{good.Versions[0], {2, "%%%"}}}, coffer.EINVALID},
		{"v", "not a wrapped key", VaultImport{Versions: []VaultVersion{good.Versions[0], {2, base64.StdEncoding.EncodeToString(make([]byte, 600))}}}, coffer.EINVALID},
		{"v", "SHA-1 not allowed", VaultImport{Versions: good.Versions, HashFunction: "SHA1"}, coffer.EINVALID},
		{"v", "bad rotation period", VaultImport{Versions: good.Versions, AutoRotatePeriod: "1s"}, coffer.EINVALID},
		{"wrapping_key", "reserved name", good, coffer.EINVALID},
		{"Bad Name", "bad name", good, coffer.EINVALID},
		{"existing", "over an existing key", good, coffer.ECONFLICT},
	} {
		_, err := n.ImportVault(ctx, caller(), c.name, c.req)
		if coffer.ErrorCode(err) != c.code {
			t.Fatalf("%s: err %v, want %s", c.what, err, c.code)
		}
		if c.name == "v" && f.ks.count(KeyID("v")) != 0 {
			t.Fatalf("%s: versions were stored", c.what)
		}
	}
	// The existing key's material is as it was: old values open, new
	// values are under its own version 1, and it is not marked imported.
	mustDecrypt(t, n, "existing", before[0].Ciphertext, "", "kept")
	if info, err := n.Get(ctx, caller(), "existing"); err != nil || info.Imported || info.LatestVersion != 1 || len(info.Versions) != 1 {
		t.Fatalf("existing key after an import over it: %+v, %v", info, err)
	}
	if _, err := decryptOne(n, "existing", vaultSeal(t, keys[0], "x"), ""); coffer.ErrorCode(err) == "" {
		t.Fatal("the existing key opened a Vault ciphertext of the refused import")
	}

	// A deleted key's name is not reused.
	mustCreate(t, n, "gone", KeySpec{Deletable: true})
	if err := n.Delete(ctx, caller(), "gone"); err != nil {
		t.Fatal(err)
	}
	_, err := n.ImportVault(ctx, caller(), "gone", good)
	wantCode(t, err, coffer.ECONFLICT)

	// Versions left under the name (an interrupted attempt) at or above
	// the first imported version: a conflict, nothing more stored.
	if _, err := n.keys.Keys.Rotate(context.Background(), KeyID("leftover")); err != nil {
		t.Fatal(err)
	}
	_, err = n.ImportVault(ctx, caller(), "leftover", good)
	wantCode(t, err, coffer.ECONFLICT)
	if f.ks.count(KeyID("leftover")) != 1 {
		t.Fatalf("%d versions under leftover, want the 1 left behind", f.ks.count(KeyID("leftover")))
	}
	// Below the first imported version they are no obstacle.
	if _, err := n.ImportVault(ctx, caller(), "leftover", vaultImport(t, n, vaultKeys(2, 3))); err != nil {
		t.Fatalf("import above a leftover version: %v", err)
	}

	// A caller without admin is refused before anything is read.
	f.auth.set("read", "encrypt", "decrypt")
	c := caller()
	_, err = n.ImportVault(ctx, c, "denied", good)
	wantCode(t, err, coffer.EFORBIDDEN)
	if c.Note.Action != "keys.import_vault" || c.Note.Decision != "deny" || f.ks.count(KeyID("denied")) != 0 {
		t.Fatalf("denied import: note %+v", c.Note)
	}
}

func TestParseVaultNative(t *testing.T) {
	body := base64.StdEncoding.EncodeToString(make([]byte, 28))
	if v, b, ok := ParseVaultNative("vault:v12:" + body); !ok || v != 12 || len(b) != 28 {
		t.Fatalf("ParseVaultNative = %d, %d bytes, %v", v, len(b), ok)
	}
	short := base64.StdEncoding.EncodeToString(make([]byte, 27))
	for _, s := range []string{"coffer:v1:" + body, "vault:v0:" + body, "vault:v01:" + body, "vault:v:" + body, "vault:v1" + body,
		"vault:v-1:" + body, "vault:v4294967296:" + body, "vault:v1:" + short, "vault:v1:" + body + "\n",
		"vault:v1:" + strings.TrimRight(body, "="), "vault:v1:" + body[:len(body)-2] + "B="} {
		if _, _, ok := ParseVaultNative(s); ok {
			t.Errorf("ParseVaultNative(%q) accepted", s)
		}
	}
}

// BenchmarkDecryptImportedVault: batches of 1,000 100-byte values of a key
// imported from Vault, in process, as Vault sealed them (sub-benchmark
// vault) and as Coffer sealed them under the same version (coffer);
// ns/item is the figure to compare.
func BenchmarkDecryptImportedVault(b *testing.B) {
	f := newFixture(b)
	meta := &kv{m: map[string]string{}}
	n := f.node(withMeta(meta))
	keys := vaultKeys(1, 1)
	if _, err := n.ImportVault(ctx, caller(), "bench", vaultImport(b, n, keys)); err != nil {
		b.Fatal(err)
	}
	pt := string(make([]byte, 100))
	vault := make([]CiphertextItem, 1000)
	items := make([]Item, 1000)
	for i := range vault {
		vault[i] = CiphertextItem{Ciphertext: vaultSeal(b, keys[0], pt)}
		items[i] = Item{Plaintext: enc(pt)}
	}
	coffer := make([]CiphertextItem, 1000)
	for i, c := range mustEncrypt(b, n, "bench", items...) {
		coffer[i] = CiphertextItem{Ciphertext: VaultCiphertext(c.Ciphertext)}
	}
	for _, c := range []struct {
		name string
		in   []CiphertextItem
	}{{"vault", vault}, {"coffer", coffer}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := n.Decrypt(ctx, caller(), "bench", c.in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(c.in)), "ns/item")
		})
	}
}
