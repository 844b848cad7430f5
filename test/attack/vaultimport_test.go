package attack

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/transit/transittest"
)

const importVaultRoute = "POST /v1/keys/{name}/import_vault"

// vaultImportBody wraps keys (versions from, from+1, …) for the server's
// wrapping key as `coffer keys import-vault` does.
func vaultImportBody(t *testing.T, w *world, from int, keys ...[]byte) map[string]any {
	t.Helper()
	var wk struct {
		PublicKey string `json:"public_key"`
	}
	w.n.must(t, 200, "GET", "/v1/keys/wrapping_key", w.n.admin, nil, &wk)
	pub, err := transittest.ParsePublicKey(wk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	var versions []map[string]any
	for i, k := range keys {
		ct, err := transittest.Wrap(pub, sha256.New(), k)
		if err != nil {
			t.Fatal(err)
		}
		versions = append(versions, map[string]any{"version": from + i, "ciphertext": base64.StdEncoding.EncodeToString(ct)})
	}
	return map[string]any{"versions": versions}
}

// vaultImportAttacks: importing from Vault is an admin's act on the key's
// name; it never replaces the material of a key that exists, never makes
// a key exportable, and the material it carries appears in no answer,
// audit event or log line.
func vaultImportAttacks() []attack {
	return []attack{
		{importVaultRoute, "a customer imports a key from Vault: 403, nothing made", func(t *testing.T, w *world) {
			body := vaultImportBody(t, w, 1, bytes.Repeat([]byte{0x21}, 32))
			r := w.n.call(t, "POST", "/v1/keys/vault-denied/import_vault", w.tokenA, body)
			wantProblem(t, r, 403, "not allowed to admin keys/vault-denied")
			wantProblem(t, w.n.call(t, "GET", "/v1/keys/vault-denied", w.n.admin, nil), 404, "transit key not found")
		}},
		{importVaultRoute, "an import over an existing key is 409 and its material stays", func(t *testing.T, w *world) {
			key := bytes.Repeat([]byte{0x22}, 32)
			vaultCT, err := transittest.VaultSeal(key, 1, []byte("vault value"))
			if err != nil {
				t.Fatal(err)
			}
			r := w.n.call(t, "POST", "/v1/keys/k1/import_vault", w.n.admin, vaultImportBody(t, w, 1, key))
			wantProblem(t, r, 409, "transit key exists")
			// k1 still opens its own ciphertext (the snapshot checks it
			// too), opens nothing sealed under the refused key, and says
			// it was not imported.
			var pt struct {
				Plaintext string `json:"plaintext"`
			}
			w.n.must(t, 200, "POST", "/v1/keys/k1/decrypt", w.n.admin, map[string]any{"ciphertext": w.ciphertext}, &pt)
			if pt.Plaintext != "cGxhbnRlZA==" {
				t.Fatalf("k1 decrypts its ciphertext to %q", pt.Plaintext)
			}
			if r := w.n.call(t, "POST", "/v1/keys/k1/decrypt", w.n.admin, map[string]any{"ciphertext": vaultCT}); r.status < 400 {
				t.Fatalf("k1 opened a ciphertext of the key imported over it: %s", r)
			}
			var info map[string]any
			w.n.must(t, 200, "GET", "/v1/keys/k1", w.n.admin, nil, &info)
			if info["imported"] != false || info["exportable"] != false {
				t.Fatalf("k1 after the refused import: %v", info)
			}
		}},
		{importVaultRoute, "exportable, derived or a chosen type are unknown fields: 422", func(t *testing.T, w *world) {
			for _, f := range []string{`"exportable":true`, `"derived":true`, `"convergent_encryption":true`, `"type":"aes128-gcm96"`, `"min_decryption_version":1`} {
				r := w.n.call(t, "POST", "/v1/keys/vault-fields/import_vault", w.n.admin, `{"versions":[],`+f+`}`)
				if r.status != 422 || !strings.Contains(string(r.body), "unknown field") {
					t.Fatalf("%s: %s", f, r)
				}
			}
		}},
		{importVaultRoute, "the imported material is in no answer, audit event or log line", func(t *testing.T, w *world) {
			k1, k2 := bytes.Repeat([]byte{0x5e}, 32), []byte("vault-material-0123456789abcdefX")
			body := vaultImportBody(t, w, 3, k1, k2)
			r := w.n.call(t, "POST", "/v1/keys/vault-secret/import_vault", w.n.admin, body)
			if r.status != 201 {
				t.Fatalf("import: %s", r)
			}
			answer := string(r.body)
			var info map[string]any
			if err := json.Unmarshal(r.body, &info); err != nil {
				t.Fatal(err)
			}
			if info["imported"] != true || info["imported_from"] != "vault" || info["exportable"] != false || info["latest_version"] != 4.0 ||
				info["min_decryption_version"] != 3.0 {
				t.Fatalf("imported key %v", info)
			}
			ct, err := transittest.VaultSeal(k2, 4, []byte("from vault"))
			if err != nil {
				t.Fatal(err)
			}
			var pt struct {
				Plaintext string `json:"plaintext"`
			}
			w.n.must(t, 200, "POST", "/v1/keys/vault-secret/decrypt", w.n.admin, map[string]any{"ciphertext": ct}, &pt)
			if pt.Plaintext != base64.StdEncoding.EncodeToString([]byte("from vault")) {
				t.Fatalf("decrypt = %q", pt.Plaintext)
			}
			r = w.n.call(t, "GET", "/v1/audit/events?action=keys.import_vault&limit=50", w.n.admin, nil)
			if r.status != 200 || !strings.Contains(string(r.body), "keys/vault-secret/versions/4") {
				t.Fatalf("no audit event of the import with its versions: %s", r)
			}
			var wrapped []string
			for _, v := range body["versions"].([]map[string]any) {
				wrapped = append(wrapped, v["ciphertext"].(string))
			}
			for _, k := range [][]byte{k1, k2} {
				forms := append([]string{base64.StdEncoding.EncodeToString(k), base64.RawURLEncoding.EncodeToString(k), hex.EncodeToString(k), string(k[:24])}, wrapped...)
				for _, f := range forms {
					for where, text := range map[string]string{"answer": answer, "audit": string(r.body), "log": w.n.Logs.String()} {
						if strings.Contains(text, f) {
							t.Fatalf("the %s holds the imported material (or its wrap)", where)
						}
					}
				}
			}
		}},
	}
}
