package e2e

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
	"github.com/cofferhq/coffer/internal/crypto/shamir"
	"github.com/cofferhq/coffer/internal/secret"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/testserver"
)

// sealedNode initialises a 3-of-5 shamir deployment on SQLite and serves
// it, sealed. The unseal routes involve no store.
func sealedNode(t *testing.T) (*node, []string) {
	t.Helper()
	n := &node{Server: testserver.Start(t, storetest.Backends()[0], testserver.Options{Init: app.InitOptions{Shares: 5, Threshold: 3}}), t: t}
	return n, n.Init.UnsealShares
}

// postUnseal posts one body to a sealed server's route, waiting out the
// per-address rate limit (which it must set, with Retry-After).
func postUnseal(n *node, path string, body map[string]string) (int, string) {
	n.t.Helper()
	for {
		st, h, b := n.postJSON(path, "", body)
		if st != 429 {
			return st, strings.TrimSpace(string(b))
		}
		ra, err := strconv.Atoi(h.Get("Retry-After"))
		if err != nil || ra < 1 {
			n.t.Fatalf("429 without a Retry-After: %v", h)
		}
		time.Sleep(time.Duration(ra) * time.Second)
	}
}

// forgedShare is a share numbered x that no split made, with a valid
// checksum: what a stranger can post.
func forgedShare(t *testing.T, x byte) string {
	t.Helper()
	sh := make([]byte, 33)
	if _, err := rand.Read(sh[1:]); err != nil {
		t.Fatal(err)
	}
	sh[0] = x
	return shamir.EncodeShare(sh)
}

func progress(p int, sealed bool) string {
	return `{"sealed":` + strconv.FormatBool(sealed) + `,"progress":` + strconv.Itoa(p) + `,"threshold":3}`
}

// #16.3: a stranger posts a forged share for every number before the key
// holders come. Each is refused on submission, nothing is held, and the
// genuine shares unseal. It used to hold the forgeries, so every genuine
// share "conflicted" and the server stayed sealed until restarted.
func TestUnsealWithForgedSharesForEveryNumber(t *testing.T) {
	n, shares := sealedNode(t)
	for x := byte(1); x <= 5; x++ {
		st, b := postUnseal(n, "/v1/sys/unseal", map[string]string{"share": forgedShare(t, x)})
		if st != 422 || !strings.Contains(b, "not one of this deployment's root key shares") {
			t.Fatalf("forged share %d: %d %s", x, st, b)
		}
	}
	if st, _, b := n.do("GET", "/v1/sys/seal-status", "", "", nil); st != 200 || strings.TrimSpace(string(b)) != progress(0, true) {
		t.Fatalf("seal-status after forged shares: %d %s", st, b)
	}
	for i, s := range []string{shares[1], shares[3], shares[0]} {
		st, b := postUnseal(n, "/v1/sys/unseal", map[string]string{"share": s})
		if st != 200 || b != progress(i+1, i < 2) {
			t.Fatalf("genuine share %d: %d %s", i+1, st, b)
		}
	}
	if err := n.Admin.CreateCollection(context.Background(), customers); err != nil {
		t.Fatalf("serving after unseal: %v", err)
	}
}

// legacyCheck is the check blob of a split made before share commitments
// (format 1), for the root key the shares make: how deployments made by
// earlier releases look.
func legacyCheck(t *testing.T, shares []string) []byte {
	t.Helper()
	var raw [][]byte
	for _, s := range shares[:3] {
		b, err := shamir.DecodeShare(s)
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, b)
	}
	root, err := shamir.Combine(raw)
	if err != nil {
		t.Fatal(err)
	}
	const label = "coffer/keyprovider/sealed/check/v1"
	k, err := hkdf.Key(sha256.New, root, nil, label, 32)
	if err != nil {
		t.Fatal(err)
	}
	a, err := envelope.New(secret.NewKey(k), 1)
	if err != nil {
		t.Fatal(err)
	}
	header := []byte{1, 3, 5}
	sealed, err := a.Seal(rand.Reader, []byte("coffer root key"), envelope.AAD(label, string(header)))
	if err != nil {
		t.Fatal(err)
	}
	return append(header, sealed...)
}

