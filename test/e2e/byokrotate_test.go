package e2e

import (
	"crypto/sha1" // #nosec G505 -- the OAEP hash some BYOK tooling uses: here to check it is refused
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/testclock"
	"github.com/cofferhq/coffer/internal/transit/transittest"
)

// #16.7: the BYOK wrapping key rotates on its schedule (here 2h; default
// 30 days), the previous one unwrapping imports for its grace (1h) only;
// RSA-OAEP with SHA-1 is refused with a clear 422 unless
// transit.byok.allow_sha1 is set.
func TestBYOKWrappingKeyRotationAndSHA1(t *testing.T) {
	forEachBackend(t, func(t *testing.T, n *node) {
		clock := &testclock.Offset{}
		n.Stop()
		n.Env = append(n.Env, "COFFER_TRANSIT_BYOK_WRAPPING_KEY_ROTATE_AFTER=2h")
		n.serveAt("127.0.0.1:0", clock.Now)
		tok := func() string { return n.Token(n.Init.ClientID, n.Init.ClientSecret) }
		type wk struct {
			PublicKey string     `json:"public_key"`
			Version   uint32     `json:"version"`
			CreatedAt *time.Time `json:"created_at"`
		}
		get := func() wk {
			t.Helper()
			st, _, b := n.do("GET", "/v1/keys/wrapping_key", tok(), "", nil)
			var w wk
			if st != 200 {
				t.Fatalf("GET /v1/keys/wrapping_key: %d %s", st, b)
			}
			mustJSON(t, b, &w)
			return w
		}
		importKey := func(name string, body map[string]any) (int, string) {
			t.Helper()
			st, _, b := n.postJSON("/v1/keys/"+name+"/import", tok(), body)
			if st == 201 {
				return st, ""
			}
			_, detail := problemOf(t, b)
			return st, detail
		}
		key := []byte("0123456789abcdef0123456789ABCDEF")
		w1 := get()
		if w1.Version != 1 || w1.CreatedAt == nil {
			t.Fatalf("first wrapping key: version %d created %v", w1.Version, w1.CreatedAt)
		}
		sha1Wrap := func(w wk) string {
			t.Helper()
			pub, err := transittest.ParsePublicKey(w.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			ct, err := transittest.Wrap(pub, sha1.New(), key)
			if err != nil {
				t.Fatal(err)
			}
			return base64.StdEncoding.EncodeToString(ct)
		}
		st, detail := importKey("sha1", map[string]any{"ciphertext": sha1Wrap(w1), "hash_function": "SHA1"})
		if st != 422 || !strings.Contains(detail, "SHA1 is refused") || !strings.Contains(detail, "transit.byok.allow_sha1") {
			t.Fatalf("a SHA-1 import: %d %q, want 422 saying how to allow it", st, detail)
		}
		forV1 := byokWrap(t, w1.PublicKey, key)

		clock.Advance(3 * time.Hour)
		w2 := get()
		if w2.Version != 2 || w2.PublicKey == w1.PublicKey {
			t.Fatalf("after 3 hours: version %d (same key: %v), want a new version 2", w2.Version, w2.PublicKey == w1.PublicKey)
		}
		if st, detail := importKey("in-grace", map[string]any{"ciphertext": forV1}); st != 201 {
			t.Fatalf("an import for the previous key in its grace: %d %q", st, detail)
		}
		clock.Advance(61 * time.Minute)
		if st, detail := importKey("too-late", map[string]any{"ciphertext": forV1}); st != 422 || detail != "the ciphertext does not unwrap to a key" {
			t.Fatalf("an import for the previous key after its grace: %d %q", st, detail)
		}
		if st, detail := importKey("current", map[string]any{"ciphertext": byokWrap(t, w2.PublicKey, key)}); st != 201 {
			t.Fatalf("an import for the current key: %d %q", st, detail)
		}

		// Opted in, SHA-1 is accepted.
		n.Stop()
		n.Env = append(n.Env, "COFFER_TRANSIT_BYOK_ALLOW_SHA1=true")
		n.serveAt("127.0.0.1:0", clock.Now)
		if st, detail := importKey("sha1", map[string]any{"ciphertext": sha1Wrap(get()), "hash_function": "SHA1"}); st != 201 {
			t.Fatalf("a SHA-1 import with allow_sha1: %d %q", st, detail)
		}
	})
}
