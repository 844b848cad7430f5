package attack

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/crypto/shamir"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// A stranger who reaches a sealed server tries to keep it sealed: forged
// shares for every number from many addresses (past the per-address rate
// limit), a share of another deployment, guessed reset tokens, and bodies
// that are not what the routes take. Every attempt is refused with a
// problem that echoes nothing, nothing is held, and the key holders then
// unseal as if nobody had been there (#16.3).
func TestStrangerCannotBlockUnseal(t *testing.T) {
	sealed := setup{shares: 5, threshold: 3}
	n := start(t, storetest.Backend{Name: "sqlite", DSN: storetest.SQLiteDSN}, sealed)
	other := start(t, storetest.Backend{Name: "sqlite", DSN: storetest.SQLiteDSN}, sealed)
	stranger := func(path string, body any) reply {
		t.Helper()
		r := n.call(t, "POST", path, "", body)
		if r.status == 429 {
			// One address is limited: the stranger moves on to another.
			r = n.send(t, req{method: "POST", path: path, body: mustMarshal(t, body), contentType: "application/json", via: n.From(n.freshIP())})
		}
		return r
	}
	forged := func(x byte) string {
		sh := make([]byte, 33)
		if _, err := rand.Read(sh[1:]); err != nil {
			t.Fatal(err)
		}
		sh[0] = x
		return shamir.EncodeShare(sh)
	}
	for range 3 {
		for x := byte(1); x <= 5; x++ {
			r := n.send(t, req{method: "POST", path: "/v1/sys/unseal", contentType: "application/json",
				body: mustMarshal(t, map[string]string{"share": forged(x)}), via: n.From(n.freshIP())})
			wantProblem(t, r, 422, "not one of this deployment's root key shares")
		}
	}
	wantProblem(t, stranger("/v1/sys/unseal", map[string]string{"share": other.Init.UnsealShares[0]}), 422, "not one of this deployment's root key shares")
	wantProblem(t, stranger("/v1/sys/unseal", map[string]string{"share": "cs1-" + marker}), 422, "not a root key share: check it for a typo")
	wantProblem(t, stranger("/v1/sys/unseal", map[string]any{"share": forged(1), "force": marker}), 422, `unknown field "force"`)
	wantProblem(t, stranger("/v1/sys/unseal", string(sized(8<<10))), 413, "request body is larger than 4096 bytes")
	for _, guess := range []string{"", marker, strings.Repeat("A", 43)} {
		wantProblem(t, stranger("/v1/sys/unseal/reset", map[string]string{"reset_token": guess}), 401,
			"a reset needs the token in the server's data directory (unseal-reset.token)")
	}
	var st struct{ Progress int }
	n.must(t, 200, "GET", "/v1/sys/seal-status", "", nil, &st)
	if st.Progress != 0 {
		t.Fatalf("the stranger's attempts left %d shares held", st.Progress)
	}
	if b, err := os.ReadFile(filepath.Join(n.Dir, "unseal-reset.token")); err != nil || strings.Contains(string(n.Logs.String()), strings.TrimSpace(string(b))) {
		t.Fatalf("the reset token is missing or reached the log: %v", err)
	}
	for _, s := range n.Init.UnsealShares[2:] { // each holder from an address of their own
		r := n.send(t, req{method: "POST", path: "/v1/sys/unseal", contentType: "application/json",
			body: mustMarshal(t, map[string]string{"share": s}), via: n.From(n.freshIP())})
		if r.status != 200 {
			t.Fatalf("a holder's share: %s", r)
		}
	}
	n.must(t, 200, "GET", "/readyz", "", nil, nil)
	for _, s := range append(n.Init.UnsealShares, other.Init.UnsealShares...) {
		if strings.Contains(n.Logs.String(), s) {
			t.Fatal("a share reached the log")
		}
	}
	noEchoInLog(t, n)
}

func mustMarshal(t *testing.T, body any) []byte {
	t.Helper()
	if b, ok := body.(string); ok {
		return []byte(b)
	}
	j, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	return j
}