// #16.3 for deployments made before commitments: the forged shares are
// held (nothing can tell them yet) until they fail to combine; the genuine
// shares then replace them and unseal, and the server rewrites its check
// file with a commitment to every share, so that after a restart the same
// forgeries are refused on submission.
func TestUnsealLegacyCheckFileRecoversAndUpgrades(t *testing.T) {
	n, shares := sealedNode(t)
	n.Stop()
	checkFile := filepath.Join(n.Dir, "root-key.check")
	if err := os.WriteFile(checkFile, legacyCheck(t, shares), 0o600); err != nil {
		t.Fatal(err)
	}
	n.Serve("127.0.0.1:0")
	if !strings.Contains(n.Logs.String(), "no share commitments") {
		t.Error("a check file without commitments is not warned about")
	}
	var forged []string
	for x := byte(1); x <= 5; x++ {
		forged = append(forged, forgedShare(t, x))
		st, b := postUnseal(n, "/v1/sys/unseal", map[string]string{"share": forged[x-1]})
		if (x < 3 && st != 200) || (x >= 3 && (st != 422 || !strings.Contains(b, "do not make the root key"))) {
			t.Fatalf("forged share %d: %d %s", x, st, b)
		}
	}
	for i, s := range []string{shares[0], shares[4], shares[2]} {
		st, b := postUnseal(n, "/v1/sys/unseal", map[string]string{"share": s})
		if (i < 2 && st != 422) || (i == 2 && (st != 200 || b != `{"sealed":false,"progress":3,"threshold":3}`)) {
			t.Fatalf("genuine share %d among forged ones: %d %s", i+1, st, b)
		}
	}
	check, err := os.ReadFile(checkFile)
	if err != nil || len(check) == 0 || check[0] != 2 {
		t.Fatalf("check file after unsealing: format %v, %v; want it upgraded to 2", check[:min(1, len(check))], err)
	}
	n.Restart()
	for x, f := range forged {
		if st, b := postUnseal(n, "/v1/sys/unseal", map[string]string{"share": f}); st != 422 || !strings.Contains(b, "not one of this deployment's") {
			t.Fatalf("forged share %d after the upgrade: %d %s", x+1, st, b)
		}
	}
	for _, s := range shares[1:4] {
		if st, b := postUnseal(n, "/v1/sys/unseal", map[string]string{"share": s}); st != 200 {
			t.Fatalf("genuine share after the upgrade: %d %s", st, b)
		}
	}
	if err := n.Admin.CreateCollection(context.Background(), customers); err != nil {
		t.Fatalf("serving after unseal: %v", err)
	}
}

// The shares a sealed server holds can be dropped by whoever can read its
// data directory (the reset token there), and by no one else.
func TestUnsealReset(t *testing.T) {
	n, shares := sealedNode(t)
	for _, s := range shares[:2] {
		if st, b := postUnseal(n, "/v1/sys/unseal", map[string]string{"share": s}); st != 200 {
			t.Fatalf("share: %d %s", st, b)
		}
	}
	tokenFile := filepath.Join(n.Dir, "unseal-reset.token")
	fi, err := os.Stat(tokenFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("reset token file: %v %v", fi, err)
	}
	for _, wrong := range []string{"", "guess", strings.Repeat("A", 43)} {
		if st, b := postUnseal(n, "/v1/sys/unseal/reset", map[string]string{"reset_token": wrong}); st != 401 {
			t.Fatalf("reset with a wrong token: %d %s", st, b)
		}
	}
	if st, _, b := n.do("GET", "/v1/sys/seal-status", "", "", nil); st != 200 || strings.TrimSpace(string(b)) != progress(2, true) {
		t.Fatalf("progress after refused resets: %d %s", st, b)
	}
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if st, b := postUnseal(n, "/v1/sys/unseal/reset", map[string]string{"reset_token": strings.TrimSpace(string(tok))}); st != 200 || b != progress(0, true) {
		t.Fatalf("reset: %d %s", st, b)
	}
	if strings.Contains(n.Logs.String(), strings.TrimSpace(string(tok))) {
		t.Fatal("the reset token reached the log")
	}
	for i, s := range shares[2:] {
		if st, b := postUnseal(n, "/v1/sys/unseal", map[string]string{"share": s}); st != 200 || b != progress(i+1, i < 2) {
			t.Fatalf("share after the reset: %d %s", st, b)
		}
	}
	if _, err := os.Stat(tokenFile); !os.IsNotExist(err) {
		t.Fatalf("the reset token outlived the seal: %v", err)
	}
	if st, _ := postUnseal(n, "/v1/sys/unseal/reset", map[string]string{"reset_token": strings.TrimSpace(string(tok))}); st != 200 {
		t.Fatalf("reset once unsealed: %d", st)
	}
	if err := n.Admin.CreateCollection(context.Background(), customers); err != nil {
		t.Fatalf("a reset once unsealed changed something: %v", err)
	}
}
