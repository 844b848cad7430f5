package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/crypto/shamir"
)

// `coffer unseal` run by one key holder with one valid share exits 0 and
// says how many shares the server still waits for (it exited 1); a refused
// share exits 1; `coffer unseal --reset` drops what the server holds,
// with the token of the data directory.
func TestUnsealCLI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	code, out, errs := runCLI(t, "init", "--data-dir", dir, "--shares", "3", "--threshold", "2", "--json")
	if code != 0 {
		t.Fatalf("init: %s", errs)
	}
	var res struct {
		Shares []string `json:"unseal_shares"`
		CACert string   `json:"ca_cert"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := app.Open(context.Background(), cfg, app.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	url := "https://" + ln.Addr().String()
	unseal := func(stdin string, args ...string) (int, string, string) {
		t.Helper()
		return runCLIIn(t, stdin, append([]string{"unseal", "--url", url, "--ca-file", res.CACert}, args...)...)
	}

	code, out, errs = unseal(res.Shares[0] + "\n")
	if code != 0 || !strings.Contains(out, "share 1 accepted: 1 of 2") || !strings.Contains(out, "still sealed: 1 of 2 shares held; the server waits for 1 more") {
		t.Fatalf("one holder's valid share: exit %d, %q %q; want 0 and the progress", code, out, errs)
	}
	forged := make([]byte, 33)
	if _, err := rand.Read(forged[1:]); err != nil {
		t.Fatal(err)
	}
	forged[0] = 2
	if code, _, errs := unseal(shamir.EncodeShare(forged) + "\n"); code != 1 || !strings.Contains(errs, "not one of this deployment's root key shares") {
		t.Fatalf("a forged share: exit %d, %q", code, errs)
	}
	if code, _, errs := unseal("\n"); code != 1 || !strings.Contains(errs, "no share") {
		t.Fatalf("no share: exit %d, %q", code, errs)
	}
	if code, _, errs := runCLI(t, "unseal"); code != 2 || !strings.Contains(errs, "--url") {
		t.Fatalf("without --url: exit %d, %q", code, errs)
	}
	if code, out, errs := runCLI(t, "unseal", "--reset", "--data-dir", dir, "--url", url); code != 0 || !strings.Contains(out, "reset: the server holds 0 of 2 shares") {
		t.Fatalf("reset: exit %d, %q %q", code, out, errs)
	}
	if code, out, errs := unseal(res.Shares[2] + "\n" + res.Shares[1] + "\n"); code != 0 || !strings.Contains(out, "unsealed: the server is serving") {
		t.Fatalf("two shares after the reset: exit %d, %q %q", code, out, errs)
	}
	if code, _, errs := runCLI(t, "unseal", "--reset", "--data-dir", dir, "--url", url); code != 1 || !strings.Contains(errs, "unseal-reset.token does not exist") {
		t.Fatalf("reset once unsealed: exit %d, %q", code, errs)
	}
}
