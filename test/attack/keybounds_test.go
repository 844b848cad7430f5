package attack

import (
	"crypto/sha1" // #nosec G505 -- the OAEP hash the attack tries: it must be refused
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/transit/transittest"
)

// TestBYOKWrappingKeyAttacks (#16.7): an import wrapped with SHA-1 OAEP is
// refused, and a ciphertext wrapped for a wrapping key past its grace
// (whose private key may have leaked since) unwraps to nothing.
func TestBYOKWrappingKeyAttacks(t *testing.T) {
	forEachBackend(t, setup{settings: map[string]string{"transit.byok.wrapping_key_rotate_after": "2h"}}, func(t *testing.T, n *node) {
		key := []byte("0123456789abcdef0123456789ABCDEF")
		wrap := func(h hash.Hash) string {
			t.Helper()
			var w struct {
				PublicKey string `json:"public_key"`
			}
			wantJSON(t, n.call(t, "GET", "/v1/keys/wrapping_key", n.admin, nil), 200, &w)
			pub, err := transittest.ParsePublicKey(w.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			ct, err := transittest.Wrap(pub, h, key)
			if err != nil {
				t.Fatal(err)
			}
			return base64.StdEncoding.EncodeToString(ct)
		}
		const sha1Refused = "hash_function SHA1 is refused: wrap with SHA256 (RSA-OAEP with SHA-1 is accepted only where transit.byok.allow_sha1 is set)"
		withSHA1 := wrap(sha1.New())
		for _, path := range []string{"/v1/keys/sha1/import", "/v1/keys/k9/import_version"} {
			r := n.call(t, "POST", path, n.admin, map[string]any{"ciphertext": withSHA1, "hash_function": "SHA1"})
			wantProblem(t, r, 422, sha1Refused)
		}

		old := wrap(sha256.New())
		n.Clock.Advance(3 * time.Hour) // the wrapping key is due
		n.admin = n.Token(n.Init.ClientID, n.Init.ClientSecret)
		wrap(sha256.New()) // the node rotates the key on this use
		n.Clock.Advance(61 * time.Minute)
		n.admin = n.Token(n.Init.ClientID, n.Init.ClientSecret)
		r := n.call(t, "POST", "/v1/keys/stale/import", n.admin, map[string]any{"ciphertext": old})
		wantProblem(t, r, 422, "the ciphertext does not unwrap to a key")
		noEchoInLog(t, n)
	})
}
